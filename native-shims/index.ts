/**
 * Typed front for the strata_shims native addon: thin wrappers for Linux
 * syscalls that Node's fs module does not expose.
 *
 * Error convention:
 *  - Throwing functions raise an Error shaped like Node's fs errors:
 *    message "<CODE>: <strerror>, <syscall> '<path>'", with `code` ('ENOENT'),
 *    `errno` (negative, -2 for ENOENT, as Node does), `syscall` and, when
 *    there is one, `path` (and `dest` for two-path calls).
 *  - Hot-path functions documented as "returns errno" never throw on syscall
 *    failure: they return 0 on success or a positive errno.
 *  - Bad argument types always throw a TypeError.
 */
import * as fs from 'fs';
import * as path from 'path';

/** Error thrown by the native wrappers (same shape as Node's fs errors). */
export interface ShimError extends Error {
  code: string;
  /** Negative errno, e.g. -2 for ENOENT. */
  errno: number;
  syscall: string;
  path?: string;
  dest?: string;
}

/** Result of readdirIno: parallel arrays, one slot per entry including "." and "..". */
export interface DirEntries {
  names: string[];
  /** d_type per entry (DT_* values; DT_UNKNOWN when the filesystem does not report it). */
  types: Uint8Array;
  /** d_ino per entry. */
  inos: Float64Array;
}

/**
 * A Float64Array(18) filled by lstatInto/fstatInto; index it with ST:
 * DEV, INO, MODE, NLINK, UID, GID, RDEV, SIZE, BLKSIZE, BLOCKS,
 * ATIME, ATIME_NS, MTIME, MTIME_NS, CTIME, CTIME_NS, RDEV_MAJOR, RDEV_MINOR.
 * DEV and RDEV hold the raw dev_t; RDEV_MAJOR/RDEV_MINOR are its decoded halves.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface StatArray extends Float64Array {}

/** Indices into a StatArray. */
export const ST = {
  DEV: 0,
  INO: 1,
  MODE: 2,
  NLINK: 3,
  UID: 4,
  GID: 5,
  RDEV: 6,
  SIZE: 7,
  BLKSIZE: 8,
  BLOCKS: 9,
  ATIME: 10,
  ATIME_NS: 11,
  MTIME: 12,
  MTIME_NS: 13,
  CTIME: 14,
  CTIME_NS: 15,
  RDEV_MAJOR: 16,
  RDEV_MINOR: 17,
} as const;

/** Number of slots lstatInto/fstatInto require. */
export const STAT_ARRAY_LENGTH = 18;

/** A fresh StatArray; allocate once and reuse it on hot paths. */
export function newStatArray(): StatArray {
  return new Float64Array(STAT_ARRAY_LENGTH);
}

