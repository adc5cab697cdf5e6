// One FUSE connection: a request read from /dev/fuse (non-blocking, when the engine
// thread's epoll says the fd is readable), decoded in place, handed to the filesystem,
// and answered with one write. Engine threads (engine-thread.ts) serve many sessions.
// Longer than our ~500-line rule on purpose: it is one dispatcher for the protocol's opcodes (each
// case decodes its request and encodes its reply next to the call it makes); split by opcode group,
// the cases would share the buffers and reply helpers through a wide interface for no gain.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as native from '../../native-shims';
import {
  ATTR_OUT_SIZE,
  ATTR_SIZE,
  CACHE_TIMEOUT_SEC,
  DIRENT_HEADER_SIZE,
  ENTRY_OUT_SIZE,
  FSYNC_FDATASYNC,
  Fattr,
  Fopen,
  GETATTR_FH,
  IN_HEADER_SIZE,
  INIT_OUT_SIZE,
  Init,
  Init2,
  KERNEL_MINOR_VERSION,
  KERNEL_VERSION,
  MAX_PAGES,
  MAX_WRITE,
  NOTIFY_INVAL_INODE_OUT_SIZE,
  NOTIFY_STORE_OUT_SIZE,
  OPEN_KILL_SUIDGID,
  Notify,
  OPEN_OUT_SIZE,
  OUT_HEADER_SIZE,
  Op,
  READ_BUFFER_SIZE,
  SETXATTR_IN_SIZE_COMPAT,
  STATFS_OUT_SIZE,
  direntAlign,
  decodeSetAttrIn,
  encodeAttr,
  readCString,
  readU64,
  writeU64,
} from './protocol';
import { NOT_SENT, SplicePipe } from './splice-pipe';
import { offloadedRead, startReadOffload, waitOffloadedReads } from './read-offload';
import { pushOnRead, replyAfterPush, startReadPush, stopPush } from './read-push';
import { Journal, type JournalState } from './journal';
import { PlusAdvisor } from './plus-advisor';
import { RESEND_BIT_HI, alreadyDone, isMutating } from './replay';
import { FuseError, errnoOf, type EntryOut, type FuseChannel, type DirEntry, type FuseFilesystem, type OpenOut, type RequestContext, type StatArray } from './filesystem';

const E = os.constants.errno;
const { DT_DIR } = native;


export interface SessionOptions {
  /** Ask for passthrough when the kernel offers it (needs CAP_SYS_ADMIN). */
  passthrough: boolean;
  /** Let the kernel cache writes when data is served here, not passed through (default true). */
  writebackCache?: boolean;
  /** Negotiate POSIX ACLs (the kernel then checks and caches them; default true). */
  posixAcl?: boolean;
  /** Called once INIT has been answered: the mount is live. */
  onReady?: (info: { passthrough: boolean; minor: number }) => void;
  log?: (level: 'debug' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** Records what a takeover needs (INIT settings, intents of mutating requests; the filesystem adds its nodes). */
  journal?: Journal;
}

/** Whether open(2) flags let the caller change the file's data (a write access mode or O_TRUNC). */
function opensForWriting(flags: number): boolean {
  return (flags & 3) !== fs.constants.O_RDONLY || (flags & fs.constants.O_TRUNC) !== 0;
}

/** Request and reply buffers: one pair per thread, shared by the sessions it serves one request at a time. */
export interface SessionBuffers {
  inBuf: Buffer;
  outBuf: Buffer;
}

export function newSessionBuffers(): SessionBuffers {
  return { inBuf: Buffer.allocUnsafe(READ_BUFFER_SIZE), outBuf: Buffer.allocUnsafe(MAX_WRITE + 4096) };
}

/** What one non-blocking read brought: a request served, nothing pending, or the end of the connection. */
export type ServeResult = 'served' | 'idle' | 'ended';

export class FuseSession implements FuseChannel {
  private readonly inBuf: Buffer;
  private readonly outBuf: Buffer;
  /** Notifications are written from inside request handlers, so they get their own buffer. */
  private notifyBuf = Buffer.allocUnsafe(0); // grown on first use: most mounts never notify much
  private readonly ctx: RequestContext = { uid: 0, gid: 0, pid: 0 };
  private uniqueLo = 0;
  private uniqueHi = 0;
  private minor = 0;
  passthrough = false;
  posixAcl = false;
  /** The kernel caches writes (FUSE_WRITEBACK_CACHE): negotiated when data is served here. */
  writebackCache = false;
  private stopped = false;
  readonly journal: Journal | null;
  resumed = false;
  /** After a takeover: the request in flight at the crash (its unique, lo/hi words), until it is seen again. */
  private inFlight: { lo: number; hi: number } | null = null;
  /** The request being served is that one, resent: errors that mean "already done" are answered as done. */
  private replaying = false;
  /** Requests served, by opcode (logged at debug level when the session ends). */
  private readonly counts = new Float64Array(64);
  /** READs answered by the read-offload thread. */
  private offloaded = 0;
  /** Files pushed into the page cache ahead of their reader (read-push.ts). */
  private pushed = 0;
  /** READ replies go through this pipe by splice (null: not available, data is copied). */
  private pipe: SplicePipe | null = null;
  private readonly spliceSt = native.newStatArray();
  private readonly plusAdvisor = new PlusAdvisor((filesBare) => this.log('debug', 'READDIRPLUS attributes for files', { filesBare }));
  /** READDIRPLUS listings in progress: whether their files go without attributes. */
  private readonly bareListings = new Map<number, boolean>();
  /** The request being served lets a writer at this node in: its reply waits for pushed reads of it to stop (read-push.ts). */
  private writerFor = 0;

