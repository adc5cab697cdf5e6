// Test runner for `make test`: clears stale mounts, runs tap over dist/test/**/*.test.js with low
// parallelism and no coverage, and ends with exactly one summary line "N passed, N failed[, N skipped]".
// Counting unit: the top-level subtests of every test file (a file that crashes or times out
// without a failing subtest counts as one failure).
//
// Usage: node dist/test/run.js [substring-filter ...]
// Env:   STRATA_MOUNT_PROGRAM (program under test), STRATA_SEED (random-ops), STRATA_TEST_JOBS (default 2),
//        STRATA_TEST_TIMEOUT (seconds per file, default 900)
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { Parser, Result } from 'tap-parser';
import { clearStaleMounts, repoRoot, strataProgram } from './lib/mount-union';

function findTests(dir: string): string[] {
  const out: string[] = [];
  if (!fs.existsSync(dir)) return out;
  for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, ent.name);
    if (ent.isDirectory()) out.push(...findTests(p));
    else if (ent.isFile() && ent.name.endsWith('.test.js')) out.push(p);
  }
  return out.sort();
}

function main(): void {
  const root = repoRoot();
  const stale = clearStaleMounts();
  if (stale.unmounted.length) console.log(`# cleared ${stale.unmounted.length} stale mount(s): ${stale.unmounted.join(' ')}`);
  const filters = process.argv.slice(2);
  const files = findTests(path.join(root, 'dist', 'test'))
    .map((f) => path.relative(root, f))
    .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)));
  console.log(`# mount program under test: ${strataProgram()}`);
  if (files.length === 0) {
    console.log('0 passed, 1 failed');
    console.error('no test files found under dist/test (did tsc run?)');
    process.exit(1);
  }
  const jobs = process.env.STRATA_TEST_JOBS || '2';
  const timeout = process.env.STRATA_TEST_TIMEOUT || '900';
  const tapBin = path.join(root, 'node_modules', 'tap', 'dist', 'esm', 'run.mjs');
  const tapArgs = fs.existsSync(tapBin) ? [tapBin] : [path.join(root, 'node_modules', '.bin', 'tap')];
  const args = [
    ...tapArgs,
    'run',
    '--disable-coverage',
    '--allow-empty-coverage',
    '--no-color',
    '--reporter=tap',
    `--jobs=${jobs}`,
    `--timeout=${timeout}`,
    ...files,
  ];
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  const failures: string[] = [];
  const parser = new Parser();
  const fileResults: Result[] = [];
  // per file: [top-level subtests seen, failed]
  const childCounts = new Map<string, [number, number]>();
  parser.on('child', (child: Parser) => {
    const file = child.name.replace(/^Subtest: /, '');
    const c: [number, number] = [0, 0];
    childCounts.set(file, c);
    child.on('assert', (r: Result) => {
      c[0]++;
      if (r.skip || r.todo) skipped++;
      else if (r.ok) passed++;
      else {
        failed++;
        c[1]++;
        failures.push(`${file}: ${r.name}`);
      }
    });
  });
  parser.on('assert', (r: Result) => fileResults.push(r));

  const proc = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit']});
  proc.stdout.on('data', (d: Buffer) => {
    process.stdout.write(d);
    parser.write(d);
  });
  proc.on('close', (code) => {
    parser.end();
    for (const r of fileResults) {
      const [n, f] = childCounts.get(r.name) ?? [0, 0];
      if (!r.ok && !r.skip && !r.todo && f === 0) {
        failed++;
        failures.push(`${r.name}: file failed (crash/timeout/plan) ${JSON.stringify(r.diag ?? {}).slice(0, 300)}`);
      } else if (r.skip && n === 0) {
        skipped++;
      }
    }
    if (failures.length) {
      console.log('# failures:');
      for (const f of failures) console.log(`#   ${f}`);
    }
    if (code !== 0 && failed === 0) {
      failed++;
      console.log(`# tap exited with ${code} without a counted failure`);
    }
    console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ''));
    process.exit(failed > 0 ? 1 : 0);
  });
}

main();
