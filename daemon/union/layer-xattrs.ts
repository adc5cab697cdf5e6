// Which xattrs a union reads and writes in each layer, as fuse-overlayfs 1.16 decides it:
// - the override_stat xattr of a layer (override-stat.ts): the one its root carries
//   (security.fuseoverlayfs.*, then user.containers.*, then user.fuseoverlayfs.*), and for the
//   upper the one xattr_permissions= names (1: security.fuseoverlayfs.*; 2: user.containers.*,
//   or user.fuseoverlayfs.* where the upper root already uses that older name);
// - in a layer using user.containers.override_stat, names the layer cannot or should not hold
//   (security.*, and the overlay metadata names) are stored renamed as
//   user.containers.override_<name>, and shown under their own name: security labels set
//   through the union stay the union's, apart from the backing filesystem's policy.
import * as native from '../../native-shims';
import { UPPER } from './layers';
import { OVERRIDE_CONTAINERS, OVERRIDE_PRIVILEGED, OVERRIDE_USER } from './override-stat';
import { isPrivateXattr } from './whiteouts';

const RENAMED_PREFIX = 'user.containers.override_';
/** XATTR_NAME_MAX: a renamed name must still fit. */
const NAME_MAX = 255;

/** The override xattr a layer root selects, or the one xattr_permissions= names for the upper; null for none. */
export function overrideXattrFor(root: string, xattrPermissions?: number): string | null {
  const has = (name: string) => native.lgetxattr(root, name) !== null;
  if (xattrPermissions === 1) return OVERRIDE_PRIVILEGED;
  if (xattrPermissions === 2) return !has(OVERRIDE_CONTAINERS) && has(OVERRIDE_USER) ? OVERRIDE_USER : OVERRIDE_CONTAINERS;
  if (has(OVERRIDE_PRIVILEGED)) return OVERRIDE_PRIVILEGED;
  if (has(OVERRIDE_CONTAINERS)) return OVERRIDE_CONTAINERS;
  if (has(OVERRIDE_USER)) return OVERRIDE_USER;
  return null;
}

export class LayerXattrs {
  /** Per layer, the override xattr or null; null when no layer has one. */
  readonly overrides: (string | null)[] | null;
  private readonly renaming: boolean[];

  /** `roots[i]` is layer i's root ('' for an absent upper). */
  constructor(roots: string[], xattrPermissions?: number) {
    const overrides = roots.map((root, i) => (root === '' ? null : overrideXattrFor(root, i === UPPER ? xattrPermissions : undefined)));
    this.overrides = overrides.some((o) => o !== null) ? overrides : null;
    this.renaming = overrides.map((o) => o === OVERRIDE_CONTAINERS);
  }

  override(layer: number): string | null {
    return this.overrides?.[layer] ?? null;
  }

  /** A name the union may show and set as it is in this layer. */
  private accessible(layer: number, name: string): boolean {
    return !isPrivateXattr(name) && !(this.renaming[layer] && name.startsWith('security.'));
  }

  /** The name stored in `layer` for a name asked through the union; null: not accessible there. */
  stored(layer: number, name: string): string | null {
    if (this.accessible(layer, name)) return name;
    if (!this.renaming[layer] || RENAMED_PREFIX.length + Buffer.byteLength(name) > NAME_MAX) return null;
    return RENAMED_PREFIX + name;
  }

  /** The name shown for a name stored in `layer`; null: hidden. */
  shown(layer: number, stored: string): string | null {
    if (this.renaming[layer] && stored.startsWith(RENAMED_PREFIX)) {
      const name = stored.slice(RENAMED_PREFIX.length);
      if (!this.accessible(layer, name)) return name;
    }
    return this.accessible(layer, stored) ? stored : null;
  }

  /**
   * Copy-up: a name stored in layer `from` as the upper stores it (null: not copied). An
   * override xattr is not copied by name: copy-up writes the upper's own (see CopyUp).
   */
  copied(from: number, stored: string): string | null {
    const o = this.overrides;
    if (o !== null && (stored === o[from] || stored === o[UPPER])) return null;
    const name = this.shown(from, stored);
    return name === null ? null : this.stored(UPPER, name);
  }
}

/**
 * xattr_permissions= on a fresh upper: its root gets the override the first lower root carries
 * (the same name; with 2 also user.fuseoverlayfs.*), else 0:0:555, as fuse-overlayfs writes it,
 * so the merged root keeps an owner and mode on every later mount.
 */
export function initUpperOverride(roots: string[], xattrs: LayerXattrs): void {
  const name = xattrs.override(UPPER);
  if (name === null || roots[UPPER] === '' || native.lgetxattr(roots[UPPER], name) !== null) return;
  const candidates = name === OVERRIDE_PRIVILEGED ? [name] : [OVERRIDE_CONTAINERS, OVERRIDE_USER];
  let value: Buffer | null = null;
  for (const root of roots.slice(UPPER + 1)) {
    for (const c of candidates) value ??= native.lgetxattr(root, c);
    if (value !== null) break;
  }
  native.lsetxattr(roots[UPPER], name, value ?? Buffer.from('0:0:555'), 0);
}