  constructor(
    private readonly fd: number,
    private readonly fs: FuseFilesystem,
    private readonly opts: SessionOptions,
    buffers: SessionBuffers = newSessionBuffers(),
  ) {
    this.inBuf = buffers.inBuf;
    this.outBuf = buffers.outBuf;
    this.journal = opts.journal ?? null;
    this.openPipe();
  }

  /**
   * Takes over a connection another process served (the kernel does not repeat INIT): the
   * settings INIT had, the filesystem's nodes and handles from the journal, then the kernel is
   * asked to send again the requests the dead server had read but not answered. False when the
   * journal holds no INIT (it never completed): then INIT is still to come, and is served as usual.
   */
  resume(state: JournalState): boolean {
    if (state.init !== null) {
      if (this.fs.restore === undefined) throw new Error('this filesystem cannot be taken over');
      this.minor = state.init.minor;
      this.passthrough = state.init.passthrough;
      this.posixAcl = state.init.posixAcl;
      this.writebackCache = state.init.writebackCache;
      if (!this.passthrough) this.startServedReads();
      this.inFlight = state.intent && { lo: state.intent.lo, hi: state.intent.hi };
      this.resumed = true;
      this.journal?.init(state.init);
      this.fs.init(this);
      this.fs.restore(state);
    }
    this.notifyBody(0);
    const n = this.notify(Notify.RESEND, OUT_HEADER_SIZE);
    if (n < 0) this.log('warn', 'resend of requests in flight refused', { errno: -n });
    return state.init !== null;
  }

  /** READs are served here: the threads that help answer them. */
  private startServedReads(): void {
    startReadOffload();
    startReadPush();
  }

  private openPipe(): void {
    try {
      this.pipe = SplicePipe.open();
    } catch (err) {
      this.log('warn', 'no splice pipe; READ data is copied', { err: String(err) });
    }
  }

  private closePipe(): void {
    this.pipe?.close();
    this.pipe = null;
  }

  get deviceFd(): number {
    return this.fd;
  }

  openBacking(fd: number): number {
    return native.fuseBackingOpen(this.fd, fd);
  }

  closeBacking(id: number): void {
    try {
      native.fuseBackingClose(this.fd, id);
    } catch (err) {
      this.log('warn', 'backing close failed', { id, err: String(err) });
    }
  }

