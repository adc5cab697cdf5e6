// The union's open files: FUSE file handles and the data path behind them. An open chooses how
// the kernel reaches the data (passthrough to the backing file, or reads served here with the
// page cache primed); writes, truncates and fallocates by callers without CAP_FSETID clear the
// set-id bits as the VFS does. Names, lookups and attributes stay in union-fs.ts.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as native from '../../native-shims';
import { FuseError, type FuseChannel, type OpenOut, type RequestContext } from '../fuse/filesystem';
import { WRITE_KILL_SUIDGID } from '../fuse/protocol';
import type { Journal } from '../fuse/journal';
import type { Logger } from '../log';
import { S_IFMT, S_IFREG, S_ISGID, S_ISUID, S_IXGRP } from '../util/file-mode';
import type { CopyUp } from './copyup';
import type { HeldFiles } from './held-files';
import type { IdMap } from './idmap';
import type { Node, NodeTable } from './nodes';

const E = os.constants.errno;
const { ST } = native;
const O_ACCMODE = 3;
const { O_RDONLY, O_RDWR, O_TRUNC } = fs.constants;
/** Files at least this large at open use FUSE passthrough; smaller ones the page cache. */
export const PASSTHROUGH_MIN_SIZE = 256 * 1024;

export interface Handle {
  fd: number;
  node: Node;
  /** The handle holds a reference on node.backingId. */
  backing: boolean;
  /** Opened for writing (journaled, so a takeover reopens it the same way). */
  write: boolean;
  /** A run of sequential writes: where it ends, and up to where its writeback was started. */
  streamEnd?: number;
  streamKicked?: number;
}

/** A sequential writer this far ahead of the last start of writeback starts the next one. */
const WRITEBACK_STEP = 8 << 20;

/** What the data path needs of the union around it. */
export interface DataPathHost {
  nodes: NodeTable;
  copy: CopyUp;
  gids: IdMap;
  log?: Logger;
  noFsync: boolean;
  /** Fails with EROFS on a read-only union. */
  writable(): void;
  realPath(node: Node): string;
  upperPath(node: Node): string;
  stat(node: Node, fh?: number): Float64Array;
  dropIfUnused(node: Node): void;
}

function fail(errno: number, msg?: string): never {
  throw new FuseError(errno, msg);
}

function hasSetIds(mode: number): boolean {
  return (mode & S_IFMT) === S_IFREG && (mode & (S_ISUID | S_ISGID)) !== 0;
}

/** Whether the caller belongs to group `gid` (its fsgid or a supplementary group). */
function callerInGroup(ctx: RequestContext, gid: number): boolean {
  if (ctx.gid === gid) return true;
  try {
    const groups = /^Groups:(.*)$/m.exec(fs.readFileSync(`/proc/${ctx.pid}/status`, 'utf8'))?.[1] ?? '';
    return groups.trim().split(/\s+/).includes(String(gid));
  } catch {
    return false; // the caller is gone
  }
}

/** Small files' data on its way into the page cache (see storePages): one per thread, not per mount. */
let storeBuf: Buffer | undefined;

export class DataPath {
  private nextFh = 1;
  private channel: FuseChannel | null = null;
  /** Handles handed to the kernel, for a process taking over the connection. */
  private journal: Journal | null = null;
  /** Whether opens may use passthrough (off for good after the kernel refuses a backing). */
  passthrough = false;
  private readonly st = native.newStatArray();

  constructor(
    private readonly host: DataPathHost,
    /** Open handles by fh; shared with the union, which stats unlinked files through them. */
    readonly handles: Map<number, Handle>,
    /** Open files whose names are gone, named in the work dir for a takeover. */
    readonly held: HeldFiles,
  ) {}

  init(channel: FuseChannel): void {
    this.channel = channel;
    this.passthrough = channel.passthrough;
    this.journal = channel.journal;
    if (this.journal !== null) this.held.start(channel.resumed);
  }

  /** Closes every handle (the mount is going away). */
  closeAll(): void {
    this.held.clear();
    for (const h of this.handles.values()) {
      try {
        fs.closeSync(h.fd);
      } catch {
        // already closed
      }
    }
    this.handles.clear();
  }

  addHandle(fd: number, node: Node, write: boolean): number {
    const fh = this.nextFh++;
    this.handles.set(fh, { fd, node, backing: false, write });
    node.addHandle(fh);
    node.opened = true;
    return fh;
  }

  /** Journals an open handle before the kernel learns of it. */
  recordOpen(fh: number, out: OpenOut): OpenOut {
    const h = this.handles.get(fh);
    if (h !== undefined) this.journal?.open(fh, h.node.id, h.write, out.backingId ?? 0);
    return out;
  }

  /** Never hands out `fh` again: the kernel holds it from before a takeover (even one that could not be reopened). */
  reserveFh(fh: number): void {
    this.nextFh = Math.max(this.nextFh, fh + 1);
  }

