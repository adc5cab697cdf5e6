// The on-disk layout of a layer's metadata index: one file, read whole, probed in place.
//
//   header (HEADER_SIZE bytes), then `count` records of RECORD_SIZE bytes, then the
//   string blob (names, symlink targets), then the xattr blob.
//
// Record 0 is the layer root. The children of a directory are contiguous records,
// sorted by the bytes of their names (binary search); a directory's record names
// its first child and how many it has. Integers are little-endian.

export const MAGIC = 'STRATAIX';
export const VERSION = 1;
export const HEADER_SIZE = 64;

/** Header fields (byte offsets). */
export const H = {
  MAGIC: 0, // 8 bytes
  VERSION: 8, // u32
  RECORD_SIZE: 12, // u32
  COUNT: 16, // u32 records
  STRINGS: 20, // u32 offset of the string blob
  XATTRS: 24, // u32 offset of the xattr blob
  LENGTH: 28, // u32 whole file length
  ROOT_INO: 32, // f64: the layer root's inode when built (a replaced layer is stale)
  ROOT_CTIME: 40, // f64 seconds
  ROOT_CTIME_NS: 48, // u32
  BLKSIZE: 52, // u32 st_blksize of the layer's filesystem
  CHECKSUM: 56, // u32 crc32 of everything after the header
} as const;

export const RECORD_SIZE = 84;

/** Record fields (byte offsets within a record). */
export const R = {
  NAME: 0, // u32 offset in the file of the name's bytes
  NAME_LEN: 4, // u8
  FLAGS: 5, // u8 (F)
  MODE: 6, // u16, type bits included
  UID: 8, // u32
  GID: 12, // u32
  NLINK: 16, // u32
  INO: 20, // u48
  SIZE: 26, // u48
  BLOCKS: 32, // u48
  ATIME: 40, // i48 seconds, then u32 ns at +6
  MTIME: 50,
  CTIME: 60,
  /** Directory: first child record. Symlink: target offset. Device: rdev major. */
  AUX1: 72, // u32
  /** Directory: child count. Symlink: target length. Device: rdev minor. */
  AUX2: 76, // u32
  /** Offset of the entry's xattrs in the file, 0 when it has none. */
  XATTR: 80, // u32
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
} as const;

/** Xattr blob, per entry: u16 count, then per xattr u8 name length, name, u32 value length, value. */
