// The failover workload harness shared by test/failover.test.ts and scripts/failover-bench: a
// daemon with five mounted containers, a workload (workload.ts) in each, and the checks of what
// the workloads saw and wrote.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { runOk } from './exec';
import { startDaemon, type Daemon } from './daemon';
import { testEnv } from './env';
import { repoRoot } from './mount-union';
import type { TestLike } from './workspace';
import { dataFileContent, type WorkloadReport } from './workload';

export const CONTAINERS = 5;
const WORKLOAD = () => path.join(repoRoot(), 'dist', 'test', 'lib', 'workload.js');
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a step that must succeed printed (throws with its output otherwise). */
function must(r: { status: number | null; stdout: string; stderr: string }, what: string): string {
  if (r.status !== 0) throw new Error(`${what} failed (${r.status}): ${r.stderr.trim()}`);
  return r.stdout.trim();
}

const DATA_FILES = ['held', 'sub/inner', ...Array.from({ length: 24 }, (_, i) => `d${i % 4}/e${i % 3}/f${i}`)];

/** `populate` adds more to the image's root before it is imported. */
export async function daemonWithContainers(t: TestLike, label: string, extraArgs: string[] = [], populate?: (rootfs: string) => void): Promise<{ d: Daemon; mnts: string[] }> {
  const d = await startDaemon(t, { label, extraArgs: ['--fuse-threads', '2', ...extraArgs] });
  const rootfs = path.join(d.ws, 'rootfs');
  fs.mkdirSync(path.join(rootfs, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(rootfs, 'etc', 'motd'), 'failover\n');
  for (const rel of DATA_FILES) {
    fs.mkdirSync(path.dirname(path.join(rootfs, 'data', rel)), { recursive: true });
    fs.writeFileSync(path.join(rootfs, 'data', rel), dataFileContent(rel));
  }
  populate?.(rootfs);
  const tar = path.join(d.ws, 'base.tar');
  runOk('tar', ['--numeric-owner', '-C', rootfs, '-cf', tar, '.']);
  must(d.cli(['image', 'import', tar, 'base:1']), 'image import');
  const mnts: string[] = [];
  for (let i = 0; i < CONTAINERS; i++) {
    must(d.cli(['container', 'create', '--name', `w${i}`, 'base:1']), `create w${i}`);
    mnts.push(must(d.cli(['container', 'mount', `w${i}`]), `mount w${i}`));
  }
  return { d, mnts };
}

export interface Running {
  procs: ChildProcess[];
  reports: Promise<WorkloadReport>[];
}

function fsyncedLines(mnt: string): number {
  try {
    return fs.readFileSync(path.join(mnt, 'log', 'lines'), 'utf8').split('\n').length - 1;
  } catch {
    return 0;
  }
}

export async function startWorkloads(t: TestLike, mnts: string[]): Promise<Running> {
  const procs = mnts.map((m) => spawn(process.execPath, [WORKLOAD(), m], { stdio: ['ignore', 'pipe', 'pipe'], env: testEnv({}, { coverage: false }) }));
  t.teardown(() => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  });
  const reports = procs.map(
    (p) =>
      new Promise<WorkloadReport>((resolve) => {
        let out = '';
        let err = '';
        p.stdout!.on('data', (b: Buffer) => (out += b.toString()));
        p.stderr!.on('data', (b: Buffer) => (err += b.toString()));
        p.once('close', (code, signal) => {
          try {
            resolve(JSON.parse(out.trim().split('\n').pop()!) as WorkloadReport);
          } catch {
            resolve({ fsynced: 0, reads: 0, checks: 0, maxPauseMs: 0, errors: [`workload exited (${code ?? signal}) without a report: ${err.trim()}`] });
          }
        });
      }),
  );
  const deadline = Date.now() + 30_000;
  while (mnts.some((m) => fsyncedLines(m) < 5) && Date.now() < deadline) await delay(20);
  return { procs, reports };
}

/** Stops the workloads; one that does not stop within 20 s is stuck in a request nobody answers. */
export async function stopWorkloads(r: Running): Promise<WorkloadReport[]> {
  for (const p of r.procs) p.kill('SIGTERM');
  const stuck = (i: number): WorkloadReport => ({ fsynced: 0, reads: 0, checks: 0, maxPauseMs: 0, errors: [`workload ${i} is stuck (stack: ${stackOf(r.procs[i].pid!)})`] });
  return Promise.all(r.reports.map((p, i) => Promise.race([p, delay(20_000).then(() => stuck(i))])));
}

function stackOf(pid: number): string {
  try {
    return fs.readdirSync(`/proc/${pid}/task`).map((task) => fs.readFileSync(`/proc/${pid}/task/${task}/stack`, 'utf8').split('\n')[2] ?? '').filter((l) => l.includes('fuse')).join('; ');
  } catch {
    return '?';
  }
}

/** What is wrong with what workload `i` saw and wrote: its errors, and lines missing, repeated or out of order. */
export function workloadProblems(mnt: string, r: WorkloadReport): string[] {
  const out = [...r.errors];
  if (r.fsynced <= 10 || r.reads === 0 || r.checks === 0) out.push(`no progress (${r.fsynced} lines, ${r.reads} reads, ${r.checks} checks)`);
  const lines = fs.readFileSync(path.join(mnt, 'log', 'lines'), 'utf8').split('\n');
  if (lines.pop() !== '') out.push('the file does not end with a whole line');
  const bad = lines.findIndex((l, k) => l !== String(k + 1));
  if (bad >= 0) out.push(`line ${bad + 1} is ${JSON.stringify(lines[bad])}`);
  if (lines.length < r.fsynced) out.push(`${r.fsynced} lines fsynced, ${lines.length} there`);
  return out;
}

/** Percentiles of a list of times (ms). */
export function percentiles(ms: number[]): { p50: number; p99: number; max: number } {
  const s = [...ms].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
  return { p50: q(50), p99: q(99), max: s[s.length - 1] };
}