  /** A handle the kernel holds from before a takeover, on its backing file opened again. */
  restoreHandle(fh: number, node: Node, fd: number, write: boolean, backingId: number): void {
    this.reserveFh(fh);
    this.handles.set(fh, { fd, node, backing: backingId > 0, write });
    node.addHandle(fh);
    if (backingId > 0) {
      node.backingId = backingId;
      node.backingRefs++;
      node.passthroughUsed = true;
    }
  }

  /**
   * Chooses how the kernel reads and writes an open file. Writers and large files use
   * passthrough (the kernel serves data from the backing file; one backing per
   * node). Small files are served by the daemon with the page cache kept: warm
   * reads then cost no request at all, where every passthrough read would
   * invalidate the cached atime and cost a GETATTR. An inode keeps one mode while
   * it has open handles (the kernel refuses to mix them).
   */
  withBacking(node: Node, fh: number, fd: number, size: number, mode: number, write: boolean): OpenOut {
    // A writer of a set-id file is served here: the kernel does not clear set-id
    // bits on passthrough writes when we handle that (HANDLE_KILLPRIV_V2).
    const setIdWriter = write && hasSetIds(mode);
    const usePassthrough =
      this.passthrough &&
      this.channel !== null &&
      (node.backingRefs > 0 || (node.handles.size <= 1 && !setIdWriter && (write || size >= PASSTHROUGH_MIN_SIZE)));
    if (!usePassthrough) {
      // Data written through a passthrough handle bypassed the page cache: drop it once.
      const keepCache = !node.passthroughUsed;
      node.passthroughUsed = false;
      if (!keepCache) node.pagesStored = false;
      // Only for the sole open handle: a read through another one may hold the very pages locked
      // while it waits for a READ this thread would never get to answer (the store would wait too).
      else if (!write && !node.pagesStored && size > 0 && node.handles.size <= 1) this.storePages(node, fd, size);
      // Served reads of a large file: a wider readahead on the backing file keeps the disk ahead of them.
      if (!write && size >= PASSTHROUGH_MIN_SIZE) native.fadvise(fd, 0, 0, native.POSIX_FADV_SEQUENTIAL);
      return { fh, keepCache };
    }
    if (node.backingRefs === 0) {
      try {
        node.backingId = this.channel!.openBacking(fd);
      } catch (err) {
        this.host.log?.warn({ err: String(err) }, 'passthrough unavailable; serving reads and writes in the daemon');
        this.passthrough = false;
        return { fh, keepCache: false };
      }
    }
    node.backingRefs++;
    node.passthroughUsed = true;
    this.handles.get(fh)!.backing = true;
    return { fh, backingId: node.backingId };
  }

  /**
   * Hands a small file's data to the kernel's page cache as it is opened for
   * reading: the reads that follow then cost no READ request, and no GETATTR
   * either (a READ reply invalidates the cached atime; stored pages do not).
   */
  private storePages(node: Node, fd: number, size: number): void {
    if (size > PASSTHROUGH_MIN_SIZE) return;
    const buf = (storeBuf ??= Buffer.allocUnsafe(PASSTHROUGH_MIN_SIZE));
    const n = fs.readSync(fd, buf, 0, size, 0);
    if (n === size) node.pagesStored = this.channel!.storeData(node.id, 0, buf.subarray(0, n));
  }

  openNode(ctx: RequestContext, node: Node, flags: number, killSuidGid: boolean): OpenOut {
    const acc = flags & O_ACCMODE;
    const write = acc !== O_RDONLY || (flags & O_TRUNC) !== 0;
    if (write) {
      this.host.writable();
      if (!node.upper) {
        // The kernel reopens the backing path itself: a backing on the lower file
        // cannot serve a writer, so a copy-up while it is open has to wait.
        if (node.backingRefs > 0) fail(E.EBUSY, 'file open read-only from a lower layer');
        this.host.copy.copyUp(node, (flags & O_TRUNC) === 0);
      }
    }
    const path = this.host.realPath(node);
    // O_RDWR for any writer, never O_APPEND: with the writeback cache the kernel reads partial
    // pages through a writer's handle and sends appends at offsets of its own.
    const fd = fs.openSync(path, (write ? O_RDWR : O_RDONLY) | (flags & O_TRUNC));
    const fh = this.addHandle(fd, node, write);
    // An O_TRUNC open truncates like SETATTR does; and a writer that must share an
    // existing passthrough backing cannot have set-id bits cleared on write later.
    if (killSuidGid || (write && node.backingRefs > 0 && ctx.uid !== 0)) this.dropSetIds(ctx, node, fh);
    const st = this.st;
    native.fstatInto(fd, st);
    if ((st[ST.MODE] & S_IFMT) !== S_IFREG) return this.recordOpen(fh, { fh });
    return this.recordOpen(fh, this.withBacking(node, fh, fd, st[ST.SIZE], st[ST.MODE], write));
  }

