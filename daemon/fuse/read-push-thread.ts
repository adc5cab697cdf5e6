// The read-push thread (read-push.ts): stores the file being read sequentially into the kernel's
// page cache ahead of its reader, a piece at a time, and sends the replies that had to wait for it
// to stop.
import * as fs from 'node:fs';
import { workerData } from 'node:worker_threads';
import * as native from '../../native-shims';
import { Notify, NOTIFY_STORE_OUT_SIZE, OUT_HEADER_SIZE } from './protocol';
import { SplicePipe } from './splice-pipe';

export interface PushShared {
  /** Int32 [READY, SEQ, STATE, QUEUED]. */
  ctrl: SharedArrayBuffer;
  /** The stream, Float64 (STREAM_FIELDS), written under the SEQ seqlock. */
  stream: SharedArrayBuffer;
  /** Replies waiting for the stream to stop: QUEUED bytes of [len u32, bytes] records. */
  replies: SharedArrayBuffer;
}

export const READY = 0;
/** Even when the stream fields are stable, odd while the serving thread writes them. */
export const SEQ = 1;
export const STATE = 2;
export const QUEUED = 3;

/** STATE: the thread may store. */
export const IDLE = 0;
/** A store is in flight: a reply that lets a writer in must wait for it. */
export const STORING = 1;
/** Stop asked while storing: the thread sends the queued replies after the store. */
export const STOP_PENDING = 2;
/** The serving thread is adding a reply to the queue (a lock: only that thread takes it). */
export const APPENDING = 3;
/** The thread is sending the queued replies: no store is in flight or to come. */
export const SENDING = 4;
/** No stream: nothing is stored until the serving thread starts one. */
export const STOPPED = 5;

/** Stream fields. */
export const GEN = 0;
export const DEV_FD = 1;
export const FILE_FD = 2;
export const NODEID = 3;
export const SIZE = 4;
/** Where the reader's last READ ended: the thread stays up to WINDOW ahead of it. */
export const READER_END = 5;
export const STREAM_FIELDS = 6;

export const REPLY_BYTES = 64 * 1024;

/** How far ahead of the reader data is stored. */
export const WINDOW = 16 << 20;
/** A page is left out every HOLE bytes: the reader's READ for it says how far it got. */
export const HOLE = 4 << 20;
/** How far past the reader a stream starts (or resumes when overtaken): the kernel's own readahead covers that. */
const LEAD = 512 * 1024;
const PAGE = 4096;
/** Disk reads are asked this far ahead of the stores, this much at a time. */
const DISK_AHEAD = 32 << 20;
const DISK_STEP = 4 << 20;
const STORE_HEADER = OUT_HEADER_SIZE + NOTIFY_STORE_OUT_SIZE;

interface Stream {
  gen: number;
  devFd: number;
  fileFd: number;
  nodeid: number;
  size: number;
  /** Where the next store starts. */
  next: number;
  /** Stores stay below this. */
  limit: number;
  /** The file's data up to here has been asked of the disk (POSIX_FADV_WILLNEED). */
  asked: number;
}

