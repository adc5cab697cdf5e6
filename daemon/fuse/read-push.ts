// Sequential reads pushed ahead of the kernel. On a served mount the kernel reads ahead in 256 KiB
// READs with one or two in flight (its window is the FUSE bdi's 128 KiB, which only root can
// widen), so a cold sequential read costs a round trip per 256 KiB however fast the disk is.
// Once a large file is being read sequentially, a thread of its own reads ahead of the reader in
// large pieces and puts the data in the kernel's page cache (FUSE_NOTIFY_STORE): the reader finds
// it there. It stays up to WINDOW ahead of the last READ it heard of; a page left out every HOLE
// bytes brings the reader's progress as a small READ. One file at a time per serving thread.
//
// Stored data must never overwrite newer data. Only files nobody has open for writing are
// pushed, and a reply that lets a writer in (an OPEN for writing, a truncating SETATTR) to the
// pushed file goes out only once no store is in flight: sent by the push thread itself after
// its store when one is, so the serving thread never waits (a store may wait for a READ that
// only the serving thread reads). STRATA_READ_PUSH=0 turns it off.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import * as native from '../../native-shims';
import type { FuseFilesystem } from './filesystem';
import {
  APPENDING,
  DEV_FD,
  FILE_FD,
  GEN,
  IDLE,
  NODEID,
  QUEUED,
  READER_END,
  READY,
  REPLY_BYTES,
  SENDING,
  SEQ,
  SIZE,
  STATE,
  STOP_PENDING,
  STOPPED,
  STORING,
  STREAM_FIELDS,
  WINDOW,
  type PushShared,
} from './read-push-thread';

/** A READ this large at this offset or beyond means a sequential reader (the kernel's readahead). */
const MIN_READ = 128 * 1024;
const MIN_OFFSET = 1 << 20;

class ReadPush {
  private readonly ctrl: Int32Array;
  private readonly fields: Float64Array;
  private readonly replies: Buffer;
  /** The stream as this thread started it, until the push thread is known to have left it. */
  private devFd = -1;
  private nodeid = 0;
  private gen = 0;
  private readonly st = native.newStatArray();

  constructor() {
    const shared: PushShared = {
      ctrl: new SharedArrayBuffer(4 * 4),
      stream: new SharedArrayBuffer(STREAM_FIELDS * 8),
      replies: new SharedArrayBuffer(REPLY_BYTES),
    };
    this.ctrl = new Int32Array(shared.ctrl);
    this.fields = new Float64Array(shared.stream);
    this.replies = Buffer.from(shared.replies);
    Atomics.store(this.ctrl, STATE, STOPPED);
    const worker = new Worker(path.join(__dirname, 'read-push-thread.js'), { workerData: shared });
    worker.unref();
    // A thread that cannot start or dies leaves READY unset (or cleared): nothing is pushed.
    // Its stores ended with it, so replies are never held for it again.
    const lost = () => {
      Atomics.store(this.ctrl, READY, 0);
      this.devFd = -1;
    };
    worker.on('error', lost);
    worker.on('exit', lost);
  }

  private pushing(devFd: number, nodeid: number): boolean {
    return this.devFd === devFd && this.nodeid === nodeid;
  }

  /** A READ was served: starts pushing its file (true), or tells the thread how far the reader got. */
  onRead(devFd: number, fsys: FuseFilesystem, nodeid: number, fh: number, offset: number, size: number): boolean {
    if (Atomics.load(this.ctrl, READY) !== 1) return false;
    const end = offset + size;
    if (this.pushing(devFd, nodeid)) {
      const state = Atomics.load(this.ctrl, STATE);
      if (state === IDLE || state === STORING) {
        if (end > this.fields[READER_END]) this.write(READER_END, end);
        return false;
      }
      if (state !== STOPPED) return false; // stopping
      this.devFd = -1; // the thread ended it (the file or the kernel refused a store): may start again
    }
    if (size < MIN_READ || offset < MIN_OFFSET) return false;
    const fd = fsys.pushSource?.(fh);
    if (fd === undefined || native.fstatInto(fd, this.st) !== 0) return false;
    const fileSize = this.st[native.ST.SIZE];
    if (fileSize < end + WINDOW / 4) return false; // little left to read: not worth a stream
    if (!this.stop(this.devFd, this.nodeid, null)) return false; // the thread is finishing a store of the last one
    let ownFile = -1;
    let ownDev = -1;
    try {
      // Its own open file (a readahead state of its own) and its own fd for the connection: the
      // handle's and the session's may be closed while it still stores.
      ownFile = fs.openSync(`/proc/self/fd/${fd}`, fs.constants.O_RDONLY); // libuv adds O_CLOEXEC
      ownDev = native.fcntl(devFd, native.F_DUPFD_CLOEXEC, 0);
      if (ownDev < 0) throw new Error(`dup of /dev/fuse fd: errno ${-ownDev}`);
    } catch {
      if (ownFile >= 0) fs.closeSync(ownFile);
      return false;
    }
    native.fadvise(ownFile, 0, 0, native.POSIX_FADV_SEQUENTIAL);
    const c = this.ctrl;
    const f = this.fields;
    Atomics.add(c, SEQ, 1); // odd: fields being written
    f[GEN] = ++this.gen;
    f[DEV_FD] = ownDev;
    f[FILE_FD] = ownFile;
    f[NODEID] = nodeid;
    f[SIZE] = fileSize;
    f[READER_END] = end;
    Atomics.store(c, STATE, IDLE);
    Atomics.add(c, SEQ, 1);
    Atomics.notify(c, SEQ);
    this.devFd = devFd;
    this.nodeid = nodeid;
    return true;
  }

