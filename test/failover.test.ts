// Mounts that outlive the daemon: five mounted containers, each with a workload (lib/workload.ts:
// an fsyncing writer, a reader, a process whose cwd and open file are inside) that must never see
// an error while stratad is killed with SIGKILL at random moments and restarted, stopped and
// started with --live-restore, or replaced by an upgrade; every fsynced line must be there once,
// in order. And when the fd holder is killed too (a reboot-like loss): recovery as before.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import type { Daemon } from './lib/daemon';
import { ok } from './lib/expect';
import { CONTAINERS, daemonWithContainers, percentiles, startWorkloads, stopWorkloads, workloadProblems } from './lib/failover';
import { missingCapability } from './lib/mount-union';
import { listMounts } from './lib/mount-table';
import type { WorkloadReport } from './lib/workload';
import type { Info } from '../daemon/model/types';
import type { ContainerRow } from '../cli/commands/containers';

const skip = missingCapability({ fuse: true });
const opts = { skip: skip ?? false, timeout: 200_000 };
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The workloads saw no error and every fsynced line is in the file once, in order. */
function checkWorkloads(t: Test, mnts: string[], reports: WorkloadReport[]): void {
  reports.forEach((r, i) => {
    t.same(workloadProblems(mnts[i], r), [], `workload ${i}: no errors, every fsynced line once and in order (${r.fsynced} lines fsynced, ${r.reads} reads, ${r.checks} cwd/open-file checks, longest pause ${Math.round(r.maxPauseMs)} ms)`);
  });
}

/** Each mount serves, is the one fuse.strata mount at its place, and nothing under the root is dead. */
function checkMounts(t: Test, d: Daemon, mnts: string[]): void {
  const table = listMounts();
  for (const m of mnts) {
    t.equal(fs.readFileSync(path.join(m, 'etc', 'motd'), 'utf8'), 'failover\n', `${path.basename(path.dirname(m))} serves`);
    t.same(table.filter((x) => x.mountPoint === m).map((x) => x.fsType), ['fuse.strata'], 'one mount there, no stale one');
  }
  const ps = ok(t, d.cli(['ps', '--format', 'json']), 'ps').trim().split('\n').map((l) => JSON.parse(l) as ContainerRow);
  t.same(ps.map((c) => c.State).sort(), Array(CONTAINERS).fill('mounted'), 'ps: every container mounted');
}

function info(t: Test, d: Daemon): Info {
  return JSON.parse(ok(t, d.cli(['info', '--format', 'json']), 'info')) as Info;
}

function stats(ms: number[]): string {
  const p = percentiles(ms);
  return `p50 ${p.p50} ms, p99 ${p.p99} ms, max ${p.max} ms (${[...ms].sort((a, b) => a - b).join(' ')})`;
}

t.test('SIGKILL of stratad at random moments: the workloads only pause', opts, async (t) => {
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
    const last = info(t, d).Engine.LastTakeover;
    // The takeover is over when the mounts are served again (recorded then), not when the API answers.
    times.push(last ? Date.parse(last.At) - killedAt : -1);
    inside.push(last?.Ms ?? -1);
  }
  const reports = await stopWorkloads(w);
  t.comment(`${times.length} kills; kill to mounts served again: ${stats(times)}`);
  t.comment(`of which stratad's own start to takeover done: ${stats(inside)}`);
  checkWorkloads(t, mnts, reports);
  checkMounts(t, d, mnts);
  t.match(ok(t, d.cli(['ps']), 'ps'), /Mounted \(taken over\)/, 'ps: the mounts were taken over');
  const e = info(t, d).Engine;
  t.equal(e.Takeovers, times.length, 'info counts every takeover');
  t.equal(e.MountsServed, CONTAINERS, 'info: mounts served');
  t.ok(e.HolderPid > 0 && d.holderPids().includes(e.HolderPid), 'info names the fd holder');
});

t.test('live restore: stop and start ten times; upgrade ten times', opts, async (t) => {
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
  checkWorkloads(t, mnts, reports);
  checkMounts(t, d, mnts);
  t.equal(info(t, d).Engine.Takeovers, 20, 'twenty takeovers');
  // Without --live-restore a stop unmounts as before, and the holder goes.
  await d.kill('SIGTERM');
  await d.restart(); // takes over once more (started with --live-restore)
});

t.test('holder killed too: start-up recovery mounts again', opts, async (t) => {
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
  t.equal(info(t, d).Engine.Takeovers, 0, 'nothing was taken over');
  const ps = () => ok(t, d.cli(['ps', '-a', '--format', 'json']), 'ps -a').trim().split('\n').map((l) => JSON.parse(l) as ContainerRow);
  t.same(ps().map((c) => c.Status), Array(CONTAINERS).fill('Mounted'), 'mounted afresh: neither taken over nor lost');
  // A mount that goes away without an unmount is lost, and ps says so.
  execFileSync('umount', ['-l', mnts[4]]);
  const deadline = Date.now() + 10_000;
  while (ps().find((c) => c.Mountpoint === '' && c.Status === 'Lost') === undefined && Date.now() < deadline) await delay(100);
  t.match(ok(t, d.cli(['ps', '-a']), 'ps -a'), /\bLost\b/, 'ps -a: the mount unmounted from outside is Lost');
});
