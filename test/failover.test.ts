// Mounts that outlive the daemon: five mounted containers, each with a workload (lib/workload.ts:
// an fsyncing writer, a reader, a process whose cwd and open file are inside) that must never see
// an error while stratad is killed with SIGKILL at random moments and restarted, stopped and
// started with --live-restore, or replaced by an upgrade; every fsynced line must be there once,
// in order. And when the fd holder is killed too (a reboot-like loss): recovery as before.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { runOk } from './lib/exec';
import { startDaemon, type Daemon } from './lib/daemon';
import { ok } from './lib/expect';
import { missingCapability, repoRoot } from './lib/mount';
import { listMounts } from './lib/mounts';
import { dataFileContent, type WorkloadReport } from './lib/workload';
import type { ContainerSummary, Info } from '../daemon/api/types';

const skip = missingCapability({ fuse: true });
const CONTAINERS = 5;
const WORKLOAD = () => path.join(repoRoot(), 'dist', 'test', 'lib', 'workload.js');
const opts = { skip: skip ?? false, timeout: 200_000 };
const only = (name: string) => ({ ...opts, skip: skip ?? (process.env.FAILOVER_ONLY !== undefined && !name.includes(process.env.FAILOVER_ONLY)) }); // TMPDEBUG
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

const DATA_FILES = ['held', 'sub/inner', ...Array.from({ length: 24 }, (_, i) => `d${i % 4}/e${i % 3}/f${i}`)];

