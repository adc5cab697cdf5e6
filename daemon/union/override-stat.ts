// Owner and mode kept in an xattr where the real ones cannot be set (fuse-overlayfs'
// xattr_permissions=, containers-storage's override_stat): "uid:gid:octal-mode[:type]",
// with stored (unmapped) ids. The optional type is containers-storage's: dir, file, symlink,
// pipe, socket, block-MAJOR-MINOR or char-MAJOR-MINOR (a device kept as a regular file where
// it cannot be made); without one the real type stays. As fuse-overlayfs: only directories and
// regular files are overridden, before id mapping. Which layer uses which xattr: layer-xattrs.ts.
import * as native from '../../native-shims';
import { readableXattr } from './whiteouts';
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK } from '../util/file-mode';

export const OVERRIDE_PRIVILEGED = 'security.fuseoverlayfs.override_stat';
export const OVERRIDE_CONTAINERS = 'user.containers.override_stat';
export const OVERRIDE_USER = 'user.fuseoverlayfs.override_stat';

const { ST } = native;

/** The type field's names (matched as prefixes, as fuse-overlayfs does) and their S_IFMT bits. */
const TYPES: [string, number][] = [
  ['dir', S_IFDIR],
  ['file', S_IFREG],
  ['symlink', S_IFLNK],
  ['pipe', S_IFIFO],
  ['socket', S_IFSOCK],
  ['block', S_IFBLK],
  ['char', S_IFCHR],
];

export interface StatOverride {
  uid: number;
  gid: number;
  /** Permission bits (07777). */
  mode: number;
  /** The type field as written (kept when owner or mode change). */
  type?: string;
  /** S_IFMT bits the type field names. */
  fileType?: number;
  rdev?: { major: number; minor: number };
}

/** "uid:gid:mode[:type]"; null when it does not parse. */
export function parseOverride(value: string): StatOverride | null {
  const f = value.split(':');
  if (f.length < 3 || f.length > 4 || !/^\d+$/.test(f[0]) || !/^\d+$/.test(f[1]) || !/^[0-7]+$/.test(f[2])) return null;
  const o: StatOverride = { uid: Number(f[0]), gid: Number(f[1]), mode: parseInt(f[2], 8) & 0o7777 };
  if (f.length === 3) return o;
  const type = f[3];
  const known = TYPES.find(([name]) => type.startsWith(name));
  if (known === undefined) return null;
  o.type = type;
  o.fileType = known[1];
  if (known[0] === 'block' || known[0] === 'char') {
    // "char-1-3": fuse-overlayfs skips any dashes after the name, then reads major-minor.
    const m = /^-*(\d+)-(\d+)/.exec(type.slice(known[0].length));
    if (m === null) return null;
    o.rdev = { major: Number(m[1]), minor: Number(m[2]) };
  }
  return o;
}

export function formatOverride(o: StatOverride): string {
  const base = `${o.uid}:${o.gid}:${o.mode.toString(8)}`;
  return o.type === undefined ? base : `${base}:${o.type}`;
}

/** The override stored at `path` under `name`; null when unset or unparseable (then the real stat shows). */
export function readOverride(path: string, name: string): StatOverride | null {
  const v = readableXattr(path, name);
  return v === null ? null : parseOverride(v.toString('latin1'));
}

/** Overridable: only directories and regular files carry an override. */
export function overridable(st: Float64Array): boolean {
  const type = st[ST.MODE] & S_IFMT;
  return type === S_IFDIR || type === S_IFREG;
}

/** Applies the override stored at `path` (if any) to `st`; directories and regular files only. */
export function applyOverride(path: string, name: string, st: Float64Array): StatOverride | null {
  if (!overridable(st)) return null;
  const o = readOverride(path, name);
  if (o === null) return null;
  st[ST.UID] = o.uid;
  st[ST.GID] = o.gid;
  st[ST.MODE] = (o.fileType ?? st[ST.MODE] & S_IFMT) | o.mode;
  if (o.rdev !== undefined) {
    st[ST.RDEV_MAJOR] = o.rdev.major;
    st[ST.RDEV_MINOR] = o.rdev.minor;
  }
  return o;
}
