// FUSE struct codecs (daemon/fuse/protocol.ts): request fields decoded from the kernel's layout and
// fuse_attr encoded into it (<linux/fuse.h>, little-endian). Pure; milliseconds.
import t from 'tap';
import * as os from 'node:os';
import { ST, STAT_ARRAY_LENGTH } from '../../native-shims';
import { FuseError } from '../../daemon/fuse/filesystem';
import { ATTR_SIZE, decodeDev, decodeSetAttrIn, encodeAttr, encodeDev, readCString, readU64, writeU64 } from '../../daemon/fuse/protocol';

t.test('u64 fields: above 2^32 in two halves, negative times as two’s complement', async (t) => {
  const b = Buffer.alloc(16);
  writeU64(b, 0, 2 ** 40 + 5);
  t.equal(b.readBigUInt64LE(0), 2n ** 40n + 5n);
  t.equal(readU64(b, 0), 2 ** 40 + 5);
  writeU64(b, 8, -2);
  t.equal(b.readBigInt64LE(8), -2n);
});

t.test('rdev: the kernel’s new_encode_dev, and back', async (t) => {
  t.equal(encodeDev(8, 1), 0x801);
  t.equal(encodeDev(1, 0x123), 0x100123, 'minor above 255: its high bits above the major');
  t.same(decodeDev(encodeDev(259, 70000)), { major: 259, minor: 70000 });
});

t.test('names: NUL-terminated, then the offset after the NUL; unterminated before the end is EINVAL', async (t) => {
  const b = Buffer.from('old\0new\0');
  t.same(readCString(b, 0, b.length), ['old', 4]);
  t.same(readCString(b, 4, b.length), ['new', 8]);
  const err = t.throws(() => readCString(b, 0, 3)) as FuseError;
  t.equal(err.errnoValue, os.constants.errno.EINVAL);
});

t.test('fuse_setattr_in: every field at its offset', async (t) => {
  const b = Buffer.alloc(88);
  b.writeUInt32LE(0x1ff, 0); // valid
  b.writeBigUInt64LE(7n, 8); // fh
  b.writeBigUInt64LE(2n ** 33n, 16); // size
  b.writeBigInt64LE(-1n, 32); // atime
  b.writeBigInt64LE(1700000000n, 40); // mtime
  b.writeUInt32LE(11, 56); // atimensec
  b.writeUInt32LE(22, 60); // mtimensec
  b.writeUInt32LE(0o104755, 68); // mode
  b.writeUInt32LE(1000, 76); // uid
  b.writeUInt32LE(1001, 80); // gid
  t.same(decodeSetAttrIn(b, 0), { valid: 0x1ff, fh: 7, size: 2 ** 33, atime: -1, mtime: 1700000000, atimensec: 11, mtimensec: 22, mode: 0o104755, uid: 1000, gid: 1001 });
});

t.test('fuse_attr: every stat field lands at its offset, flags zero', async (t) => {
  const st = new Float64Array(STAT_ARRAY_LENGTH);
  const set = (k: keyof typeof ST, v: number) => (st[ST[k]] = v);
  set('SIZE', 2 ** 35);
  set('BLOCKS', 9);
  set('ATIME', 100);
  set('ATIME_NS', 1);
  set('MTIME', 200);
  set('MTIME_NS', 2);
  set('CTIME', 300);
  set('CTIME_NS', 3);
  set('MODE', 0o20644);
  set('NLINK', 2);
  set('UID', 1000);
  set('GID', 1001);
  set('RDEV_MAJOR', 4);
  set('RDEV_MINOR', 5);
  set('BLKSIZE', 4096);
  const o = Buffer.alloc(8 + ATTR_SIZE, 0xff);
  encodeAttr(o, 8, 42, st);
  t.equal(o.readBigUInt64LE(8), 42n, 'ino');
  t.equal(o.readBigUInt64LE(16), 2n ** 35n, 'size');
  t.equal(o.readBigUInt64LE(24), 9n, 'blocks');
  t.same([o.readBigUInt64LE(32), o.readBigUInt64LE(40), o.readBigUInt64LE(48)], [100n, 200n, 300n], 'atime mtime ctime');
  t.same([o.readUInt32LE(56), o.readUInt32LE(60), o.readUInt32LE(64)], [1, 2, 3], 'nanoseconds');
  t.same([o.readUInt32LE(68), o.readUInt32LE(72), o.readUInt32LE(76), o.readUInt32LE(80)], [0o20644, 2, 1000, 1001], 'mode nlink uid gid');
  t.equal(o.readUInt32LE(84), encodeDev(4, 5), 'rdev');
  t.equal(o.readUInt32LE(88), 4096, 'blksize');
  t.equal(o.readUInt32LE(92), 0, 'flags');
  t.equal(o.readUInt32LE(0), 0xffffffff, 'nothing written before the offset');
});
