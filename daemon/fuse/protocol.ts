// Linux FUSE wire protocol: opcodes, flags and struct sizes (little-endian).
// Debian 12's <linux/fuse.h> stops at 7.38; the passthrough pieces come from the
// kernel's include/uapi/linux/fuse.h (7.40+), see ../shared/notes/fuse-facts.md.
// Also the pure codecs of its structs that session.ts uses (unit-tested in test/unit/).
import * as os from 'node:os';
import { ST } from '../../native-shims';
import { FuseError, type SetAttrIn, type StatArray } from './filesystem';

export const KERNEL_VERSION = 7;
export const KERNEL_MINOR_VERSION = 40; // first minor with passthrough and max_stack_depth

export const enum Op {
  LOOKUP = 1,
  FORGET = 2,
  GETATTR = 3,
  SETATTR = 4,
  READLINK = 5,
  SYMLINK = 6,
  MKNOD = 8,
  MKDIR = 9,
  UNLINK = 10,
  RMDIR = 11,
  RENAME = 12,
  LINK = 13,
  OPEN = 14,
  READ = 15,
  WRITE = 16,
  STATFS = 17,
  RELEASE = 18,
  FSYNC = 20,
  SETXATTR = 21,
  GETXATTR = 22,
  LISTXATTR = 23,
  REMOVEXATTR = 24,
  FLUSH = 25,
  INIT = 26,
  OPENDIR = 27,
  READDIR = 28,
  RELEASEDIR = 29,
  FSYNCDIR = 30,
  GETLK = 31,
  SETLK = 32,
  SETLKW = 33,
  ACCESS = 34,
  CREATE = 35,
  INTERRUPT = 36,
  BMAP = 37,
  DESTROY = 38,
  IOCTL = 39,
  POLL = 40,
  NOTIFY_REPLY = 41,
  BATCH_FORGET = 42,
  FALLOCATE = 43,
  READDIRPLUS = 44,
  RENAME2 = 45,
  LSEEK = 46,
  COPY_FILE_RANGE = 47,
  SETUPMAPPING = 48,
  REMOVEMAPPING = 49,
  SYNCFS = 50,
  TMPFILE = 51,
  STATX = 52,
}

/** Notification codes, sent in the error field of an out header with unique 0. */
export const enum Notify {
  INVAL_INODE = 2,
  STORE = 4,
  /** Requests read but not answered go back to the pending queue, resent with bit 63 of unique set (kernel 6.9). */
  RESEND = 7,
}

/** fuse_notify_inval_inode_out: nodeid, offset (negative: attributes only), length. */
export const NOTIFY_INVAL_INODE_OUT_SIZE = 24;

/** INIT flags (low 32 bits in `flags`, high 32 bits in `flags2`). */
export const Init = {
  ASYNC_READ: 1 << 0,
  POSIX_LOCKS: 1 << 1,
  ATOMIC_O_TRUNC: 1 << 3,
  EXPORT_SUPPORT: 1 << 4,
  BIG_WRITES: 1 << 5,
  DONT_MASK: 1 << 6,
  SPLICE_WRITE: 1 << 7,
  SPLICE_MOVE: 1 << 8,
  SPLICE_READ: 1 << 9,
  FLOCK_LOCKS: 1 << 10,
  AUTO_INVAL_DATA: 1 << 12,
  DO_READDIRPLUS: 1 << 13,
  READDIRPLUS_AUTO: 1 << 14,
  ASYNC_DIO: 1 << 15,
  WRITEBACK_CACHE: 1 << 16,
  NO_OPEN_SUPPORT: 1 << 17,
  PARALLEL_DIROPS: 1 << 18,
  HANDLE_KILLPRIV: 1 << 19,
  POSIX_ACL: 1 << 20,
  ABORT_ERROR: 1 << 21,
  MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23,
  NO_OPENDIR_SUPPORT: 1 << 24,
  EXPLICIT_INVAL_DATA: 1 << 25,
  HANDLE_KILLPRIV_V2: 1 << 28,
  SETXATTR_EXT: 1 << 29,
  INIT_EXT: 1 << 30,
} as const;

/** High INIT flags, as bits of `flags2`. */
export const Init2 = {
  SECURITY_CTX: 1 << 0,
  HAS_INODE_DAX: 1 << 1,
  CREATE_SUPP_GROUP: 1 << 2,
  HAS_EXPIRE_ONLY: 1 << 3,
  DIRECT_IO_ALLOW_MMAP: 1 << 4,
  PASSTHROUGH: 1 << 5,
  NO_EXPORT_SUPPORT: 1 << 6,
} as const;

export const Fattr = {
  MODE: 1 << 0,
  UID: 1 << 1,
  GID: 1 << 2,
  SIZE: 1 << 3,
  ATIME: 1 << 4,
  MTIME: 1 << 5,
  FH: 1 << 6,
  ATIME_NOW: 1 << 7,
  MTIME_NOW: 1 << 8,
  LOCKOWNER: 1 << 9,
  CTIME: 1 << 10,
  KILL_SUIDGID: 1 << 11,
} as const;

