// The contract between the FUSE transport and a filesystem implementation.
// Every method is synchronous: the transport runs in its own worker thread and
// handles one request at a time. Methods report failure by throwing an error with
// an `errno` (Node's negative style or positive) or a FuseError.

import * as os from 'node:os';
import type { Journal, JournalState } from './journal';

/** Stat fields in the layout of native-shims' StatArray (see ST there). */
export type StatArray = Float64Array;

export interface RequestContext {
  uid: number;
  gid: number;
  pid: number;
}

export interface EntryOut {
  /** 0 for a cached negative entry. */
  nodeid: number;
  ino: number;
  st: StatArray;
}

export interface AttrOut {
  ino: number;
  st: StatArray;
}

export interface OpenOut {
  fh: number;
  /** A backing id from FuseChannel.openBacking: the kernel then serves read/write/mmap. */
  backingId?: number;
  directIo?: boolean;
  keepCache?: boolean;
}

export interface DirEntry {
  name: string;
  ino: number;
  /** DT_* value */
  type: number;
}

export interface SetAttrIn {
  valid: number;
  fh: number;
  size: number;
  atime: number;
  atimensec: number;
  mtime: number;
  mtimensec: number;
  mode: number;
  uid: number;
  gid: number;
}

export interface StatfsOut {
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  bsize: number;
  namelen: number;
  frsize: number;
}

/** What INIT settled, and the kernel-side services a filesystem may use. */
export interface FuseChannel {
  readonly passthrough: boolean;
  readonly posixAcl: boolean;
  /** Where nodeids and file handles handed to the kernel are recorded, when the connection can be taken over. */
  readonly journal: Journal | null;
  /** Taken over from a process that served it before (restore() follows init()). */
  readonly resumed: boolean;
  openBacking(fd: number): number;
  closeBacking(id: number): void;
  /** Drops the kernel's cached attributes of a node (FUSE_NOTIFY_INVAL_INODE). */
  invalidateAttrs(nodeid: number): void;
  /** Puts data into the kernel's page cache for a node (FUSE_NOTIFY_STORE); false if refused. */
  storeData(nodeid: number, offset: number, data: Buffer): boolean;
}

export interface FuseFilesystem {
  init(channel: FuseChannel): void;
  destroy(): void;
  /**
   * Taking over a connection another process served: rebuilds the nodes and file handles the
   * kernel still holds from the journal (after init). Without it, a connection cannot be taken over.
   */
  restore?(state: JournalState): void;
  /** Work that need not hold up a reply (removals out of sight, say): called after each reply is sent. */
  afterReply?(): void;

  lookup(ctx: RequestContext, parent: number, name: string): EntryOut;
  forget(nodeid: number, nlookup: number): void;
  getattr(ctx: RequestContext, nodeid: number, fh: number | undefined): AttrOut;
  setattr(ctx: RequestContext, nodeid: number, attr: SetAttrIn): AttrOut;
  readlink(ctx: RequestContext, nodeid: number): Buffer;
  symlink(ctx: RequestContext, parent: number, name: string, target: string): EntryOut;
  mknod(ctx: RequestContext, parent: number, name: string, mode: number, rdev: number, umask: number): EntryOut;
  mkdir(ctx: RequestContext, parent: number, name: string, mode: number, umask: number): EntryOut;
  unlink(ctx: RequestContext, parent: number, name: string): void;
  rmdir(ctx: RequestContext, parent: number, name: string): void;
  rename(ctx: RequestContext, parent: number, name: string, newParent: number, newName: string, flags: number): void;
  link(ctx: RequestContext, nodeid: number, newParent: number, newName: string): EntryOut;

  /** `killSuidGid`: an O_TRUNC open by a caller without CAP_FSETID; clear set-id bits as truncate does. */
  open(ctx: RequestContext, nodeid: number, flags: number, killSuidGid: boolean): OpenOut;
  create(ctx: RequestContext, parent: number, name: string, mode: number, flags: number, umask: number, killSuidGid: boolean): [EntryOut, OpenOut];
  tmpfile(ctx: RequestContext, parent: number, mode: number, flags: number, umask: number): [EntryOut, OpenOut];
  /** Reads into `out` at `outOffset`; returns the byte count. */
  read(ctx: RequestContext, nodeid: number, fh: number, offset: number, size: number, out: Buffer, outOffset: number): number;
  /** The fd holding an open file's data, when reads of it may be spliced straight from it to the kernel. */
  readSource?(fh: number): number | undefined;
  /** readSource, when nobody has the file open for writing: its data may be stored in the page cache ahead of reads. */
  pushSource?(fh: number): number | undefined;
  write(ctx: RequestContext, nodeid: number, fh: number, offset: number, data: Buffer, writeFlags: number): number;
  release(ctx: RequestContext, nodeid: number, fh: number): void;
  fsync(ctx: RequestContext, nodeid: number, fh: number, datasync: boolean): void;
  fallocate(ctx: RequestContext, nodeid: number, fh: number, mode: number, offset: number, length: number): void;
  lseek(ctx: RequestContext, nodeid: number, fh: number, offset: number, whence: number): number;
  copyFileRange(
    ctx: RequestContext,
    nodeIn: number,
    fhIn: number,
    offIn: number,
    nodeOut: number,
    fhOut: number,
    offOut: number,
    len: number,
  ): number;

  /** The whole listing of a directory; entries are served from `offset` on, and
   *  the same array must come back for offsets > 0 of the same listing. */
  readdir(ctx: RequestContext, nodeid: number, offset: number): DirEntry[];
  fsyncdir(ctx: RequestContext, nodeid: number, datasync: boolean): void;

  statfs(ctx: RequestContext, nodeid: number): StatfsOut;
  access(ctx: RequestContext, nodeid: number, mask: number): void;
  /** null: the attribute does not exist (ENODATA), answered without an exception. */
  getxattr(ctx: RequestContext, nodeid: number, name: string): Buffer | null;
  listxattr(ctx: RequestContext, nodeid: number): string[];
  setxattr(ctx: RequestContext, nodeid: number, name: string, value: Buffer, flags: number): void;
  removexattr(ctx: RequestContext, nodeid: number, name: string): void;
}

/** An error that carries a positive errno for the FUSE reply. */
export class FuseError extends Error {
  constructor(
    readonly errnoValue: number,
    message?: string,
  ) {
    super(message ?? `errno ${errnoValue}`);
  }
}

/** Positive errno for any thrown value (a FuseError, or an fs error's errno or code); 0 when it carries none. */
export function errnoOf(err: unknown): number {
  if (err instanceof FuseError) return err.errnoValue;
  const e = err as { errno?: unknown; code?: unknown } | null;
  if (e && typeof e.errno === 'number' && e.errno !== 0) return Math.abs(e.errno);
  if (e && typeof e.code === 'string') {
    const n = (os.constants.errno as Record<string, number>)[e.code];
    if (n) return n;
  }
  return 0;
}
