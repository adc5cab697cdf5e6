// Builds a layer's metadata index: one walk of the layer directory, breadth first,
// recording each entry's stat, symlink target, xattrs and overlay markers.
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import * as native from '../../native-shims';
import { isCharWhiteout, isOpaqueDir, isXattrWhiteout } from '../union/whiteouts';
import { F, H, HEADER_SIZE, MAGIC, R, RECORD_SIZE, VERSION } from './format';

const { ST } = native;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const U32_MAX = 0xffffffff;

export class IndexBuildError extends Error {}

interface Entry {
  name: Buffer;
  path: string;
  st: Float64Array;
  flags: number;
  target: Buffer | null;
  xattrs: [Buffer, Buffer][];
  childStart: number;
  childCount: number;
}

function entryOf(path: string, name: Buffer): Entry {
  const st = native.newStatArray();
  const err = native.lstatInto(path, st);
  if (err !== 0) throw new IndexBuildError(`lstat ${path}: errno ${err}`);
  const e: Entry = { name, path, st, flags: 0, target: null, xattrs: [], childStart: 0, childCount: 0 };
  const type = st[ST.MODE] & S_IFMT;
  if (type === S_IFLNK) e.target = fs.readlinkSync(path, 'buffer') as Buffer;
  if (isCharWhiteout(st)) e.flags |= F.WH_CHR;
  let names: string[] = [];
  try {
    names = native.llistxattr(path);
  } catch {
    e.flags |= F.XATTR_LIVE;
  }
  for (const n of names) {
    try {
      const v = native.lgetxattr(path, n);
      if (v !== null) e.xattrs.push([Buffer.from(n), v]);
    } catch {
      e.flags |= F.XATTR_LIVE; // e.g. EACCES on a user.* xattr when unprivileged
    }
  }
  if (e.xattrs.length > 0 && isXattrWhiteout(path, st)) e.flags |= F.WH_XATTR;
  if (type === S_IFDIR && isOpaqueDir(path)) e.flags |= F.OPAQUE;
  return e;
}

/** Walks `layerDir` and returns its index file's bytes. */
export function buildIndex(layerDir: string): Buffer {
  const entries: Entry[] = [entryOf(layerDir, Buffer.alloc(0))];
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i];
    if ((e.st[ST.MODE] & S_IFMT) !== S_IFDIR) continue;
    const names = native.readdirIno(e.path).names.filter((n) => n !== '.' && n !== '..');
    const bufs = names.map((n) => Buffer.from(n));
    const order = bufs.map((_, k) => k).sort((a, b) => Buffer.compare(bufs[a], bufs[b]));
    e.childStart = entries.length;
    e.childCount = names.length;
    for (const k of order) entries.push(entryOf(e.path + '/' + names[k], bufs[k]));
  }
  return serialize(entries);
}

function serialize(entries: Entry[]): Buffer {
  let strBytes = 0;
  let xattrBytes = 0;
  for (const e of entries) {
    strBytes += e.name.length + (e.target?.length ?? 0);
    if (e.xattrs.length > 0) xattrBytes += 2 + e.xattrs.reduce((s, [n, v]) => s + 1 + n.length + 4 + v.length, 0);
  }
  const strings = HEADER_SIZE + entries.length * RECORD_SIZE;
  const xattrs = strings + strBytes;
  const length = xattrs + xattrBytes;
  if (length > U32_MAX) throw new IndexBuildError('layer too large for an index');
  const b = Buffer.alloc(length);
  let sp = strings;
  let xp = xattrs;
  entries.forEach((e, i) => {
    const o = HEADER_SIZE + i * RECORD_SIZE;
    const st = e.st;
    b.writeUInt32LE(sp, o + R.NAME);
    b.writeUInt8(e.name.length, o + R.NAME_LEN);
    sp += e.name.copy(b, sp);
    b.writeUInt8(e.flags, o + R.FLAGS);
    b.writeUInt16LE(st[ST.MODE], o + R.MODE);
    b.writeUInt32LE(st[ST.UID], o + R.UID);
    b.writeUInt32LE(st[ST.GID], o + R.GID);
    b.writeUInt32LE(st[ST.NLINK], o + R.NLINK);
    b.writeUIntLE(st[ST.INO], o + R.INO, 6);
    b.writeUIntLE(st[ST.SIZE], o + R.SIZE, 6);
    b.writeUIntLE(st[ST.BLOCKS], o + R.BLOCKS, 6);
    for (const [at, s] of [[R.ATIME, ST.ATIME], [R.MTIME, ST.MTIME], [R.CTIME, ST.CTIME]] as const) {
      b.writeIntLE(st[s], o + at, 6);
      b.writeUInt32LE(st[s + 1], o + at + 6);
    }
    const type = st[ST.MODE] & S_IFMT;
    if (type === S_IFDIR) {
      b.writeUInt32LE(e.childStart, o + R.AUX1);
      b.writeUInt32LE(e.childCount, o + R.AUX2);
    } else if (e.target !== null) {
      b.writeUInt32LE(sp, o + R.AUX1);
      b.writeUInt32LE(e.target.length, o + R.AUX2);
      sp += e.target.copy(b, sp);
    } else if (type === S_IFCHR || type === S_IFBLK) {
      b.writeUInt32LE(st[ST.RDEV_MAJOR], o + R.AUX1);
      b.writeUInt32LE(st[ST.RDEV_MINOR], o + R.AUX2);
    }
    if (e.xattrs.length > 0) {
      b.writeUInt32LE(xp, o + R.XATTR);
      xp = b.writeUInt16LE(e.xattrs.length, xp);
      for (const [n, v] of e.xattrs) {
        xp = b.writeUInt8(n.length, xp);
        xp += n.copy(b, xp);
        xp = b.writeUInt32LE(v.length, xp);
        xp += v.copy(b, xp);
      }
    }
  });
  const root = entries[0].st;
  b.write(MAGIC, H.MAGIC, 'latin1');
  b.writeUInt32LE(VERSION, H.VERSION);
  b.writeUInt32LE(RECORD_SIZE, H.RECORD_SIZE);
  b.writeUInt32LE(entries.length, H.COUNT);
  b.writeUInt32LE(strings, H.STRINGS);
  b.writeUInt32LE(xattrs, H.XATTRS);
  b.writeUInt32LE(length, H.LENGTH);
  b.writeDoubleLE(root[ST.INO], H.ROOT_INO);
  b.writeDoubleLE(root[ST.CTIME], H.ROOT_CTIME);
  b.writeUInt32LE(root[ST.CTIME_NS], H.ROOT_CTIME_NS);
  b.writeUInt32LE(root[ST.BLKSIZE], H.BLKSIZE);
  b.writeUInt32LE(zlib.crc32(b.subarray(HEADER_SIZE)), H.CHECKSUM);
  return b;
}