function main(shared: PushShared): void {
  const ctrl = new Int32Array(shared.ctrl);
  const fields = new Float64Array(shared.stream);
  const replies = Buffer.from(shared.replies);
  const header = Buffer.alloc(STORE_HEADER);
  const pipe = SplicePipe.open();
  // Whole pages, leaving room for the header's page and an unaligned start.
  const piece = Math.max(PAGE, 2 ** Math.floor(Math.log2(pipe.size - 2 * PAGE)));
  let cur: Stream | null = null;
  let lastGen = 0;

  const close = () => {
    if (cur === null) return;
    for (const fd of [cur.devFd, cur.fileFd]) {
      try {
        fs.closeSync(fd);
      } catch {
        // already closed
      }
    }
    cur = null;
  };

  /** Stores the next piece; false when the kernel or the file refused it (the stream ends). */
  const storeNext = (s: Stream): boolean => {
    // Keep the disk busy well ahead of the stores: the splices below then find the data cached.
    if (s.asked < s.next) s.asked = s.next;
    while (s.asked < Math.min(s.next + DISK_AHEAD, s.size)) {
      native.fadvise(s.fileFd, s.asked, DISK_STEP, native.POSIX_FADV_WILLNEED);
      s.asked += DISK_STEP;
    }
    let from = s.next;
    const to = Math.min(Math.floor(from / piece) * piece + piece, s.size, s.limit);
    if (from % HOLE === 0) from += PAGE;
    s.next = to;
    const n = to - from;
    if (n <= 0) return true;
    header.writeUInt32LE(STORE_HEADER + n, 0);
    header.writeInt32LE(Notify.STORE, 4); // notifications carry their code where replies carry -errno
    header.writeBigUInt64LE(0n, 8);
    header.writeBigUInt64LE(BigInt(s.nodeid), OUT_HEADER_SIZE);
    header.writeBigUInt64LE(BigInt(from), OUT_HEADER_SIZE + 8);
    header.writeUInt32LE(n, OUT_HEADER_SIZE + 16);
    header.writeUInt32LE(0, OUT_HEADER_SIZE + 20);
    return pipe.reply(s.devFd, s.fileFd, from, n, header, STORE_HEADER) === 0;
  };

  /** Sends the queued replies (the stream is over), then lets a new stream start. */
  const sendQueued = (devFd: number) => {
    const len = Atomics.load(ctrl, QUEUED);
    for (let at = 0; at + 4 <= len; ) {
      const n = replies.readUInt32LE(at);
      try {
        fs.writeSync(devFd, replies, at + 4, n);
      } catch {
        // ENOENT: the request was interrupted and is gone; nothing else to do
      }
      at += 4 + n;
    }
    Atomics.store(ctrl, QUEUED, 0);
  };

  Atomics.store(ctrl, READY, 1);
  for (;;) {
    // A consistent copy of the stream fields (seqlock).
    const seq = Atomics.load(ctrl, SEQ);
    if (seq & 1) continue;
    const gen = fields[GEN];
    const devFd = fields[DEV_FD];
    const fileFd = fields[FILE_FD];
    const nodeid = fields[NODEID];
    const size = fields[SIZE];
    const readerEnd = fields[READER_END];
    if (Atomics.load(ctrl, SEQ) !== seq) continue;

    // A new stream's fds are this thread's to close, even one stopped before it got here.
    if (gen !== lastGen) {
      close();
      lastGen = gen;
      const start = Math.ceil(readerEnd / PAGE) * PAGE + LEAD;
      cur = { gen, devFd, fileFd, nodeid, size, next: start, limit: start, asked: start };
    }
    if (Atomics.load(ctrl, STATE) === STOPPED) close();
    const s: Stream | null = cur;
    if (s !== null) {
      s.limit = Math.max(s.limit, readerEnd + WINDOW);
      // Overtaken: the kernel is reading ahead right after the reader; go on beyond that.
      if (readerEnd > s.next) s.next = Math.ceil(readerEnd / PAGE) * PAGE + LEAD;
    }
    if (s === null || s.next >= Math.min(s.limit, s.size)) {
      Atomics.wait(ctrl, SEQ, seq);
      continue;
    }
    if (Atomics.compareExchange(ctrl, STATE, IDLE, STORING) !== IDLE) continue; // stopped meanwhile
    // The stream may have been stopped and another started since the copy above: look again.
    const current = Atomics.load(ctrl, SEQ) === seq;
    let ok = false;
    try {
      ok = current && storeNext(s);
    } catch {
      // the stream ends
    }
    if (Atomics.compareExchange(ctrl, STATE, STORING, IDLE) !== STORING) {
      // Stop asked during the store: the replies it queued can go now, on the connection of the
      // stream the serving thread stopped (the latest: its fields stay put until this is done).
      const replyFd = fields[DEV_FD];
      while (Atomics.compareExchange(ctrl, STATE, STOP_PENDING, SENDING) !== STOP_PENDING); // APPENDING is brief
      try {
        sendQueued(replyFd);
      } finally {
        close();
        Atomics.store(ctrl, STATE, STOPPED);
      }
    } else if (current && !ok) {
      close();
      Atomics.compareExchange(ctrl, STATE, IDLE, STOPPED);
    }
  }
}

if (workerData !== null && typeof workerData === 'object' && 'replies' in workerData) main(workerData as PushShared);