interface NativeShims {
  mount(source: string, target: string, fstype: string, flags: number, data: string): void;
  umount2(target: string, flags: number): void;
  fuseBackingOpen(devFd: number, backingFd: number): number;
  fuseBackingClose(devFd: number, backingId: number): void;
  fuseClone(newFd: number, sessionFd: number): void;
  mknod(path: string, mode: number, major: number, minor: number): void;
  lstatInto(path: string, out: Float64Array): number;
  fstatInto(fd: number, out: Float64Array): number;
  lgetxattr(path: string, name: string): Buffer | null;
  lsetxattr(path: string, name: string, value: Uint8Array, flags: number): void;
  llistxattr(path: string): string[];
  lremovexattr(path: string, name: string): void;
  fgetxattr(fd: number, name: string): Buffer | null;
  fsetxattr(fd: number, name: string, value: Uint8Array, flags: number): void;
  flistxattr(fd: number): string[];
  renameat2(oldPath: string, newPath: string, flags: number): void;
  utimensat(path: string, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number, flags: number): void;
  futimens(fd: number, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void;
  lseek(fd: number, offset: number, whence: number): number;
  copyFileRange(fdIn: number, offIn: number, fdOut: number, offOut: number, len: number): number;
  ficlone(destFd: number, srcFd: number): void;
  fallocate(fd: number, mode: number, offset: number, len: number): void;
  syncFileRange(fd: number, offset: number, nbytes: number, flags: number): number;
  syncfs(dir: string): number;
  nameToHandle(fd: number): Buffer | null;
  openByHandle(mountFd: number, handle: Buffer, flags: number): number;
  fsUuid(fd: number): Buffer | null;
  linkatEmptyPath(fd: number, newPath: string): void;
  readdirIno(path: string): DirEntries;
  umask(mask: number): number;
  unshare(flags: number): void;
  flock(fd: number, operation: number): number;
  readInto(fd: number, buf: Buffer): number;
  /** write(2) of buf[0, len) without throwing: bytes written, or -errno. */
  writeFrom(fd: number, buf: Buffer, len: number): number;
  /** epoll_create1(EPOLL_CLOEXEC): the fd, or -errno. */
  epollCreate(): number;
  /** epoll_ctl with data.fd = fd: 0, or -errno. */
  epollCtl(epfd: number, op: number, fd: number, events: number): number;
  /** epoll_wait into buf as (u32 events, i32 fd) pairs (at most 64): the number of pairs, or -errno. */
  epollWait(epfd: number, buf: Buffer, timeoutMs: number): number;
  /** eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK): the fd, or -errno. */
  eventfd(): number;
  /** fcntl with an integer argument: its result, or -errno. */
  fcntl(fd: number, cmd: number, arg: number): number;
  socketpair(): [number, number];
  recvFd(sock: number): number;
  pipe2(): [number, number];
  setPipeSize(fd: number, size: number): number;
  splice(fdIn: number, offIn: number, fdOut: number, offOut: number, len: number, flags: number): number;
  fadvise(fd: number, offset: number, len: number, advice: number): number;
  seqpacketSocket(): number;
  bindUnix(fd: number, path: string): void;
  listen(fd: number, backlog: number): void;
  accept4(fd: number): number;
  connectUnix(fd: number, path: string): number;
  sendmsgFds(fd: number, buf: Buffer, len: number, fds: number[]): number;
  recvmsgFds(fd: number, buf: Buffer): number | [number, number[]];
}

// This file runs both compiled (dist/native-shims/index.js) and from source
// (native-shims/index.ts, e.g. under ts-node), so try both layouts.
const CANDIDATES = [
  path.resolve(__dirname, '../../native-shims/build/Release/strata_shims.node'),
  path.resolve(__dirname, './build/Release/strata_shims.node'),
];

function loadNative(): NativeShims {
  for (const candidate of CANDIDATES) {
    if (fs.existsSync(candidate)) {
      return require(candidate) as NativeShims;
    }
  }
  throw new Error(`strata_shims native addon not found (run 'make native'); looked in: ${CANDIDATES.join(', ')}`);
}

const native: NativeShims = loadNative();

/** mount(2). `data` "" passes NULL options. Errors carry path=source, dest=target. */
export const mount: NativeShims['mount'] = native.mount;
/** umount2(2); flags MNT_FORCE / MNT_DETACH. */
export const umount2: NativeShims['umount2'] = native.umount2;
/** FUSE_DEV_IOC_BACKING_OPEN: register backingFd for passthrough; returns the backing id (> 0). */
export const fuseBackingOpen: NativeShims['fuseBackingOpen'] = native.fuseBackingOpen;
/** FUSE_DEV_IOC_BACKING_CLOSE: release a backing id. */
export const fuseBackingClose: NativeShims['fuseBackingClose'] = native.fuseBackingClose;
/** FUSE_DEV_IOC_CLONE: attach a freshly opened /dev/fuse fd to an existing session. */
export const fuseClone: NativeShims['fuseClone'] = native.fuseClone;
/** mknod(path, mode, makedev(major, minor)); mode includes the S_IF* type bits. */
export const mknod: NativeShims['mknod'] = native.mknod;
/** lstat into `out` (length >= 18, see ST). Returns errno: 0 ok, else positive errno; never throws on syscall failure. */
export const lstatInto: NativeShims['lstatInto'] = native.lstatInto;
/** fstat into `out` (length >= 18, see ST). Returns errno like lstatInto. */
export const fstatInto: NativeShims['fstatInto'] = native.fstatInto;
/** lgetxattr; null when the attribute is absent (ENODATA) or unsupported (ENOTSUP). */
export const lgetxattr: NativeShims['lgetxattr'] = native.lgetxattr;
/** lsetxattr; flags 0, XATTR_CREATE or XATTR_REPLACE. */
export const lsetxattr: NativeShims['lsetxattr'] = native.lsetxattr;
/** llistxattr; [] when there are none or the filesystem lacks xattrs. */
export const llistxattr: NativeShims['llistxattr'] = native.llistxattr;
/** lremovexattr. */
export const lremovexattr: NativeShims['lremovexattr'] = native.lremovexattr;
/** fgetxattr (needed for O_TMPFILE files, which have no path); null on ENODATA/ENOTSUP. */
export const fgetxattr: NativeShims['fgetxattr'] = native.fgetxattr;
/** fsetxattr; flags 0, XATTR_CREATE or XATTR_REPLACE. */
export const fsetxattr: NativeShims['fsetxattr'] = native.fsetxattr;
/** flistxattr; [] when there are none or unsupported. */
export const flistxattr: NativeShims['flistxattr'] = native.flistxattr;
/** renameat2(AT_FDCWD, old, AT_FDCWD, new, flags); RENAME_NOREPLACE / EXCHANGE / WHITEOUT. */
export const renameat2: NativeShims['renameat2'] = native.renameat2;
/** utimensat(AT_FDCWD, ...); nsec may be UTIME_NOW / UTIME_OMIT; flags may be AT_SYMLINK_NOFOLLOW. */
export const utimensat: NativeShims['utimensat'] = native.utimensat;
/** futimens; nsec may be UTIME_NOW / UTIME_OMIT. */
export const futimens: NativeShims['futimens'] = native.futimens;
/** lseek with 64-bit offsets (incl. SEEK_DATA / SEEK_HOLE); returns -1 instead of throwing on ENXIO. */
export const lseek: NativeShims['lseek'] = native.lseek;
/** copy_file_range with explicit offsets (file positions untouched); returns bytes copied (0 at EOF). */
export const copyFileRange: NativeShims['copyFileRange'] = native.copyFileRange;
/** ioctl(destFd, FICLONE, srcFd); EOPNOTSUPP / EXDEV / EINVAL are normal on ext4, so callers fall back. */
export const ficlone: NativeShims['ficlone'] = native.ficlone;
/** fallocate; mode FALLOC_FL_KEEP_SIZE / FALLOC_FL_PUNCH_HOLE. */
export const fallocate: NativeShims['fallocate'] = native.fallocate;
/** sync_file_range; 0 or -errno. SYNC_FILE_RANGE_WRITE (2) starts writeback of the range without waiting for it. */
export const syncFileRange: NativeShims['syncFileRange'] = native.syncFileRange;
export const SYNC_FILE_RANGE_WRITE = 2;
/** syncfs(2) of the filesystem holding directory `dir`; 0 or -errno. */
export const syncfs: NativeShims['syncfs'] = native.syncfs;
/** name_to_handle_at(fd, "", AT_EMPTY_PATH): handle type (int32 LE) then handle bytes; null without file handles. */
export const nameToHandle: NativeShims['nameToHandle'] = native.nameToHandle;
/** open_by_handle_at(mountFd, handle from nameToHandle, flags | O_CLOEXEC): the fd or -errno (EPERM without CAP_DAC_READ_SEARCH, ESTALE when gone). */
export const openByHandle: NativeShims['openByHandle'] = native.openByHandle;
/** The filesystem's UUID (FS_IOC_GETFSUUID: the superblock's s_uuid, as overlayfs uses it); null when it has none. */
export const fsUuid: NativeShims['fsUuid'] = native.fsUuid;
/** linkat(fd, "", AT_FDCWD, newPath, AT_EMPTY_PATH): give an O_TMPFILE file a name. */
export const linkatEmptyPath: NativeShims['linkatEmptyPath'] = native.linkatEmptyPath;
/** Every directory entry including "." and ".." with d_type and d_ino. Throws on error (syscall 'opendir'/'readdir'). */
export const readdirIno: NativeShims['readdirIno'] = native.readdirIno;
/** umask(2); returns the previous mask. */
export const umask: NativeShims['umask'] = native.umask;
/** unshare(2) for the calling thread; with CLONE_FS the thread gets its own umask and cwd. */
export const unshare: NativeShims['unshare'] = native.unshare;
export const CLONE_FS = 0x200;
/** flock(2); returns 0 or a positive errno (EWOULDBLOCK when LOCK_NB and held elsewhere). */
export const flock: NativeShims['flock'] = native.flock;
/** read(2) without throwing: bytes read, or -errno (the FUSE loop's read, where ENOENT and ENODEV are routine). */
export const readInto: NativeShims['readInto'] = native.readInto;
export const writeFrom: NativeShims['writeFrom'] = native.writeFrom;
export const epollCreate: NativeShims['epollCreate'] = native.epollCreate;
export const epollCtl: NativeShims['epollCtl'] = native.epollCtl;
export const epollWait: NativeShims['epollWait'] = native.epollWait;
export const eventfd: NativeShims['eventfd'] = native.eventfd;
export const fcntl: NativeShims['fcntl'] = native.fcntl;
export const F_GETFL = 3;
export const F_SETFL = 4;
export const F_DUPFD_CLOEXEC = 1030;
export const O_NONBLOCK = 0o4000;
export const EPOLL_CTL_ADD = 1;
export const EPOLL_CTL_DEL = 2;
export const EPOLLIN = 0x001;
export const EPOLLERR = 0x008;
export const EPOLLHUP = 0x010;
/** socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC); both fds. */
export const socketpair: NativeShims['socketpair'] = native.socketpair;
/** recvmsg(2) of one SCM_RIGHTS fd (close-on-exec); -1 when the peer closed without sending one. */
export const recvFd: NativeShims['recvFd'] = native.recvFd;
/** pipe2(O_CLOEXEC): [read end, write end]. */
export const pipe2: NativeShims['pipe2'] = native.pipe2;
/** fcntl(F_SETPIPE_SZ): the new capacity, or -errno. */
export const setPipeSize: NativeShims['setPipeSize'] = native.setPipeSize;
/** splice(2) without throwing: bytes moved or -errno; an offset < 0 passes NULL (pipes). */
export const splice: NativeShims['splice'] = native.splice;
/** posix_fadvise(2): 0 or the errno. */
export const fadvise: NativeShims['fadvise'] = native.fadvise;
export const POSIX_FADV_SEQUENTIAL = 2;
export const POSIX_FADV_WILLNEED = 3;
/** socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC): the fd (throws). */
export const seqpacketSocket: NativeShims['seqpacketSocket'] = native.seqpacketSocket;
/** bind(2) to a Unix socket path (throws). */
export const bindUnix: NativeShims['bindUnix'] = native.bindUnix;
/** listen(2) (throws). */
export const listen: NativeShims['listen'] = native.listen;
/** accept4(SOCK_CLOEXEC): the fd, or -errno. */
export const accept4: NativeShims['accept4'] = native.accept4;
/** connect(2) to a Unix socket path: 0, or -errno. */
export const connectUnix: NativeShims['connectUnix'] = native.connectUnix;
/** sendmsg(2) of buf[0, len) with SCM_RIGHTS fds (at most 16), MSG_NOSIGNAL: bytes sent, or -errno. */
export const sendmsgFds: NativeShims['sendmsgFds'] = native.sendmsgFds;
/** recvmsg(2) with SCM_RIGHTS fds (close-on-exec): -errno, or [bytes, fds] (0 bytes: the peer closed). */
export const recvmsgFds: NativeShims['recvmsgFds'] = native.recvmsgFds;
export const SPLICE_F_MOVE = 1;
export const SPLICE_F_NONBLOCK = 2;
export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

// mount(2) flags
export const MS_RDONLY = 1;
export const MS_NOSUID = 2;
export const MS_NODEV = 4;
export const MS_NOEXEC = 8;
export const MS_NOATIME = 1024;
export const MS_NODIRATIME = 2048;
export const MS_RELATIME = 1 << 21;
export const MS_LAZYTIME = 1 << 25;

// umount2(2) flags
export const MNT_FORCE = 1;
export const MNT_DETACH = 2;

// renameat2(2) flags
export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
export const RENAME_WHITEOUT = 4;

// setxattr(2) flags
export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;

// utimensat(2)
export const UTIME_NOW = (1 << 30) - 1;
export const UTIME_OMIT = (1 << 30) - 2;
export const AT_SYMLINK_NOFOLLOW = 0x100;

// lseek(2)
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

// fallocate(2)
export const FALLOC_FL_KEEP_SIZE = 1;
export const FALLOC_FL_PUNCH_HOLE = 2;

// open(2): includes O_DIRECTORY, as the kernel requires; combine with O_RDWR or O_WRONLY.
export const O_TMPFILE = 0o20200000;

// d_type values
export const DT_UNKNOWN = 0;
export const DT_FIFO = 1;
export const DT_CHR = 2;
export const DT_DIR = 4;
export const DT_BLK = 6;
export const DT_REG = 8;
export const DT_LNK = 10;
export const DT_SOCK = 12;
