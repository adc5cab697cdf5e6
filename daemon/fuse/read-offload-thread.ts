// The read-offload thread (read-offload.ts): takes READ jobs from the shared ring in order and
// answers each: spliced from the file, or copied where splicing falls short, or an errno.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { workerData } from 'node:worker_threads';
import * as native from '../../native-shims';
import { MAX_WRITE, OUT_HEADER_SIZE } from './protocol';
import { NOT_SENT, SplicePipe } from './splice-pipe';

export interface OffloadShared {
  /** Int32 [READY, SUBMITTED, TAKEN, spare]: counters wrap at 2^32. */
  ctrl: SharedArrayBuffer;
  /** SLOTS jobs of JOB_FIELDS float64: devFd, fileFd, offset, size, unique low, unique high. */
  jobs: SharedArrayBuffer;
}

export const READY = 0;
export const SUBMITTED = 1;
export const TAKEN = 2;
/** A power of two above the kernel's max_background (64): the ring never fills in practice. */
export const SLOTS = 128;
export const JOB_FIELDS = 6;

function main(shared: OffloadShared): void {
  const ctrl = new Int32Array(shared.ctrl);
  const jobs = new Float64Array(shared.jobs);
  const out = Buffer.allocUnsafe(OUT_HEADER_SIZE + MAX_WRITE);
  const st = native.newStatArray();
  let pipe: SplicePipe | null = null;
  try {
    pipe = SplicePipe.open();
  } catch {
    // no pipe: every reply is copied
  }

  const answer = (devFd: number, fileFd: number, offset: number, size: number): void => {
    let n = 0;
    let errno = 0;
    const e = native.fstatInto(fileFd, st);
    if (e !== 0) errno = e;
    else n = Math.max(0, Math.min(size, MAX_WRITE, st[native.ST.SIZE] - offset));
    out.writeUInt32LE(OUT_HEADER_SIZE + n, 0);
    out.writeInt32LE(0, 4);
    if (errno === 0 && n > 0 && pipe !== null && pipe.fits(n) && pipe.reply(devFd, fileFd, offset, n, out) !== NOT_SENT) return;
    if (errno === 0 && n > 0) {
      try {
        n = fs.readSync(fileFd, out, OUT_HEADER_SIZE, n, offset);
      } catch (err) {
        errno = -((err as NodeJS.ErrnoException).errno ?? -os.constants.errno.EIO);
      }
    }
    if (errno !== 0) n = 0;
    out.writeUInt32LE(OUT_HEADER_SIZE + n, 0);
    out.writeInt32LE(-errno, 4);
    native.writeFrom(devFd, out, OUT_HEADER_SIZE + n); // a failure: the request is gone, nothing to do
  };

  Atomics.store(ctrl, READY, 1);
  for (;;) {
    const taken = Atomics.load(ctrl, TAKEN);
    if (taken === Atomics.load(ctrl, SUBMITTED)) {
      Atomics.wait(ctrl, SUBMITTED, taken);
      continue;
    }
    const j = (taken & (SLOTS - 1)) * JOB_FIELDS;
    out.writeUInt32LE(jobs[j + 4], 8);
    out.writeUInt32LE(jobs[j + 5], 12);
    try {
      answer(jobs[j], jobs[j + 1], jobs[j + 2], jobs[j + 3]);
    } catch {
      // never leave the ring: the serving thread may be waiting for it to empty
    }
    Atomics.store(ctrl, TAKEN, (taken + 1) | 0);
    Atomics.notify(ctrl, TAKEN);
  }
}

if (workerData !== null && typeof workerData === 'object' && 'jobs' in workerData) main(workerData as OffloadShared);
