// Builds a layer's metadata index: one walk of the layer directory, breadth first,
// recording each entry's stat, symlink target, xattrs and overlay markers.
import * as fs from 'node:fs';
import * as native from '../../native-shims';
import { USER_XATTR_PREFIX, WH_OPAQUE, XATTR_PREFIX, isCharWhiteout, isXattrWhiteout, opaqueValue } from '../union/whiteouts';
import { F, H, HEADER_SIZE, MAGIC, R, RECORD_SIZE, VERSION, checksum } from './format';
import { S_IFMT, S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR, S_IFBLK } from '../util/file-mode';

const { ST } = native;
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
  if (type === S_IFLNK) {
    e.target = fs.readlinkSync(path, 'buffer') as Buffer;
    native.lstatInto(path, st); // readlink may have moved the link's atime
  }
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
  // The markers from what was just read, by the rules of whiteouts.ts (asked live where an xattr was unreadable).
  const live = (e.flags & F.XATTR_LIVE) !== 0;
  if (type === S_IFREG && st[ST.SIZE] === 0 && (live ? isXattrWhiteout(path, st) : overlayValue(e, 'whiteout') !== null)) e.flags |= F.WH_XATTR;
  if (type === S_IFDIR && (live ? opaqueValue(path) : overlayValue(e, 'opaque')?.toString('latin1')) === 'y') e.flags |= F.OPAQUE;
  return e;
}

/** overlayXattr over the xattrs read: trusted.* first, then user.*. */
function overlayValue(e: Entry, key: 'opaque' | 'whiteout'): Buffer | null {
  for (const prefix of [XATTR_PREFIX, USER_XATTR_PREFIX]) {
    const name = prefix + key;
    const x = e.xattrs.find(([n]) => n.length === name.length && n.toString() === name);
    if (x !== undefined) return x[1];
  }
  return null;
}

/** Walks `layerDir` and returns its index file's bytes. */
export function buildIndex(layerDir: string): Buffer {
  const entries: Entry[] = [entryOf(layerDir, Buffer.alloc(0))];
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i];
    if ((e.st[ST.MODE] & S_IFMT) !== S_IFDIR) continue;
    const names = native.readdirIno(e.path).names.filter((n) => n !== '.' && n !== '..');
    // Reading the directory may have moved its atime (relatime): record it as it is now.
    native.lstatInto(e.path, e.st);
    const bufs = names.map((n) => Buffer.from(n));
    const order = bufs.map((_, k) => k).sort((a, b) => Buffer.compare(bufs[a], bufs[b]));
    e.childStart = entries.length;
    e.childCount = names.length;
    if (names.includes(WH_OPAQUE)) e.flags |= F.OPAQUE;
    for (const k of order) entries.push(entryOf(e.path + '/' + names[k], bufs[k]));
  }
  return serialize(entries);
}

/** Bytes of an entry's extra area (R.EXTRA), 0 when it needs none. */
function extraSize(e: Entry): number {
  const type = e.st[ST.MODE] & S_IFMT;
  let n = type === S_IFDIR || type === S_IFCHR || type === S_IFBLK ? 8 : e.target !== null ? 4 + e.target.length : 0;
  if (e.xattrs.length > 0) n += 2 + e.xattrs.reduce((s, [k, v]) => s + 1 + k.length + 4 + v.length, 0);
  return n;
}

function serialize(entries: Entry[]): Buffer {
  const owners = new Map<string, number>();
  let blobBytes = 0;
  for (const e of entries) {
    const key = e.st[ST.UID] + ':' + e.st[ST.GID];
    if (!owners.has(key)) owners.set(key, owners.size);
    blobBytes += e.name.length + extraSize(e);
  }
  if (owners.size > 0xffff) throw new IndexBuildError('too many distinct owners for an index');
  const ownerTable = HEADER_SIZE + entries.length * RECORD_SIZE;
  const blob = ownerTable + owners.size * 8;
  const length = blob + blobBytes;
  if (length > U32_MAX) throw new IndexBuildError('layer too large for an index');
  const b = Buffer.alloc(length);
  for (const [key, i] of owners) {
    const [uid, gid] = key.split(':').map(Number);
    b.writeUInt32LE(uid, ownerTable + i * 8);
    b.writeUInt32LE(gid, ownerTable + i * 8 + 4);
  }
  let p = blob;
  entries.forEach((e, i) => {
    const o = HEADER_SIZE + i * RECORD_SIZE;
    const st = e.st;
    b.writeUInt32LE(p, o + R.NAME);
    b.writeUInt8(e.name.length, o + R.NAME_LEN);
    p += e.name.copy(b, p);
    b.writeUInt8(e.flags | (e.xattrs.length > 0 ? F.XATTRS : 0), o + R.FLAGS);
    b.writeUInt16LE(st[ST.MODE], o + R.MODE);
    b.writeUInt16LE(owners.get(st[ST.UID] + ':' + st[ST.GID])!, o + R.OWNER);
    b.writeUIntLE(st[ST.INO], o + R.INO, 6);
    b.writeUInt32LE(st[ST.NLINK], o + R.NLINK);
    b.writeUIntLE(st[ST.SIZE], o + R.SIZE, 6);
    b.writeUIntLE(st[ST.BLOCKS], o + R.BLOCKS, 6);
    for (const [at, s] of [[R.ATIME, ST.ATIME], [R.MTIME, ST.MTIME], [R.CTIME, ST.CTIME]] as const) {
      b.writeIntLE(st[s], o + at, 6);
      b.writeUInt32LE(st[s + 1], o + at + 6);
    }
    if (extraSize(e) === 0) return;
    b.writeUInt32LE(p, o + R.EXTRA);
    const type = st[ST.MODE] & S_IFMT;
    if (type === S_IFDIR) {
      p = b.writeUInt32LE(e.childStart, p);
      p = b.writeUInt32LE(e.childCount, p);
    } else if (type === S_IFCHR || type === S_IFBLK) {
      p = b.writeUInt32LE(st[ST.RDEV_MAJOR], p);
      p = b.writeUInt32LE(st[ST.RDEV_MINOR], p);
    } else if (e.target !== null) {
      p = b.writeUInt32LE(e.target.length, p);
      p += e.target.copy(b, p);
    }
    if (e.xattrs.length > 0) {
      p = b.writeUInt16LE(e.xattrs.length, p);
      for (const [n, v] of e.xattrs) {
        p = b.writeUInt8(n.length, p);
        p += n.copy(b, p);
        p = b.writeUInt32LE(v.length, p);
        p += v.copy(b, p);
      }
    }
  });
  const root = entries[0].st;
  b.write(MAGIC, H.MAGIC, 'latin1');
  b.writeUInt32LE(VERSION, H.VERSION);
  b.writeUInt32LE(RECORD_SIZE, H.RECORD_SIZE);
  b.writeUInt32LE(entries.length, H.COUNT);
  b.writeUInt32LE(ownerTable, H.OWNERS);
  b.writeUInt32LE(owners.size, H.OWNER_COUNT);
  b.writeUInt32LE(length, H.LENGTH);
  b.writeDoubleLE(root[ST.INO], H.ROOT_INO);
  b.writeDoubleLE(root[ST.CTIME], H.ROOT_CTIME);
  b.writeUInt32LE(root[ST.CTIME_NS], H.ROOT_CTIME_NS);
  b.writeUInt32LE(root[ST.BLKSIZE], H.BLKSIZE);
  b.writeUInt32LE(checksum(b), H.CHECKSUM);
  return b;
}