export const Fopen = {
  DIRECT_IO: 1 << 0,
  KEEP_CACHE: 1 << 1,
  NONSEEKABLE: 1 << 2,
  CACHE_DIR: 1 << 3,
  STREAM: 1 << 4,
  NOFLUSH: 1 << 5,
  PARALLEL_DIRECT_WRITES: 1 << 6,
  PASSTHROUGH: 1 << 7,
} as const;

export const GETATTR_FH = 1 << 0;
export const FSYNC_FDATASYNC = 1 << 0;
export const WRITE_KILL_SUIDGID = 1 << 2;
/** fuse_open_in / fuse_create_in open_flags: an O_TRUNC open by a caller without CAP_FSETID. */
export const OPEN_KILL_SUIDGID = 1 << 0;

export const IN_HEADER_SIZE = 40;
export const OUT_HEADER_SIZE = 16;
export const ATTR_SIZE = 88;
export const ENTRY_OUT_SIZE = 128;
export const ATTR_OUT_SIZE = 104;
export const OPEN_OUT_SIZE = 16;
export const INIT_OUT_SIZE = 64;
export const STATFS_OUT_SIZE = 80;
export const DIRENT_HEADER_SIZE = 24;
/** fuse_notify_store_out: nodeid, offset, size, padding; the data follows. */
export const NOTIFY_STORE_OUT_SIZE = 24;
export const SETXATTR_IN_SIZE_EXT = 16;
export const SETXATTR_IN_SIZE_COMPAT = 8;

/** Largest write the kernel may send us; the read buffer is sized from it. */
export const MAX_WRITE = 1 << 20;
export const MAX_PAGES = MAX_WRITE / 4096;
/** A read() on /dev/fuse needs room for the header, the largest in-struct and max_write. */
export const READ_BUFFER_SIZE = MAX_WRITE + 4096;

/** Timeouts for entries and attributes: lower layers never change and every change
 *  to upper goes through us, so the kernel may cache for as long as it likes. */
export const CACHE_TIMEOUT_SEC = 86400;

export function direntAlign(len: number): number {
  return (len + 7) & ~7;
}

const TWO32 = 4294967296;

export function readU64(b: Buffer, off: number): number {
  return b.readUInt32LE(off) + b.readUInt32LE(off + 4) * TWO32;
}

export function writeU64(b: Buffer, off: number, n: number): void {
  if (n >= 0) {
    b.writeUInt32LE(n % TWO32 >>> 0, off);
    b.writeUInt32LE(Math.floor(n / TWO32) >>> 0, off + 4);
  } else {
    b.writeBigInt64LE(BigInt(Math.trunc(n)), off);
  }
}

/** Kernel dev_t encoding used in fuse_attr.rdev (new_encode_dev). */
export function encodeDev(major: number, minor: number): number {
  return ((minor & 0xff) | (major << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

export function decodeDev(rdev: number): { major: number; minor: number } {
  return { major: (rdev & 0xfff00) >>> 8, minor: (rdev & 0xff) | ((rdev >>> 12) & 0xfff00) };
}

/** A NUL-terminated name at `off` that must end before `end`; returns it and the offset after the NUL. */
export function readCString(b: Buffer, off: number, end: number): [string, number] {
  const z = b.indexOf(0, off);
  if (z < 0 || z >= end) throw new FuseError(os.constants.errno.EINVAL, 'unterminated name');
  return [b.toString('utf8', off, z), z + 1];
}

/** struct fuse_setattr_in at `p`. */
export function decodeSetAttrIn(b: Buffer, p: number): SetAttrIn {
  return {
    valid: b.readUInt32LE(p),
    fh: readU64(b, p + 8),
    size: readU64(b, p + 16),
    atime: Number(b.readBigInt64LE(p + 32)),
    mtime: Number(b.readBigInt64LE(p + 40)),
    atimensec: b.readUInt32LE(p + 56),
    mtimensec: b.readUInt32LE(p + 60),
    mode: b.readUInt32LE(p + 68),
    uid: b.readUInt32LE(p + 76),
    gid: b.readUInt32LE(p + 80),
  };
}

/** struct fuse_attr (ATTR_SIZE bytes) at `off`, from a stat array. */
export function encodeAttr(o: Buffer, off: number, ino: number, st: StatArray): void {
  writeU64(o, off, ino);
  writeU64(o, off + 8, st[ST.SIZE]);
  writeU64(o, off + 16, st[ST.BLOCKS]);
  writeU64(o, off + 24, st[ST.ATIME]);
  writeU64(o, off + 32, st[ST.MTIME]);
  writeU64(o, off + 40, st[ST.CTIME]);
  o.writeUInt32LE(st[ST.ATIME_NS], off + 48);
  o.writeUInt32LE(st[ST.MTIME_NS], off + 52);
  o.writeUInt32LE(st[ST.CTIME_NS], off + 56);
  o.writeUInt32LE(st[ST.MODE], off + 60);
  o.writeUInt32LE(st[ST.NLINK], off + 64);
  o.writeUInt32LE(st[ST.UID], off + 68);
  o.writeUInt32LE(st[ST.GID], off + 72);
  o.writeUInt32LE(encodeDev(st[ST.RDEV_MAJOR], st[ST.RDEV_MINOR]), off + 76);
  o.writeUInt32LE(st[ST.BLKSIZE], off + 80);
  o.writeUInt32LE(0, off + 84); // flags
}