  /** The connection is going away: its stream ends (without waiting for a store in flight). */
  stopConnection(devFd: number): void {
    if (this.devFd === devFd) this.stop(devFd, this.nodeid, null);
  }

  private write(field: number, value: number): void {
    Atomics.add(this.ctrl, SEQ, 1);
    this.fields[field] = value;
    Atomics.add(this.ctrl, SEQ, 1);
    Atomics.notify(this.ctrl, SEQ);
  }

  /**
   * Stops pushing `nodeid` of connection `devFd` before `reply` (its first `len` bytes) is sent.
   * True when the stream is over and the caller may send (or start another); false when a store
   * was in flight: then the reply (if any) was queued for the push thread to send after it.
   */
  stop(devFd: number, nodeid: number, reply: Buffer | null, len = 0): boolean {
    if (!this.pushing(devFd, nodeid)) return true;
    const c = this.ctrl;
    for (;;) {
      const state = Atomics.load(c, STATE);
      if (state === IDLE) {
        if (Atomics.compareExchange(c, STATE, IDLE, STOPPED) !== IDLE) continue;
        Atomics.add(c, SEQ, 2); // wakes it (to close its fds) and voids a copy of the fields it may hold
        Atomics.notify(c, SEQ);
        this.devFd = -1;
        return true;
      }
      if (state === STORING || state === STOP_PENDING) {
        if (reply === null) {
          if (state === STOP_PENDING || Atomics.compareExchange(c, STATE, STORING, STOP_PENDING) === STORING) return false;
          continue;
        }
        const lock = state === STORING ? STORING : STOP_PENDING;
        // Queued under the lock: the push thread reads the queue only once it owns STOP_PENDING.
        if (state === STOP_PENDING && Atomics.compareExchange(c, STATE, STOP_PENDING, APPENDING) !== STOP_PENDING) continue;
        const at = Atomics.load(c, QUEUED);
        if (at + 4 + len > this.replies.length) {
          if (lock === STOP_PENDING) Atomics.store(c, STATE, STOP_PENDING);
          return true; // no room (hundreds of writers at once): sent now
        }
        this.replies.writeUInt32LE(len, at);
        reply.copy(this.replies, at + 4, 0, len);
        Atomics.store(c, QUEUED, at + 4 + len);
        if (lock === STOP_PENDING) {
          Atomics.store(c, STATE, STOP_PENDING);
          return false;
        }
        if (Atomics.compareExchange(c, STATE, STORING, STOP_PENDING) === STORING) return false;
        Atomics.store(c, QUEUED, at); // the store ended meanwhile: take it back and look again
        continue;
      }
      // No store is in flight or to come; while the thread sends the queued replies, no new stream.
      if (state === SENDING) return reply !== null;
      this.devFd = -1;
      return true;
    }
  }
}

let push: ReadPush | null = null;

/** Starts this thread's push thread (once): a mount whose READs are served here is up. */
export function startReadPush(): void {
  if (push === null && process.env.STRATA_READ_PUSH !== '0') push = new ReadPush();
}

/** A READ of `nodeid` through handle `fh` arrived: may start pushing that file (true) or extend it. */
export function pushOnRead(devFd: number, fsys: FuseFilesystem, nodeid: number, fh: number, offset: number, size: number): boolean {
  return push?.onRead(devFd, fsys, nodeid, fh, offset, size) ?? false;
}

/**
 * Before a reply that lets a writer at `nodeid` in: false when it may be sent now, true when the
 * push thread took it, to send once its store in flight is done.
 */
export function replyAfterPush(devFd: number, nodeid: number, reply: Buffer, len: number): boolean {
  return push !== null && !push.stop(devFd, nodeid, reply, len);
}

/** The connection is going away: nothing more is pushed to it. */
export function stopPush(devFd: number): void {
  push?.stopConnection(devFd);
}
