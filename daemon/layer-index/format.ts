// The on-disk layout of a layer's metadata index: one file, read whole, probed in place.
//
//   header (HEADER_SIZE bytes), then `count` records of RECORD_SIZE bytes, then the
//   owner table (u32 uid, u32 gid per owner), then the blob: names, and per entry that
//   needs one an extra area (see R.EXTRA).
//
// Record 0 is the layer root. The children of a directory are contiguous records,
// sorted by the bytes of their names (binary search). Integers are little-endian.

import * as zlib from 'node:zlib';

export const MAGIC = 'STRATAIX';
export const VERSION = 2;
export const HEADER_SIZE = 64;

/** Header fields (byte offsets). */
export const H = {
  MAGIC: 0, // 8 bytes
  VERSION: 8, // u32
  RECORD_SIZE: 12, // u32
  COUNT: 16, // u32 records
  OWNERS: 20, // u32 offset of the owner table
  OWNER_COUNT: 24, // u32
  LENGTH: 28, // u32 whole file length
  ROOT_INO: 32, // f64: the layer root's inode when built (a replaced layer is stale)
  ROOT_CTIME: 40, // f64 seconds
  ROOT_CTIME_NS: 48, // u32
  BLKSIZE: 52, // u32 st_blksize of the layer's filesystem
  CHECKSUM: 56, // u32 crc32 of the whole file but this field (see checksum())
} as const;

/** The file's checksum: crc32 of every byte except the checksum field itself. */
export function checksum(file: Buffer): number {
  return zlib.crc32(file.subarray(H.CHECKSUM + 4), zlib.crc32(file.subarray(0, H.CHECKSUM)));
}

export const RECORD_SIZE = 68;

/** Record fields (byte offsets within a record). */
export const R = {
  NAME: 0, // u32 offset in the file of the name's bytes
  NAME_LEN: 4, // u8
  FLAGS: 5, // u8 (F)
  MODE: 6, // u16, type bits included
  OWNER: 8, // u16 index in the owner table
  INO: 10, // u48
  NLINK: 16, // u32
  SIZE: 20, // u48
  BLOCKS: 26, // u48
  ATIME: 32, // i48 seconds, then u32 ns at +6
  MTIME: 42,
  CTIME: 52,
  /**
   * u32 offset of the entry's extra area, 0 when it has none. It holds, by type: a directory's
   * first child record and child count (u32, u32); a symlink's target (u32 length, bytes); a
   * device's major and minor (u32, u32); then, with F.XATTRS, the xattrs: u16 count, then per
   * xattr u8 name length, name, u32 value length, value.
   */
  EXTRA: 64,
} as const;

/** Entry flags, computed at build time with the same rules the union applies live. */
export const F = {
  /** overlayfs whiteout: a char device 0/0. */
  WH_CHR: 1,
  /** A zero-size regular file with the overlay whiteout xattr. */
  WH_XATTR: 2,
  /** A directory opaque in any format (opaque=y, or a `.wh..wh..opq` marker inside). */
  OPAQUE: 4,
  /** Some xattr of this entry could not be read at build time: ask the disk. */
  XATTR_LIVE: 8,
  /** The extra area ends with the entry's xattrs. */
  XATTRS: 16,
} as const;
