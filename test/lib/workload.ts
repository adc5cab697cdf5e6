// A container workload that must never notice its FUSE server being killed and replaced: run as
// `node dist/test/lib/workload.js MOUNTPOINT`. In the mount it runs
//   - a writer (thread): appends numbered lines to /log/lines with an fsync after each, every
//     few ms, and now and then replaces /log/state by rename, makes and removes a directory and
//     a file (mutating requests that may be in flight at a crash);
//   - a reader (thread): walks /data and reads every file, checking its content;
//   - this process itself: its cwd is /data/sub and it holds /data/held open, using both.
// On SIGTERM it stops and prints one JSON line (WorkloadReport); any error is reported, and the
// process stops at the first one.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

export interface WorkloadReport {
  /** The last line number whose fsync returned. */
  fsynced: number;
  reads: number;
  checks: number;
  errors: string[];
  /** Longest time one step of the writer took (ms): the pause a takeover caused. */
  maxPauseMs: number;
}

/** Content of the files the workload reads under /data (the test writes them into the image). */
export function dataFileContent(rel: string): string {
  return `content of ${rel}\n`.repeat(8);
}

const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

interface Job {
  role: 'writer' | 'reader';
  mnt: string;
  stop: SharedArrayBuffer;
}

function writer(mnt: string, stopped: () => boolean): Omit<WorkloadReport, 'reads' | 'checks'> {
  const r = { fsynced: 0, errors: [] as string[], maxPauseMs: 0 };
  const dir = path.join(mnt, 'log');
  try {
    fs.mkdirSync(dir, { recursive: true });
    const fd = fs.openSync(path.join(dir, 'lines'), 'a');
    let last = performance.now();
    for (let n = 1; !stopped(); n++) {
      fs.writeSync(fd, `${n}\n`);
      fs.fsyncSync(fd);
      r.fsynced = n;
      if (n % 20 === 0) {
        const tmp = path.join(dir, 'state.tmp');
        fs.writeFileSync(tmp, `${n}\n`);
        fs.renameSync(tmp, path.join(dir, 'state'));
        fs.mkdirSync(path.join(dir, `d${n}`));
        fs.writeFileSync(path.join(dir, `d${n}`, 'f'), 'x');
        fs.unlinkSync(path.join(dir, `d${n}`, 'f'));
        fs.rmdirSync(path.join(dir, `d${n}`));
      }
      const now = performance.now();
      r.maxPauseMs = Math.max(r.maxPauseMs, now - last);
      sleep(2 + (n % 3));
      last = performance.now();
    }
    fs.closeSync(fd);
  } catch (err) {
    r.errors.push(`writer: ${(err as Error).message}`);
  }
  return r;
}

function walk(dir: string, out: string[]): void {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else out.push(p);
  }
}

function reader(mnt: string, stopped: () => boolean): { reads: number; errors: string[] } {
  const r = { reads: 0, errors: [] as string[] };
  const data = path.join(mnt, 'data');
  try {
    while (!stopped()) {
      const files: string[] = [];
      walk(data, files);
      for (const f of files) {
        const got = fs.readFileSync(f, 'utf8');
        const want = dataFileContent(path.relative(data, f));
        if (got !== want) throw new Error(`${f}: read ${JSON.stringify(got.slice(0, 40))}`);
        r.reads++;
      }
      fs.statSync(path.join(mnt, 'log'));
      sleep(5);
    }
  } catch (err) {
    r.errors.push(`reader: ${(err as Error).message}`);
  }
  return r;
}

function workerMain(): void {
  const job = workerData as Job;
  const flag = new Int32Array(job.stop);
  const stopped = () => Atomics.load(flag, 0) !== 0;
  const result = job.role === 'writer' ? writer(job.mnt, stopped) : reader(job.mnt, stopped);
  if (result.errors.length) Atomics.store(flag, 0, 1); // one error stops everything
  parentPort!.postMessage(result);
}

function main(): void {
  const mnt = path.resolve(process.argv[2]);
  const stop = new SharedArrayBuffer(4);
  const flag = new Int32Array(stop);
  const report: WorkloadReport = { fsynced: 0, reads: 0, checks: 0, errors: [], maxPauseMs: 0 };
  fs.mkdirSync(path.join(mnt, 'log'), { recursive: true }); // before the reader looks at it
  const finished: Promise<void>[] = (['writer', 'reader'] as const).map(
    (role) =>
      new Promise<void>((resolve) => {
        const w = new Worker(__filename, { workerData: { role, mnt, stop } satisfies Job });
        w.once('message', (m: Partial<WorkloadReport> & { errors: string[] }) => {
          report.fsynced = m.fsynced ?? report.fsynced;
          report.maxPauseMs = m.maxPauseMs ?? report.maxPauseMs;
          report.reads = m.reads ?? report.reads;
          report.errors.push(...m.errors);
        });
        w.once('error', (err) => report.errors.push(`${role} thread: ${err.message}`));
        w.once('exit', () => resolve());
      }),
  );

  // This process: cwd inside the mount, one file held open, both used all along.
  const held = fs.openSync(path.join(mnt, 'data', 'held'), 'r');
  process.chdir(path.join(mnt, 'data', 'sub'));
  const want = dataFileContent('held');
  const buf = Buffer.alloc(want.length);
  const timer = setInterval(() => {
    try {
      if (fs.fstatSync(held).size !== want.length) throw new Error('held file: wrong size');
      if (fs.readSync(held, buf, 0, buf.length, 0) !== buf.length || buf.toString() !== want) throw new Error('held file: wrong content');
      if (!fs.readdirSync('.').includes('inner')) throw new Error(`cwd ${process.cwd()}: "inner" missing`);
      if (fs.readFileSync('inner', 'utf8') !== dataFileContent('sub/inner')) throw new Error('cwd: inner has the wrong content');
      report.checks++;
    } catch (err) {
      report.errors.push(`holder: ${(err as Error).message}`);
      Atomics.store(flag, 0, 1);
    }
    if (Atomics.load(flag, 0) !== 0) clearInterval(timer);
  }, 20);

  // Stopped by SIGTERM, or by the first error: the report is printed once every thread is done.
  const end = () => {
    Atomics.store(flag, 0, 1);
    clearInterval(timer);
  };
  void Promise.all(finished).then(() => {
    clearInterval(timer);
    fs.writeSync(1, JSON.stringify(report) + '\n'); // before exit: a pipe write may be left pending
    process.exit(0);
  });
  process.once('SIGTERM', end);
  process.once('SIGINT', end);
}

if (!isMainThread) workerMain();
else if (require.main === module) main();
