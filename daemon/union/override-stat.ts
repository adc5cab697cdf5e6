// Owner and mode kept in an xattr where the real ones cannot be set (fuse-overlayfs'
// xattr_permissions=, containers-storage's override_stat): "uid:gid:octal-mode[:type]",
// with stored (unmapped) ids. A layer uses it when its root carries one of the xattrs;
// the upper also when xattr_permissions=1 (security.*) or 2 (user.containers.*) asks.
// As fuse-overlayfs: only directories and regular files are overridden, before id mapping.
import * as native from '../../native-shims';
import { readableXattr } from './whiteouts';
import { S_IFMT, S_IFDIR, S_IFREG } from '../util/file-mode';

export const OVERRIDE_PRIVILEGED = 'security.fuseoverlayfs.override_stat';
export const OVERRIDE_CONTAINERS = 'user.containers.override_stat';
const OVERRIDE_USER = 'user.fuseoverlayfs.override_stat';

const { ST } = native;

export interface StatOverride {
  uid: number;
  gid: number;
  mode: number;
}

/** The override xattr a layer root selects, or the one xattr_permissions= names; null for none. */
export function overrideXattrFor(root: string, xattrPermissions?: number): string | null {
  if (native.lgetxattr(root, OVERRIDE_PRIVILEGED) !== null) return OVERRIDE_PRIVILEGED;
  // fuse-overlayfs' user mode reads and writes the containers name too.
  if (native.lgetxattr(root, OVERRIDE_CONTAINERS) !== null || native.lgetxattr(root, OVERRIDE_USER) !== null) return OVERRIDE_CONTAINERS;
  if (xattrPermissions === 1) return OVERRIDE_PRIVILEGED;
  if (xattrPermissions === 2) return OVERRIDE_CONTAINERS;
  return null;
}

/** "uid:gid:mode[:type]"; null when it does not parse. */
export function parseOverride(value: string): StatOverride | null {
  const f = value.split(':');
  if (f.length < 3 || !/^\d+$/.test(f[0]) || !/^\d+$/.test(f[1]) || !/^[0-7]+$/.test(f[2])) return null;
  return { uid: Number(f[0]), gid: Number(f[1]), mode: parseInt(f[2], 8) & 0o7777 };
}

export function formatOverride(o: StatOverride): string {
  return `${o.uid}:${o.gid}:${o.mode.toString(8)}`;
}

/** Applies the override stored at `path` (if any) to `st`; directories and regular files only. */
export function applyOverride(path: string, name: string, st: Float64Array): void {
  const type = st[ST.MODE] & S_IFMT;
  if (type !== S_IFDIR && type !== S_IFREG) return;
  const v = readableXattr(path, name);
  const o = v === null ? null : parseOverride(v.toString('latin1'));
  if (o === null) return;
  st[ST.UID] = o.uid;
  st[ST.GID] = o.gid;
  st[ST.MODE] = type | o.mode;
}