  /**
   * Clears the set-id bits a write or truncate by a caller without CAP_FSETID
   * clears, as the VFS does: set-user-ID, and set-group-ID when group execute is
   * set or the caller is not in the file's group. The kernel's cached mode is
   * then stale, so its attributes are invalidated.
   */
  dropSetIds(ctx: RequestContext, node: Node, fh?: number): void {
    const st = this.host.stat(node, fh);
    const mode = st[ST.MODE];
    if (!hasSetIds(mode)) return;
    let kill = mode & S_ISUID;
    if (mode & S_ISGID && (mode & S_IXGRP || !callerInGroup(ctx, this.host.gids.toShown(st[ST.GID])))) kill |= S_ISGID;
    if (kill === 0) return;
    if (fh !== undefined) fs.fchmodSync(this.handle(fh).fd, mode & 0o7777 & ~kill);
    else fs.chmodSync(this.host.upperPath(node), mode & 0o7777 & ~kill);
    this.channel?.invalidateAttrs(node.id);
  }

  open(ctx: RequestContext, nodeid: number, flags: number, killSuidGid: boolean): OpenOut {
    const node = this.host.nodes.get(nodeid);
    if (node.isDir) fail(E.EISDIR);
    return this.openNode(ctx, node, flags, killSuidGid);
  }

  private handle(fh: number): Handle {
    const h = this.handles.get(fh);
    if (h === undefined) fail(E.EBADF);
    return h;
  }

  read(fh: number, offset: number, size: number, out: Buffer, outOffset: number): number {
    return fs.readSync(this.handle(fh).fd, out, outOffset, size, offset);
  }

  readSource(fh: number): number | undefined {
    return this.handles.get(fh)?.fd;
  }

  /** The fd of a read-only handle on a file no handle writes to, served here (not passthrough). */
  pushSource(fh: number): number | undefined {
    const h = this.handles.get(fh);
    if (h === undefined || h.write || h.backing) return undefined;
    for (const other of h.node.handles) if (this.handles.get(other)?.write !== false) return undefined;
    return h.fd;
  }

  write(ctx: RequestContext, fh: number, offset: number, data: Buffer, writeFlags: number): number {
    const h = this.handle(fh);
    if (writeFlags & WRITE_KILL_SUIDGID) this.dropSetIds(ctx, h.node, fh);
    const n = fs.writeSync(h.fd, data, 0, data.length, offset);
    if (!this.host.noFsync) this.startWriteback(h, offset, n);
    return n;
  }

  /**
   * A long sequential write has the upper filesystem start writing it to disk as it comes, a
   * step behind, so an fsync at its end (or the kernel's writeback later) finds most of it on
   * disk already; short files and random writes are left to the kernel's writeback as before.
   */
  private startWriteback(h: Handle, offset: number, n: number): void {
    if (offset !== h.streamEnd) {
      h.streamKicked = offset;
      h.streamEnd = offset + n;
      return;
    }
    h.streamEnd += n;
    const from = h.streamKicked ?? offset;
    if (h.streamEnd - from < WRITEBACK_STEP) return;
    native.syncFileRange(h.fd, from, h.streamEnd - from, native.SYNC_FILE_RANGE_WRITE);
    h.streamKicked = h.streamEnd;
  }

  release(fh: number): void {
    const h = this.handles.get(fh);
    if (h === undefined) return;
    this.handles.delete(fh);
    this.journal?.release(fh);
    fs.closeSync(h.fd);
    const node = h.node;
    node.removeHandle(fh);
    if (h.backing && --node.backingRefs === 0) {
      this.channel?.closeBacking(node.backingId);
      node.backingId = 0;
    }
    if (node.handles.size === 0) this.held.release(node.id);
    if (node.nlookup <= 0 && node.handles.size === 0) this.host.dropIfUnused(node);
  }

  fsync(fh: number, datasync: boolean): void {
    if (this.host.noFsync) return;
    const fd = this.handle(fh).fd;
    if (datasync) fs.fdatasyncSync(fd);
    else fs.fsyncSync(fd);
  }

  fallocate(ctx: RequestContext, fh: number, mode: number, offset: number, length: number): void {
    const h = this.handle(fh);
    if (ctx.uid !== 0) this.dropSetIds(ctx, h.node, fh); // no kill flag comes with FALLOCATE
    native.fallocate(h.fd, mode, offset, length);
  }

  lseek(fh: number, offset: number, whence: number): number {
    const r = native.lseek(this.handle(fh).fd, offset, whence);
    if (r < 0) fail(E.ENXIO);
    return r;
  }

  copyFileRange(ctx: RequestContext, fhIn: number, offIn: number, fhOut: number, offOut: number, len: number): number {
    const out = this.handle(fhOut);
    if (ctx.uid !== 0) this.dropSetIds(ctx, out.node, fhOut); // no kill flag comes with COPY_FILE_RANGE
    return native.copyFileRange(this.handle(fhIn).fd, offIn, out.fd, offOut, len);
  }
}
