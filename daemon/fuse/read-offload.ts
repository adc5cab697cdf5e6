// READs answered on a second thread. A served (non-passthrough) mount gets its readahead as
// READ requests, two or more queued at a time; answered one after another on the serving
// thread, each waits for the one before, and the process uses one CPU. Here the serving
// thread hands a large READ (fds, offset, size, unique) to a thread of its own over a shared
// ring and goes on reading requests; that thread splices the data to /dev/fuse and answers.
// The kernel holds the open file until the READ is answered, so its fd stays valid; a
// session ending waits for the ring to empty before its fds are closed.
// One offload thread per serving thread, started when it first serves a mount without
// passthrough (it ends with the serving thread: an idle engine keeps none); until the thread
// is up, READs are answered inline. STRATA_READ_OFFLOAD=0 turns it off.
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { FuseFilesystem } from './filesystem';
import { JOB_FIELDS, READY, SLOTS, TAKEN, SUBMITTED, type OffloadShared } from './read-offload-thread';

/** Smaller READs (random access, small files) are answered inline: a handover costs more than it saves. */
const OFFLOAD_MIN = 128 * 1024;

class ReadOffload {
  private readonly ctrl: Int32Array;
  private readonly jobs: Float64Array;

  constructor() {
    const shared: OffloadShared = {
      ctrl: new SharedArrayBuffer(4 * 4),
      jobs: new SharedArrayBuffer(SLOTS * JOB_FIELDS * 8),
    };
    this.ctrl = new Int32Array(shared.ctrl);
    this.jobs = new Float64Array(shared.jobs);
    const worker = new Worker(path.join(__dirname, 'read-offload-thread.js'), { workerData: shared });
    worker.unref();
    // A thread that cannot start or dies leaves READY unset (or cleared): READs are answered inline.
    const lost = () => Atomics.store(this.ctrl, READY, 0);
    worker.on('error', lost);
    worker.on('exit', lost);
  }

  submit(devFd: number, fileFd: number, offset: number, size: number, uniqueLo: number, uniqueHi: number): boolean {
    const c = this.ctrl;
    if (Atomics.load(c, READY) !== 1) return false;
    const tail = Atomics.load(c, SUBMITTED);
    if (((tail - Atomics.load(c, TAKEN)) | 0) >= SLOTS) return false; // full: answer inline
    const j = (tail & (SLOTS - 1)) * JOB_FIELDS;
    const jobs = this.jobs;
    jobs[j] = devFd;
    jobs[j + 1] = fileFd;
    jobs[j + 2] = offset;
    jobs[j + 3] = size;
    jobs[j + 4] = uniqueLo;
    jobs[j + 5] = uniqueHi;
    Atomics.store(c, SUBMITTED, (tail + 1) | 0);
    Atomics.notify(c, SUBMITTED, 1);
    return true;
  }

  /** Returns once every submitted READ is answered (or the thread is gone). */
  drain(): void {
    const c = this.ctrl;
    for (let taken = Atomics.load(c, TAKEN); taken !== Atomics.load(c, SUBMITTED) && Atomics.load(c, READY) === 1; taken = Atomics.load(c, TAKEN)) {
      Atomics.wait(c, TAKEN, taken, 50);
    }
  }
}

let offload: ReadOffload | null = null;

/** Starts this thread's offload thread (once): a mount whose READs are served here is up. */
export function startReadOffload(): void {
  if (offload === null && process.env.STRATA_READ_OFFLOAD !== '0') offload = new ReadOffload();
}

/** Hands a READ to the offload thread; false when it is to be answered here. */
export function offloadedRead(devFd: number, fsys: FuseFilesystem, fh: number, offset: number, size: number, uniqueLo: number, uniqueHi: number): boolean {
  if (size < OFFLOAD_MIN || offload === null) return false;
  const fd = fsys.readSource?.(fh);
  return fd !== undefined && offload.submit(devFd, fd, offset, size, uniqueLo, uniqueHi);
}

/** Waits until the READs handed over are answered (before the fds they use are closed). */
export function waitOffloadedReads(): void {
  offload?.drain();
}
