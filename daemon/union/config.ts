// The description of one union mount: its layers and its behaviour switches.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { IdRange } from './idmap';

export interface UnionConfig {
  /** Lower layer directories, topmost first (already resolved to real paths). */
  lowers: string[];
  /** Writable upper directory; absent for a read-only union. */
  upper?: string;
  /** Work directory on the upper's filesystem, for atomic copy-up and whiteouts. */
  work?: string;
  /** Report every owner as this uid/gid (fuse-overlayfs' squash_to_uid/gid). */
  squashUid?: number;
  squashGid?: number;
  /** uidmapping= / gidmapping= (see idmap.ts); the overflow ids default to the kernel's. */
  uidMapping?: IdRange[];
  gidMapping?: IdRange[];
  overflowUid?: number;
  overflowGid?: number;
  /** fsync=0 / volatile: skip fsync on the upper. */
  noFsync?: boolean;
  /** redirect_dir=on: directories with lower parts move by redirect. Off by
   *  default (as overlayfs without CONFIG_OVERLAY_FS_REDIRECT_DIR): their rename
   *  fails with EXDEV and callers such as mv copy, which keeps an upper dir
   *  complete on its own, as a layer diff needs. */
  redirectDir?: boolean;
  /** Follow redirects that layers already carry (default; with redirect_dir=nofollow a lookup that meets one fails with EPERM). */
  followRedirects?: boolean;
  /** xino=on. With it or redirect_dir=on, as overlayfs, a new directory in a merged one is made
   *  opaque (faster lookups; offline changes to the lowers are then no longer supported). */
  xino?: boolean;
  /** Write overlay markers as user.overlay.* (overlayfs' `userxattr`), for a union without the
   *  privilege for trusted.* xattrs (a user namespace, a plain user). Both are always read. */
  userxattr?: boolean;
  /** Per lower layer (same order), the path of its metadata index (daemon/layer-index), or null:
   *  its metadata is then read live. The mounter checks or builds them (ensureIndex). */
  indexes?: (string | null)[];
  /** xattr_permissions=1|2: keep the upper's owners and modes in an override xattr (override-stat.ts). */
  xattrPermissions?: number;
}

export class UnionConfigError extends Error {}

/** Splits a lowerdir value: `:` separates layers, `\:` is a literal colon. */
export function splitLowerdir(value: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '\\' && i + 1 < value.length) {
      cur += value[++i];
    } else if (c === ':') {
      out.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  out.push(cur);
  return out.filter((s) => s !== '');
}

function realDir(p: string, role: string): string {
  let real: string;
  try {
    real = fs.realpathSync(p);
  } catch (err) {
    throw new UnionConfigError(`${role} ${p}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : (err as Error).message}`);
  }
  const st = fs.statSync(real);
  if (!st.isDirectory()) throw new UnionConfigError(`${role} ${p} is not a directory`);
  try {
    fs.accessSync(real, fs.constants.R_OK | fs.constants.X_OK);
  } catch {
    throw new UnionConfigError(`${role} ${p} is not readable`);
  }
  return real;
}

/** Checks the layers exist and fit together, following symlinked layer paths. */
export function resolveConfig(raw: { lowers: string[]; upper?: string; work?: string } & Omit<UnionConfig, 'lowers' | 'upper' | 'work'>): UnionConfig {
  if (raw.lowers.length === 0) throw new UnionConfigError('no lower layer given (lowerdir= is required)');
  if ((raw.upper === undefined) !== (raw.work === undefined)) {
    throw new UnionConfigError(raw.upper === undefined ? 'workdir given without upperdir' : 'upperdir given without workdir');
  }
  const lowers = raw.lowers.map((l) => realDir(l, 'lower layer'));
  const cfg: UnionConfig = { ...raw, lowers };
  if (raw.upper !== undefined && raw.work !== undefined) {
    cfg.upper = realDir(raw.upper, 'upperdir');
    cfg.work = realDir(raw.work, 'workdir');
    if (fs.statSync(cfg.upper).dev !== fs.statSync(cfg.work).dev) {
      throw new UnionConfigError(`workdir ${raw.work} is not on the same filesystem as upperdir ${raw.upper}`);
    }
    const inside = (a: string, b: string) => a === b || a.startsWith(b + path.sep);
    if (inside(cfg.work, cfg.upper) || inside(cfg.upper, cfg.work)) {
      throw new UnionConfigError('upperdir and workdir must not contain each other');
    }
  }
  return cfg;
}
