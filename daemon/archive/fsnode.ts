// Filesystem side shared by pack, extract, import and changes: lstat into plain objects, xattr
// reading/applying, metadata application, and a deterministic tree walker.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../../native-shims';
import { ArchiveError, PackError } from './errors';
import type { EntryAttrs, EntryType } from './tar-reader';
import { S_IFMT, S_IFSOCK, S_IFLNK, S_IFBLK, S_IFDIR, S_IFCHR, S_IFIFO } from '../util/file-mode';

const { ST } = native;


export const OVERLAY_XATTR_PREFIX = 'trusted.overlay.';
export const XATTR_OPAQUE = 'trusted.overlay.opaque';
export const WH_PREFIX = '.wh.';
export const WH_META_PREFIX = '.wh..wh.';
export const WH_OPAQUE = '.wh..wh..opq';

export interface NodeStat {
  type: EntryType | 'socket';
  /** Permission bits incl. setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  dev: number;
  ino: number;
  mtimeSec: number;
  mtimeNsec: number;
  rdevMajor: number;
  rdevMinor: number;
}

const scratch = native.newStatArray();

export function typeOfMode(mode: number): EntryType | 'socket' {
  switch (mode & S_IFMT) {
    case S_IFDIR:
      return 'dir';
    case S_IFLNK:
      return 'symlink';
    case S_IFCHR:
      return 'char';
    case S_IFBLK:
      return 'block';
    case S_IFIFO:
      return 'fifo';
    case S_IFSOCK:
      return 'socket';
    default:
      return 'file';
  }
}

/** lstat; null when the path does not exist (ENOENT/ENOTDIR); throws on other errors. */
export function lstatNode(p: string): NodeStat | null {
  const err = native.lstatInto(p, scratch);
  if (err === 2 || err === 20) return null;
  if (err !== 0) {
    const e = new Error(`lstat '${p}' failed: errno ${err}`) as NodeJS.ErrnoException;
    e.errno = -err;
    throw e;
  }
  const mode = scratch[ST.MODE];
  return {
    type: typeOfMode(mode),
    mode: mode & 0o7777,
    uid: scratch[ST.UID],
    gid: scratch[ST.GID],
    size: scratch[ST.SIZE],
    nlink: scratch[ST.NLINK],
    dev: scratch[ST.DEV],
    ino: scratch[ST.INO],
    mtimeSec: scratch[ST.MTIME],
    mtimeNsec: scratch[ST.MTIME_NS],
    rdevMajor: scratch[ST.RDEV_MAJOR],
    rdevMinor: scratch[ST.RDEV_MINOR],
  };
}

export function isWhiteoutNode(st: NodeStat): boolean {
  return st.type === 'char' && st.rdevMajor === 0 && st.rdevMinor === 0;
}

export function isOpaqueDir(p: string): boolean {
  const v = native.lgetxattr(p, XATTR_OPAQUE);
  return v !== null && v.length === 1 && v[0] === 0x79; // 'y'
}

/** All xattrs except overlayfs' private trusted.overlay.*, sorted by name. */
export function readXattrs(p: string): Array<[string, Buffer]> {
  const names = native.llistxattr(p).filter((n) => !n.startsWith(OVERLAY_XATTR_PREFIX));
  names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  const out: Array<[string, Buffer]> = [];
  for (const n of names) {
    const v = native.lgetxattr(p, n);
    if (v !== null) out.push([n, v]);
  }
  return out;
}

export interface Meta extends EntryAttrs {
  xattrs: Iterable<[string, Buffer]>;
}

/**
 * Applies owner, mode, xattrs and (unless skipTimes) mtime to a freshly created node, in the order
 * that keeps setuid bits and file capabilities (chown clears both). Never follows a final symlink.
 * trusted.overlay.* xattrs are never applied (they are overlayfs' private metadata).
 */
export function applyMeta(abs: string, member: string, m: Meta, skipTimes: boolean): void {
  try {
    fs.lchownSync(abs, m.uid, m.gid);
    if (m.type !== 'symlink') fs.chmodSync(abs, m.mode & 0o7777);
  } catch (e) {
    throw new ArchiveError(`cannot set owner/mode of '${member}': ${(e as Error).message}`);
  }
  for (const [name, value] of m.xattrs) {
    if (name.startsWith(OVERLAY_XATTR_PREFIX)) continue;
    try {
      native.lsetxattr(abs, name, value, 0);
    } catch (e) {
      throw new ArchiveError(`cannot set xattr '${name}' on '${member}': ${(e as Error).message}`);
    }
  }
  if (!skipTimes) setTimes(abs, member, m.mtimeSec, m.mtimeNsec);
}

/** atime = mtime = (sec, nsec), without following a final symlink. */
export function setTimes(abs: string, member: string, sec: number, nsec: number): void {
  try {
    native.utimensat(abs, sec, nsec, sec, nsec, native.AT_SYMLINK_NOFOLLOW);
  } catch (e) {
    throw new ArchiveError(`cannot set times of '${member}': ${(e as Error).message}`);
  }
}

/** Creates a device, fifo or whiteout node (mode includes only permission bits). */
export function makeSpecial(abs: string, type: 'char' | 'block' | 'fifo', mode: number, major: number, minor: number): void {
  const fmt = type === 'char' ? S_IFCHR : type === 'block' ? S_IFBLK : S_IFIFO;
  native.mknod(abs, fmt | (mode & 0o7777), major, minor);
}

export interface TreeNode {
  /** Path relative to the root, '/'-separated, no leading './'. */
  rel: string;
  abs: string;
  st: NodeStat;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Every node under `root` (root excluded), sorted bytewise by relative path (so parents come
 * before their children). Names that are not valid UTF-8 are refused (PackError).
 */
export function walkTree(root: string): TreeNode[] {
  const out: Array<TreeNode & { key: Buffer }> = [];
  const stack: string[] = [''];
  while (stack.length > 0) {
    const relDir = stack.pop() as string;
    const absDir = relDir === '' ? root : path.join(root, relDir);
    let names: Buffer[];
    try {
      names = fs.readdirSync(absDir, { encoding: 'buffer' });
    } catch (e) {
      throw new PackError(absDir, (e as Error).message);
    }
    for (const raw of names) {
      let name: string;
      try {
        name = utf8.decode(raw);
      } catch {
        throw new PackError(path.join(absDir, raw.toString('latin1')), 'file name is not valid UTF-8');
      }
      const rel = relDir === '' ? name : relDir + '/' + name;
      const abs = root + '/' + rel;
      const st = lstatNode(abs);
      if (st === null) continue; // vanished while walking
      out.push({ rel, abs, st, key: Buffer.from(rel, 'utf8') });
      if (st.type === 'dir') stack.push(rel);
    }
  }
  out.sort((a, b) => Buffer.compare(a.key, b.key));
  return out.map(({ rel, abs, st }) => ({ rel, abs, st }));
}
