// scripts/failover-bench: takeover time after SIGKILL of stratad with the failover workload running
// (test/lib/failover.ts: five mounted containers, each with an fsyncing writer, a reader, and a
// process whose cwd and open file are inside). Kills stratad at random moments N times (default
// 50), restarting it each time, and prints the time from the kill to the mounts being served again
// (p50/p99/max), the part of it spent in stratad's start, the longest pause a workload saw, and the
// workload errors (target: p99 <= 1 s, 0 errors). Run through its wrapper, scripts/failover-bench.
import * as fs from 'node:fs';
import { daemonWithContainers, percentiles, startWorkloads, stopWorkloads, workloadProblems } from '../test/lib/failover';
import type { TestLike } from '../test/lib/workspace';
import type { Info } from '../daemon/model/types';

async function main(): Promise<void> {
  const i = process.argv.indexOf('--kills');
  const kills = i > 0 ? Number(process.argv[i + 1]) : 50;
  const teardowns: (() => unknown)[] = [];
  const t: TestLike = { teardown: (fn) => teardowns.push(fn), comment: (...a) => console.log('#', ...a) };
  let code = 0;
  try {
    const { d, mnts } = await daemonWithContainers(t, 'failover-bench');
    const w = await startWorkloads(t, mnts);
    const total: number[] = [];
    const inside: number[] = [];
    for (let k = 0; k < kills; k++) {
      await new Promise((r) => setTimeout(r, 300 + Math.random() * 1200));
      const killedAt = Date.now();
      await d.kill('SIGKILL');
      await d.restart();
      const last = (JSON.parse(d.cli(['info', '--format', 'json']).stdout) as Info).Engine.LastTakeover;
      total.push(last ? Date.parse(last.At) - killedAt : NaN);
      inside.push(last?.Ms ?? NaN);
      process.stdout.write(`\rkill ${k + 1}/${kills}: ${total[k]} ms   `);
    }
    process.stdout.write('\n');
    const reports = await stopWorkloads(w);
    const problems = reports.flatMap((r, n) => workloadProblems(mnts[n], r).map((p) => `workload ${n}: ${p}`));
    const a = percentiles(total);
    const b = percentiles(inside);
    console.log(`kills: ${kills}, load average ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
    console.log(`kill -> mounts served again: p50 ${a.p50} ms, p99 ${a.p99} ms, max ${a.max} ms`);
    console.log(`  of which stratad start -> takeover done: p50 ${b.p50} ms, p99 ${b.p99} ms, max ${b.max} ms`);
    console.log(`longest pause seen by a workload: ${Math.round(Math.max(...reports.map((r) => r.maxPauseMs)))} ms`);
    console.log(`lines fsynced: ${reports.reduce((s, r) => s + r.fsynced, 0)}; workload errors: ${problems.length}`);
    for (const p of problems) console.log(`  ${p}`);
    if (problems.length > 0) code = 1;
  } finally {
    for (const fn of teardowns.reverse()) await fn();
  }
  process.exit(code);
}

main().catch((err: Error) => {
  console.error(`failover-bench: ${err.stack ?? err.message}`);
  process.exit(1);
});