  private log(level: 'debug' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void {
    this.opts.log?.(level, msg, fields);
  }

  /**
   * Reads and serves one request; the fd is non-blocking. 'ended' once the filesystem is
   * unmounted (read fails with ENODEV); then call end().
   */
  serveOne(): ServeResult {
    if (this.stopped) return 'ended';
    const n = native.readInto(this.fd, this.inBuf);
    if (n < 0) {
      const errno = -n;
      // ENOENT: the request was interrupted before we read it.
      if (errno === E.EAGAIN || errno === E.ENOENT || errno === E.EINTR) return 'idle';
      if (errno === E.ENODEV) return 'ended';
      throw new FuseError(errno, `read from /dev/fuse failed: errno ${errno}`);
    }
    if (n < IN_HEADER_SIZE) {
      this.log('error', 'short read from /dev/fuse', { bytes: n });
      return 'served';
    }
    this.dispatch(n);
    return this.stopped ? 'ended' : 'served';
  }

  /** The connection is over: logs the request counts and lets the filesystem release what it holds. */
  end(): void {
    this.stopped = true;
    stopPush(this.fd);
    waitOffloadedReads(); // they use this connection's and the filesystem's fds
    const byOp: Record<string, number> = {};
    this.counts.forEach((c, op) => {
      if (c > 0) byOp[op] = c;
    });
    this.log('debug', 'requests served by opcode', { requests: byOp, offloadedReads: this.offloaded, pushedFiles: this.pushed });
    this.closePipe();
    try {
      this.fs.destroy();
    } catch (err) {
      this.log('error', 'destroy failed', { err: String(err) });
    }
  }

  private dispatch(len: number): void {
    const b = this.inBuf;
    const declared = b.readUInt32LE(0);
    const opcode = b.readUInt32LE(4);
    this.counts[opcode & 63]++;
    this.uniqueLo = b.readUInt32LE(8);
    this.uniqueHi = b.readUInt32LE(12);
    const nodeid = readU64(b, 16);
    this.ctx.uid = b.readUInt32LE(24);
    this.ctx.gid = b.readUInt32LE(28);
    this.ctx.pid = b.readUInt32LE(32);
    const extlen = b.readUInt16LE(36) * 8;
    // Extensions (security context, supplementary groups) trail the request; we ask for none.
    const end = Math.min(len, declared) - extlen;
    this.replaying = false;
    this.writerFor = 0;
    if (this.uniqueHi & RESEND_BIT_HI && this.inFlight !== null) {
      this.replaying = this.inFlight.lo === this.uniqueLo && this.inFlight.hi === (this.uniqueHi & ~RESEND_BIT_HI) >>> 0;
      if (this.replaying) this.inFlight = null;
    }
    // Written before the request runs: a takeover then knows which request may be half done.
    if (this.journal !== null && isMutating(opcode)) this.journal.intent(this.uniqueLo, (this.uniqueHi & ~RESEND_BIT_HI) >>> 0, opcode);
    try {
      this.handle(opcode, nodeid, end);
    } catch (err) {
      this.replyFailure(err, opcode, nodeid, end);
    }
    if (this.fs.afterReply !== undefined) this.afterReply();
    // What requests without a reply (FORGET) and the work after a reply recorded: not left staged while idle.
    this.flushJournal();
  }

  /**
   * Writes the journal records staged while serving this request (journal.ts). Called before
   * anything leaves this session for /dev/fuse, by any path (send(), notify(), a READ answered by
   * splice or by the offload thread, a reply the push thread sends later): a reply may hand the
   * kernel a nodeid or handle the records describe, and a process taking over must know it. False
   * (logged) when the journal refused them.
   */
  private flushJournal(): boolean {
    if (this.journal === null) return true;
    try {
      this.journal.flush();
      return true;
    } catch (err) {
      this.log('error', 'journal write failed', { err: String(err) });
      return false;
    }
  }

  private replyFailure(err: unknown, opcode: number, nodeid: number, end: number): void {
    const errno = errnoOf(err);
    if (this.replaying && errno !== 0 && this.answerDone(opcode, nodeid, end, errno)) return;
    if (errno === 0) {
      this.log('error', 'request failed', { opcode, nodeid, err: err instanceof Error ? err.stack : String(err) });
      this.replyError(E.EIO);
    } else {
      if (errno === E.EIO) this.log('warn', 'request failed with EIO', { opcode, nodeid, err: String(err) });
      this.replyError(errno);
    }
  }

  private afterReply(): void {
    try {
      this.fs.afterReply!();
    } catch (err) {
      this.log('warn', 'work after a reply failed', { err: String(err) });
    }
  }

  /**
   * A resent request that was in flight at the crash failed in a way its own first run explains
   * (replay.ts): answered as done. False when the error stands.
   */
  private answerDone(opcode: number, nodeid: number, end: number, errno: number): boolean {
    const how = alreadyDone(opcode, errno);
    if (how === null) return false;
    const p = IN_HEADER_SIZE;
    const b = this.inBuf;
    try {
      if (how === 'empty') {
        this.replyEmpty();
      } else if (how === 'renamed') {
        const newdir = readU64(b, p);
        const [, next] = this.cstring(opcode === Op.RENAME2 ? p + 16 : p + 8, end);
        const [newName] = this.cstring(next, end);
        const e = this.fs.lookup(this.ctx, newdir, newName);
        if (e.nodeid === 0) return false;
        this.fs.forget(e.nodeid, 1);
        this.replyEmpty();
      } else {
        const nameAt = opcode === Op.MKDIR || opcode === Op.LINK ? p + 8 : opcode === Op.SYMLINK ? p : p + 16;
        const [name] = this.cstring(nameAt, end);
        const e = this.fs.lookup(this.ctx, nodeid, name);
        if (e.nodeid === 0) return false;
        if (how === 'entry') this.replyEntry(e);
        else {
          const flags = b.readUInt32LE(p) & ~(fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_TRUNC);
          this.replyCreate(e, this.fs.open(this.ctx, e.nodeid, flags, false));
        }
      }
    } catch {
      return false;
    }
    this.log('debug', 'resent request found done', { opcode, errno });
    return true;
  }

  // --- decoding helpers -------------------------------------------------------

  private cstring(off: number, end: number): [string, number] {
    return readCString(this.inBuf, off, end);
  }

  private need(end: number, bytes: number): void {
    if (end < IN_HEADER_SIZE + bytes) throw new FuseError(E.EINVAL, 'request too short');
  }

  // --- the opcode switch ----------------------------------------------------------

  private handle(opcode: number, nodeid: number, end: number): void {
    const b = this.inBuf;
    const ctx = this.ctx;
    const fsys = this.fs;
    const p = IN_HEADER_SIZE;
    switch (opcode) {
      case Op.INIT:
        return this.init(end);
      case Op.LOOKUP: {
        const [name] = this.cstring(p, end);
        this.plusAdvisor.lookedUp(nodeid);
        return this.replyEntry(fsys.lookup(ctx, nodeid, name));
      }
      case Op.FORGET:
        this.need(end, 8);
        fsys.forget(nodeid, readU64(b, p));
        return; // no reply
      case Op.BATCH_FORGET: {
        this.need(end, 8);
        const count = b.readUInt32LE(p);
        for (let i = 0, o = p + 8; i < count && o + 16 <= end; i++, o += 16) {
          fsys.forget(readU64(b, o), readU64(b, o + 8));
        }
        return;
      }
      case Op.GETATTR: {
        this.need(end, 16);
        const flags = b.readUInt32LE(p);
        const fh = flags & GETATTR_FH ? readU64(b, p + 8) : undefined;
        const a = fsys.getattr(ctx, nodeid, fh);
        return this.replyAttr(a.ino, a.st);
      }
      case Op.SETATTR: {
        this.need(end, 88);
        const attrs = decodeSetAttrIn(b, p);
        if (attrs.valid & Fattr.SIZE) this.writerFor = nodeid;
        const a = fsys.setattr(ctx, nodeid, attrs);
        return this.replyAttr(a.ino, a.st);
      }
      case Op.READLINK: {
        const target = fsys.readlink(ctx, nodeid);
        return this.replyBuffer(target);
      }
      case Op.SYMLINK: {
        const [name, next] = this.cstring(p, end);
        const [target] = this.cstring(next, end);
        return this.replyEntry(fsys.symlink(ctx, nodeid, name, target));
      }
      case Op.MKNOD: {
        this.need(end, 16);
        const mode = b.readUInt32LE(p);
        const rdev = b.readUInt32LE(p + 4);
        const umask = b.readUInt32LE(p + 8);
        const [name] = this.cstring(p + 16, end);
        return this.replyEntry(fsys.mknod(ctx, nodeid, name, mode, rdev, umask));
      }
      case Op.MKDIR: {
        this.need(end, 8);
        const mode = b.readUInt32LE(p);
        const umask = b.readUInt32LE(p + 4);
        const [name] = this.cstring(p + 8, end);
        return this.replyEntry(fsys.mkdir(ctx, nodeid, name, mode, umask));
      }
      case Op.UNLINK: {
        const [name] = this.cstring(p, end);
        fsys.unlink(ctx, nodeid, name);
        return this.replyEmpty();
      }
      case Op.RMDIR: {
        const [name] = this.cstring(p, end);
        fsys.rmdir(ctx, nodeid, name);
        return this.replyEmpty();
      }
      case Op.RENAME: {
        this.need(end, 8);
        const newdir = readU64(b, p);
        const [name, next] = this.cstring(p + 8, end);
        const [newName] = this.cstring(next, end);
        fsys.rename(ctx, nodeid, name, newdir, newName, 0);
        return this.replyEmpty();
      }
      case Op.RENAME2: {
        this.need(end, 16);
        const newdir = readU64(b, p);
        const flags = b.readUInt32LE(p + 8);
        const [name, next] = this.cstring(p + 16, end);
        const [newName] = this.cstring(next, end);
        fsys.rename(ctx, nodeid, name, newdir, newName, flags);
        return this.replyEmpty();
      }
      case Op.LINK: {
        this.need(end, 8);
        const oldNode = readU64(b, p);
        const [newName] = this.cstring(p + 8, end);
        return this.replyEntry(fsys.link(ctx, oldNode, nodeid, newName));
      }
      case Op.OPEN: {
        this.need(end, 8);
        const kill = (b.readUInt32LE(p + 4) & OPEN_KILL_SUIDGID) !== 0;
        const flags = b.readUInt32LE(p);
        if (opensForWriting(flags)) this.writerFor = nodeid;
        return this.replyOpen(fsys.open(ctx, nodeid, flags, kill));
      }
      case Op.CREATE:
      case Op.TMPFILE: {
        this.need(end, 16);
        const flags = b.readUInt32LE(p);
        const mode = b.readUInt32LE(p + 4);
        const umask = b.readUInt32LE(p + 8);
        let res: [EntryOut, OpenOut];
        if (opcode === Op.CREATE) {
          const [name] = this.cstring(p + 16, end);
          res = fsys.create(ctx, nodeid, name, mode, flags, umask, (b.readUInt32LE(p + 12) & OPEN_KILL_SUIDGID) !== 0);
        } else {
          res = fsys.tmpfile(ctx, nodeid, mode, flags, umask);
        }
        if (opensForWriting(flags)) this.writerFor = res[0].nodeid;
        return this.replyCreate(res[0], res[1]);
      }
      case Op.READ: {
        this.need(end, 24);
        const fh = readU64(b, p);
        const offset = readU64(b, p + 8);
        const size = Math.min(b.readUInt32LE(p + 16), MAX_WRITE);
        // Its reply may leave by another thread or the splice pipe, past send().
        if (!this.flushJournal()) throw new FuseError(E.EIO, 'journal write failed');
        if (pushOnRead(this.fd, fsys, nodeid, fh, offset, size)) this.pushed++;
        // Readahead windows go to the offload thread, so the next request is read meanwhile.
        if (offloadedRead(this.fd, this.fs, fh, offset, size, this.uniqueLo, this.uniqueHi)) {
          this.offloaded++;
          return;
        }
        if (this.spliceRead(fh, offset, size)) return;
        const n = fsys.read(ctx, nodeid, fh, offset, size, this.outBuf, OUT_HEADER_SIZE);
        return this.send(OUT_HEADER_SIZE + n, 0);
      }
      case Op.WRITE: {
        this.need(end, 40);
        const fh = readU64(b, p);
        const offset = readU64(b, p + 8);
        const size = b.readUInt32LE(p + 16);
        const writeFlags = b.readUInt32LE(p + 20);
        const dataStart = p + 40;
        if (dataStart + size > end) throw new FuseError(E.EINVAL, 'write payload truncated');
        const n = fsys.write(ctx, nodeid, fh, offset, b.subarray(dataStart, dataStart + size), writeFlags);
        this.outBuf.writeUInt32LE(n, OUT_HEADER_SIZE);
        this.outBuf.writeUInt32LE(0, OUT_HEADER_SIZE + 4);
        return this.send(OUT_HEADER_SIZE + 8, 0);
      }
      case Op.RELEASE: {
        this.need(end, 8);
        fsys.release(ctx, nodeid, readU64(b, p));
        return this.replyEmpty();
      }
      case Op.RELEASEDIR:
        return this.replyEmpty();
      case Op.FSYNC: {
        this.need(end, 12);
        fsys.fsync(ctx, nodeid, readU64(b, p), (b.readUInt32LE(p + 8) & FSYNC_FDATASYNC) !== 0);
        return this.replyEmpty();
      }
      case Op.FSYNCDIR: {
        this.need(end, 12);
        fsys.fsyncdir(ctx, nodeid, (b.readUInt32LE(p + 8) & FSYNC_FDATASYNC) !== 0);
        return this.replyEmpty();
      }
      case Op.FALLOCATE: {
        this.need(end, 28);
        fsys.fallocate(ctx, nodeid, readU64(b, p), b.readUInt32LE(p + 24), readU64(b, p + 8), readU64(b, p + 16));
        return this.replyEmpty();
      }
      case Op.LSEEK: {
        // With the writeback cache, data the kernel has not written back yet is invisible here
        // (the kernel does not flush before LSEEK): SEEK_DATA would skip it and SEEK_HOLE stop
        // before it. ENOSYS makes the kernel answer itself, the whole file being data (as
        // for fuse-overlayfs, which has no LSEEK).
        if (this.writebackCache) return this.replyError(E.ENOSYS);
        this.need(end, 20);
        const off = fsys.lseek(ctx, nodeid, readU64(b, p), readU64(b, p + 8), b.readUInt32LE(p + 16));
        writeU64(this.outBuf, OUT_HEADER_SIZE, off);
        return this.send(OUT_HEADER_SIZE + 8, 0);
      }
      case Op.COPY_FILE_RANGE: {
        this.need(end, 48);
        const n = fsys.copyFileRange(
          ctx,
          nodeid,
          readU64(b, p),
          readU64(b, p + 8),
          readU64(b, p + 16),
          readU64(b, p + 24),
          readU64(b, p + 32),
          Math.min(readU64(b, p + 40), 0xffffffff),
        );
        this.outBuf.writeUInt32LE(n, OUT_HEADER_SIZE);
        this.outBuf.writeUInt32LE(0, OUT_HEADER_SIZE + 4);
        return this.send(OUT_HEADER_SIZE + 8, 0);
      }
      case Op.READDIR:
      case Op.READDIRPLUS: {
        this.need(end, 20);
        const offset = readU64(b, p + 8);
        const size = Math.min(b.readUInt32LE(p + 16), this.outBuf.length - OUT_HEADER_SIZE);
        return this.replyDir(nodeid, offset, size, opcode === Op.READDIRPLUS);
      }
      case Op.STATFS: {
        const s = fsys.statfs(ctx, nodeid);
        const o = this.outBuf;
        const q = OUT_HEADER_SIZE;
        o.fill(0, q, q + STATFS_OUT_SIZE);
        writeU64(o, q, s.blocks);
        writeU64(o, q + 8, s.bfree);
        writeU64(o, q + 16, s.bavail);
        writeU64(o, q + 24, s.files);
        writeU64(o, q + 32, s.ffree);
        o.writeUInt32LE(s.bsize, q + 40);
        o.writeUInt32LE(s.namelen, q + 44);
        o.writeUInt32LE(s.frsize, q + 48);
        return this.send(q + STATFS_OUT_SIZE, 0);
      }
      case Op.ACCESS: {
        this.need(end, 4);
        fsys.access(ctx, nodeid, b.readUInt32LE(p));
        return this.replyEmpty();
      }
      case Op.GETXATTR: {
        this.need(end, 8);
        const size = b.readUInt32LE(p);
        const [name] = this.cstring(p + 8, end);
        const value = fsys.getxattr(ctx, nodeid, name);
        if (value === null) return this.replyError(E.ENODATA);
        return this.replyXattr(value, size);
      }
      case Op.LISTXATTR: {
        this.need(end, 8);
        const size = b.readUInt32LE(p);
        const names = fsys.listxattr(ctx, nodeid);
        return this.replyXattr(Buffer.from(names.map((n) => n + '\0').join(''), 'utf8'), size);
      }
      case Op.SETXATTR: {
        this.need(end, SETXATTR_IN_SIZE_COMPAT);
        const size = b.readUInt32LE(p);
        const flags = b.readUInt32LE(p + 4);
        const [name, next] = this.cstring(p + SETXATTR_IN_SIZE_COMPAT, end);
        if (next + size > end) throw new FuseError(E.EINVAL, 'xattr value truncated');
        fsys.setxattr(ctx, nodeid, name, Buffer.from(b.subarray(next, next + size)), flags);
        return this.replyEmpty();
      }
      case Op.REMOVEXATTR: {
        const [name] = this.cstring(p, end);
        fsys.removexattr(ctx, nodeid, name);
        return this.replyEmpty();
      }
      case Op.INTERRUPT:
        // Requests are answered synchronously, so there is never one to interrupt.
        return;
      case Op.DESTROY:
        this.stopped = true;
        return this.replyEmpty();
      case Op.OPENDIR: // ENOSYS lets the kernel open directories itself and cache listings
      case Op.FLUSH: // ENOSYS saves a round trip on every close
      default:
        return this.replyError(E.ENOSYS);
    }
  }

  // --- READ by splice ----------------------------------------------------------------

  /**
   * Answers a READ by splicing the data from the file to the kernel through a pipe: the page
   * cache pages of the file are handed over, never copied through this process. False (nothing
   * sent) when the data has to take the copying path: no source fd, a request larger than the
   * pipe, or the file changed size under us.
   */
  private spliceRead(fh: number, offset: number, size: number): boolean {
    if (this.pipe === null || !this.pipe.fits(size)) return false;
    const fd = this.fs.readSource?.(fh);
    if (fd === undefined) return false;
    const st = this.spliceSt;
    if (native.fstatInto(fd, st) !== 0) return false;
    const n = Math.max(0, Math.min(size, st[native.ST.SIZE] - offset));
    if (n === 0) return false;
    const o = this.outBuf;
    o.writeUInt32LE(OUT_HEADER_SIZE + n, 0);
    o.writeInt32LE(0, 4);
    o.writeUInt32LE(this.uniqueLo, 8);
    o.writeUInt32LE(this.uniqueHi, 12);
    const r = this.pipe.reply(this.fd, fd, offset, n, o);
    if (r > 0) this.log('warn', 'spliced reply failed', { errno: r, len: OUT_HEADER_SIZE + n });
    return r !== NOT_SENT;
  }

  // --- INIT ------------------------------------------------------------------------

  private init(end: number): void {
    this.need(end, 16);
    const b = this.inBuf;
    const p = IN_HEADER_SIZE;
    const major = b.readUInt32LE(p);
    const kminor = b.readUInt32LE(p + 4);
    const maxReadahead = b.readUInt32LE(p + 8);
    const kflags = b.readUInt32LE(p + 12);
    const kflags2 = kflags & Init.INIT_EXT && end >= p + 20 ? b.readUInt32LE(p + 16) : 0;
    if (major !== KERNEL_VERSION) {
      this.log('error', 'unsupported FUSE major version', { major });
      throw new FuseError(E.EPROTO, `FUSE major ${major}`);
    }
    this.minor = Math.min(kminor, KERNEL_MINOR_VERSION);
    const want =
      Init.ASYNC_READ |
      Init.ATOMIC_O_TRUNC |
      Init.BIG_WRITES |
      Init.DONT_MASK |
      // READDIRPLUS for every listing, not READDIRPLUS_AUTO: with AUTO the kernel asks for
      // attributes only at offset 0 or once a lookup in that directory advised it, so tools that
      // read a whole directory before stat-ing its entries (find -printf, du, tar) pay a LOOKUP
      // round trip per entry past the first reply (measured: 4,618 requests against 2,699 for a
      // stat of every entry of the quick tree). Whether files get attributes is ours to choose
      // per reply (plus-advisor.ts): a walk that never stats them is a third faster without.
      Init.DO_READDIRPLUS |
      Init.PARALLEL_DIROPS |
      Init.POSIX_ACL |
      Init.MAX_PAGES |
      Init.CACHE_SYMLINKS |
      Init.NO_OPENDIR_SUPPORT |
      // We clear set-id bits on write/truncate/chown ourselves, so the kernel need
      // not ask for security.capability before every write (SB_NOSEC).
      Init.HANDLE_KILLPRIV_V2 |
      Init.INIT_EXT;
    let flags = kflags & want & (this.opts.posixAcl === false ? ~Init.POSIX_ACL : ~0);
    let flags2 = 0;
    if (this.opts.passthrough && kflags2 & Init2.PASSTHROUGH) flags2 |= Init2.PASSTHROUGH;
    this.passthrough = (flags2 & Init2.PASSTHROUGH) !== 0;
    // Served data: the kernel keeps writes in its page cache and sends them back in 1 MiB WRITEs
    // while the writer goes on (a writer no longer waits a round trip per write(2); the copies
    // overlap on two CPUs). The kernel then owns size and mtime of regular files (it sends mtime
    // back as SETATTR), appends at its own size, and may READ through a write-only open to fill
    // a partial page: handles for writing are opened O_RDWR and never O_APPEND (data-path.ts).
    // Passthrough and the writeback cache exclude each other (the kernel turns passthrough off).
    if (!this.passthrough && this.opts.writebackCache !== false) flags |= kflags & Init.WRITEBACK_CACHE;
    this.writebackCache = (flags & Init.WRITEBACK_CACHE) !== 0;
    if (!this.passthrough) this.startServedReads();
    this.posixAcl = (flags & Init.POSIX_ACL) !== 0;
    this.log('debug', 'INIT negotiated', { minor: this.minor, passthrough: this.passthrough, writebackCache: this.writebackCache, maxWrite: MAX_WRITE });

    const o = this.outBuf;
    const q = OUT_HEADER_SIZE;
    o.fill(0, q, q + INIT_OUT_SIZE);
    o.writeUInt32LE(KERNEL_VERSION, q);
    o.writeUInt32LE(this.minor, q + 4);
    o.writeUInt32LE(maxReadahead, q + 8);
    o.writeUInt32LE(flags >>> 0, q + 12);
    o.writeUInt16LE(64, q + 16); // max_background
    o.writeUInt16LE(48, q + 18); // congestion_threshold
    o.writeUInt32LE(MAX_WRITE, q + 20);
    o.writeUInt32LE(1, q + 24); // time_gran: nanoseconds
    o.writeUInt16LE(MAX_PAGES, q + 28);
    o.writeUInt32LE(flags2 >>> 0, q + 32);
    // Backing files sit on a plain filesystem: one level of stacking.
    o.writeUInt32LE(this.passthrough ? 1 : 0, q + 36);
    // Recorded before the reply: the kernel never repeats INIT for a process that takes over.
    this.journal?.init({ minor: this.minor, passthrough: this.passthrough, posixAcl: this.posixAcl, writebackCache: this.writebackCache });
    this.fs.init(this);
    this.send(q + INIT_OUT_SIZE, 0);
    this.opts.onReady?.({ passthrough: this.passthrough, minor: this.minor });
  }

  // --- replies ---------------------------------------------------------------------

  private send(len: number, error: number): void {
    // A reply that would hand out what the journal could not record fails instead.
    if (!this.flushJournal() && error === 0) {
      len = OUT_HEADER_SIZE;
      error = E.EIO;
    }
    const o = this.outBuf;
    o.writeUInt32LE(len, 0);
    o.writeInt32LE(-error, 4);
    o.writeUInt32LE(this.uniqueLo, 8);
    o.writeUInt32LE(this.uniqueHi, 12);
    if (this.writerFor !== 0 && replyAfterPush(this.fd, this.writerFor, o, len)) return;
    const n = native.writeFrom(this.fd, o, len);
    // ENOENT: the request was interrupted and is gone; nothing to do.
    if (n < 0 && n !== -E.ENOENT) this.log('warn', 'reply write failed', { errno: -n, len });
  }

  /** Makes the kernel fetch a node's attributes again (FUSE_NOTIFY_INVAL_INODE, attributes only). */
  invalidateAttrs(nodeid: number): void {
    const o = this.notifyBody(NOTIFY_INVAL_INODE_OUT_SIZE);
    writeU64(o, OUT_HEADER_SIZE, nodeid);
    o.writeBigInt64LE(-1n, OUT_HEADER_SIZE + 8); // offset < 0: no page-cache range
    writeU64(o, OUT_HEADER_SIZE + 16, 0);
    const n = this.notify(Notify.INVAL_INODE, OUT_HEADER_SIZE + NOTIFY_INVAL_INODE_OUT_SIZE);
    if (n < 0 && n !== -E.ENOENT) this.log('warn', 'inode invalidation refused', { errno: -n, nodeid });
  }

  /**
   * Puts a file's data into the kernel's page cache (FUSE_NOTIFY_STORE), so reads
   * of it cost no READ request. Returns false when the kernel refused it.
   */
  storeData(nodeid: number, offset: number, data: Buffer): boolean {
    const o = this.notifyBody(NOTIFY_STORE_OUT_SIZE + data.length);
    writeU64(o, OUT_HEADER_SIZE, nodeid);
    writeU64(o, OUT_HEADER_SIZE + 8, offset);
    o.writeUInt32LE(data.length, OUT_HEADER_SIZE + 16);
    o.writeUInt32LE(0, OUT_HEADER_SIZE + 20);
    data.copy(o, OUT_HEADER_SIZE + NOTIFY_STORE_OUT_SIZE);
    const len = OUT_HEADER_SIZE + NOTIFY_STORE_OUT_SIZE + data.length;
    const n = this.notify(Notify.STORE, len);
    if (n < 0) this.log('debug', 'store notification refused', { errno: -n, nodeid });
    return n === len;
  }

  /** The notification buffer, large enough for a header and `bodySize` bytes. */
  private notifyBody(bodySize: number): Buffer {
    const need = OUT_HEADER_SIZE + bodySize;
    if (this.notifyBuf.length < need) this.notifyBuf = Buffer.allocUnsafe(need);
    return this.notifyBuf;
  }

  /** Writes the notification in notifyBuf (header + `len - 16` body bytes); the write's result. */
  private notify(code: Notify, len: number): number {
    this.flushJournal();
    const o = this.notifyBuf;
    o.writeUInt32LE(len, 0);
    o.writeInt32LE(code, 4); // notifications carry their code where replies carry -errno
    writeU64(o, 8, 0); // unique 0
    return native.writeFrom(this.fd, o, len);
  }

  private replyError(errno: number): void {
    this.send(OUT_HEADER_SIZE, errno);
  }

  private replyEmpty(): void {
    this.send(OUT_HEADER_SIZE, 0);
  }

  private replyBuffer(data: Buffer): void {
    data.copy(this.outBuf, OUT_HEADER_SIZE);
    this.send(OUT_HEADER_SIZE + data.length, 0);
  }

  private replyXattr(value: Buffer, size: number): void {
    if (size === 0) {
      this.outBuf.writeUInt32LE(value.length, OUT_HEADER_SIZE);
      this.outBuf.writeUInt32LE(0, OUT_HEADER_SIZE + 4);
      return this.send(OUT_HEADER_SIZE + 8, 0);
    }
    if (value.length > size) return this.replyError(E.ERANGE);
    this.replyBuffer(value);
  }

  private writeAttr(off: number, ino: number, st: StatArray): void {
    encodeAttr(this.outBuf, off, ino, st);
  }

  private writeEntry(off: number, e: EntryOut): void {
    const o = this.outBuf;
    writeU64(o, off, e.nodeid);
    writeU64(o, off + 8, 0); // generation: node ids are never reused within a mount
    writeU64(o, off + 16, CACHE_TIMEOUT_SEC);
    writeU64(o, off + 24, e.nodeid === 0 ? 0 : CACHE_TIMEOUT_SEC);
    o.writeUInt32LE(0, off + 32);
    o.writeUInt32LE(0, off + 36);
    if (e.nodeid === 0) o.fill(0, off + 40, off + 40 + ATTR_SIZE);
    else this.writeAttr(off + 40, e.ino, e.st);
  }

  private replyEntry(e: EntryOut): void {
    this.writeEntry(OUT_HEADER_SIZE, e);
    this.send(OUT_HEADER_SIZE + ENTRY_OUT_SIZE, 0);
  }

  private replyAttr(ino: number, st: StatArray): void {
    const o = this.outBuf;
    writeU64(o, OUT_HEADER_SIZE, CACHE_TIMEOUT_SEC);
    o.writeUInt32LE(0, OUT_HEADER_SIZE + 8);
    o.writeUInt32LE(0, OUT_HEADER_SIZE + 12);
    this.writeAttr(OUT_HEADER_SIZE + 16, ino, st);
    this.send(OUT_HEADER_SIZE + ATTR_OUT_SIZE, 0);
  }

  private writeOpen(off: number, r: OpenOut): void {
    const o = this.outBuf;
    let flags = 0;
    if (r.backingId !== undefined) flags |= Fopen.PASSTHROUGH;
    else {
      if (r.directIo) flags |= Fopen.DIRECT_IO;
      if (r.keepCache) flags |= Fopen.KEEP_CACHE;
    }
    writeU64(o, off, r.fh);
    o.writeUInt32LE(flags, off + 8);
    o.writeInt32LE(r.backingId ?? 0, off + 12);
  }

  private replyOpen(r: OpenOut): void {
    this.writeOpen(OUT_HEADER_SIZE, r);
    this.send(OUT_HEADER_SIZE + OPEN_OUT_SIZE, 0);
  }

  private replyCreate(e: EntryOut, r: OpenOut): void {
    this.writeEntry(OUT_HEADER_SIZE, e);
    this.writeOpen(OUT_HEADER_SIZE + ENTRY_OUT_SIZE, r);
    this.send(OUT_HEADER_SIZE + ENTRY_OUT_SIZE + OPEN_OUT_SIZE, 0);
  }

  private replyDir(nodeid: number, offset: number, size: number, plus: boolean): void {
    const entries = this.fs.readdir(this.ctx, nodeid, offset);
    const filesBare = plus && this.filesBare(nodeid, offset, entries);
    const o = this.outBuf;
    const start = OUT_HEADER_SIZE;
    const limit = start + size;
    let pos = start;
    let i = offset;
    for (; i < entries.length; i++) {
      const d = entries[i];
      const nameLen = Buffer.byteLength(d.name);
      const recLen = direntAlign(DIRENT_HEADER_SIZE + nameLen) + (plus ? ENTRY_OUT_SIZE : 0);
      if (pos + recLen > limit) break;
      let ino = d.ino;
      if (plus) {
        let entry: EntryOut | undefined;
        if (d.name !== '.' && d.name !== '..' && !(filesBare && d.type !== DT_DIR)) {
          try {
            entry = this.fs.lookup(this.ctx, nodeid, d.name);
          } catch {
            entry = undefined; // vanished since the listing: send it without attributes
          }
        }
        if (entry && entry.nodeid !== 0) {
          this.writeEntry(pos, entry);
          ino = entry.ino;
        } else {
          o.fill(0, pos, pos + ENTRY_OUT_SIZE);
        }
        pos += ENTRY_OUT_SIZE;
      }
      writeU64(o, pos, ino);
      writeU64(o, pos + 8, i + 1);
      o.writeUInt32LE(nameLen, pos + 16);
      o.writeUInt32LE(d.type, pos + 20);
      o.write(d.name, pos + DIRENT_HEADER_SIZE, 'utf8');
      const padded = direntAlign(DIRENT_HEADER_SIZE + nameLen);
      o.fill(0, pos + DIRENT_HEADER_SIZE + nameLen, pos + padded);
      pos += padded;
    }
    if (plus && i >= entries.length) this.bareListings.delete(nodeid);
    this.send(pos, 0);
  }

  /**
   * Whether this READDIRPLUS reply leaves out the attributes of entries that are not
   * directories (plus-advisor.ts); a listing keeps the choice made at its offset 0.
   */
  private filesBare(nodeid: number, offset: number, entries: DirEntry[]): boolean {
    if (offset !== 0) return this.bareListings.get(nodeid) ?? this.plusAdvisor.filesBare;
    let files = 0;
    for (const d of entries) if (d.type !== DT_DIR) files++;
    const bare = this.plusAdvisor.startListing(nodeid, files);
    // Listings abandoned half-read never reach their end: keep the map small.
    if (this.bareListings.size >= 256) this.bareListings.clear();
    this.bareListings.set(nodeid, bare);
    return bare;
  }
}

export { Fattr };