async function daemonWithContainers(t: Test, label: string, extraArgs: string[] = []): Promise<{ d: Daemon; mnts: string[] }> {
  const d = await startDaemon(t, { label, extraArgs: ['--fuse-threads', '2', ...extraArgs], logLevel: process.env.FAILOVER_LOG ?? 'warn' });
  const rootfs = path.join(d.ws, 'rootfs');
  fs.mkdirSync(path.join(rootfs, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(rootfs, 'etc', 'motd'), 'failover\n');
  for (const rel of DATA_FILES) {
    fs.mkdirSync(path.dirname(path.join(rootfs, 'data', rel)), { recursive: true });
    fs.writeFileSync(path.join(rootfs, 'data', rel), dataFileContent(rel));
  }
  const tar = path.join(d.ws, 'base.tar');
  runOk('tar', ['--numeric-owner', '-C', rootfs, '-cf', tar, '.']);
  ok(t, d.cli(['image', 'import', tar, 'base:1']), 'image import');
  const mnts: string[] = [];
  for (let i = 0; i < CONTAINERS; i++) {
    ok(t, d.cli(['container', 'create', '--name', `w${i}`, 'base:1']), `create w${i}`);
    mnts.push(ok(t, d.cli(['container', 'mount', `w${i}`]), `mount w${i}`));
  }
  return { d, mnts };
}

interface Running {
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

async function startWorkloads(t: Test, mnts: string[]): Promise<Running> {
  const procs = mnts.map((m) => spawn(process.execPath, [WORKLOAD(), m], { stdio: ['ignore', 'pipe', 'pipe'] }));
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
async function stopWorkloads(r: Running): Promise<WorkloadReport[]> {
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

/** The workloads saw no error and every fsynced line is in the file once, in order. */
function checkWorkloads(t: Test, mnts: string[], reports: WorkloadReport[], d?: Daemon): void {
  if (d && reports.some((r) => r.errors.length)) t.comment(d.log().split('\n').filter((l) => /request failed|taken over|takeover/.test(l)).join('\n')); // TMPDEBUG
  reports.forEach((r, i) => {
    t.same(r.errors, [], `workload ${i}: no errors (${r.fsynced} lines fsynced, ${r.reads} reads, ${r.checks} cwd/open-file checks, longest pause ${Math.round(r.maxPauseMs)} ms)`);
    t.ok(r.fsynced > 10 && r.reads > 0 && r.checks > 0, `workload ${i} made progress`);
    const lines = fs.readFileSync(path.join(mnts[i], 'log', 'lines'), 'utf8').split('\n');
    t.equal(lines.pop(), '', 'the file ends with a whole line');
    const bad = lines.findIndex((l, k) => l !== String(k + 1));
    t.equal(bad, -1, `workload ${i}: lines are 1..${lines.length} exactly once, in order${bad >= 0 ? ` (line ${bad + 1} is ${JSON.stringify(lines[bad])})` : ''}`);
    t.ok(lines.length >= r.fsynced, `workload ${i}: all ${r.fsynced} fsynced lines are there`);
  });
}

/** Each mount serves, is the one fuse.strata mount at its place, and nothing under the root is dead. */
function checkMounts(t: Test, d: Daemon, mnts: string[]): void {
  const table = listMounts();
  for (const m of mnts) {
    t.equal(fs.readFileSync(path.join(m, 'etc', 'motd'), 'utf8'), 'failover\n', `${path.basename(path.dirname(m))} serves`);
    t.same(table.filter((x) => x.mountPoint === m).map((x) => x.fsType), ['fuse.strata'], 'one mount there, no stale one');
  }
  const ps = ok(t, d.cli(['ps', '--format', 'json']), 'ps').trim().split('\n').map((l) => JSON.parse(l) as ContainerSummary);
  t.same(ps.map((c) => c.state).sort(), Array(CONTAINERS).fill('mounted'), 'ps: every container mounted');
}

function info(t: Test, d: Daemon): Info {
  return JSON.parse(ok(t, d.cli(['info', '--format', 'json']), 'info')) as Info;
}

function stats(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
  return `p50 ${q(50)} ms, p99 ${q(99)} ms, max ${s[s.length - 1]} ms (${s.join(' ')})`;
}

t.test('SIGKILL of stratad at random moments: the workloads only pause', only('SIGKILL'), async (t) => {
  const { d, mnts } = await daemonWithContainers(t, 'failover');
  const w = await startWorkloads(t, mnts);
  const times: number[] = [];
  const inside: number[] = [];
  const t0 = Date.now();
  for (let i = 0; i < 10 || Date.now() - t0 < 25_000; i++) {
    await delay(500 + Math.random() * 2000);
    const killedAt = Date.now();
    await d.kill('SIGKILL');
    await d.restart();
    const last = info(t, d).engine.lastTakeover;
    // The takeover is over when the mounts are served again (recorded then), not when the API answers.
    times.push(last ? Date.parse(last.at) - killedAt : -1);
    inside.push(last?.ms ?? -1);
  }
  const reports = await stopWorkloads(w);
  t.comment(`${times.length} kills; kill to mounts served again: ${stats(times)}`);
  t.comment(`of which stratad's own start to takeover done: ${stats(inside)}`);
  checkWorkloads(t, mnts, reports, d);
  checkMounts(t, d, mnts);
  const e = info(t, d).engine;
  t.equal(e.takeovers, times.length, 'info counts every takeover');
  t.equal(e.mountsServed, CONTAINERS, 'info: mounts served');
  t.ok(e.holderPid > 0 && d.holderPids().includes(e.holderPid), 'info names the fd holder');
});

t.test('live restore: stop and start ten times; upgrade ten times', only('live'), async (t) => {
  const { d, mnts } = await daemonWithContainers(t, 'liverestore', ['--live-restore']);
  const w = await startWorkloads(t, mnts);
  const restarts: number[] = [];
  for (let i = 0; i < 10; i++) {
    await delay(200 + Math.random() * 500);
    const at = performance.now();
    t.same(await d.kill('SIGTERM'), { code: 0, signal: null }, `stop ${i + 1}: exit 0`);
    await d.restart();
    restarts.push(Math.round(performance.now() - at));
  }
  const upgrades: number[] = [];
  for (let i = 0; i < 10; i++) {
    await delay(200 + Math.random() * 500);
    const at = performance.now();
    await d.upgrade();
    upgrades.push(Math.round(performance.now() - at));
  }
  const reports = await stopWorkloads(w);
  t.comment(`live-restore stop+start: ${stats(restarts)}`);
  t.comment(`upgrades: ${stats(upgrades)}`);
  checkWorkloads(t, mnts, reports, d);
  checkMounts(t, d, mnts);
  t.equal(info(t, d).engine.takeovers, 20, 'twenty takeovers');
  // Without --live-restore a stop unmounts as before, and the holder goes.
  await d.kill('SIGTERM');
  await d.restart(); // takes over once more (started with --live-restore)
});

t.test('holder killed too: start-up recovery mounts again', only('holder'), async (t) => {
  const { d, mnts } = await daemonWithContainers(t, 'holderloss');
  fs.writeFileSync(path.join(mnts[0], 'kept'), 'kept\n');
  const holders = d.holderPids();
  t.equal(holders.length, 1, 'one fd holder for the root');
  await d.kill('SIGKILL');
  for (const pid of holders) process.kill(pid, 'SIGKILL');
  await delay(100);
  let dead = '';
  try {
    fs.statSync(path.join(mnts[0], 'etc'));
  } catch (err) {
    dead = (err as NodeJS.ErrnoException).code ?? '';
  }
  t.equal(dead, 'ENOTCONN', 'with both gone the mounts are dead');
  await d.restart();
  checkMounts(t, d, mnts);
  t.equal(fs.readFileSync(path.join(mnts[0], 'kept'), 'utf8'), 'kept\n', 'what was written is there');
  t.equal(info(t, d).engine.takeovers, 0, 'nothing was taken over');
});
