// Test runner for `make test`: clears stale mounts, runs tap over dist/test/**/*.test.js with low
// parallelism in a controlled environment (test/lib/env.ts), measures coverage (V8's, reported by
// c8 against the .coverage-floor), and ends with exactly one summary line
// "N passed, N failed[, N skipped]".
// Counting unit: a case is a leaf subtest, a t.test with no t.test inside it (a file with none is
// one case). A subtest or file that fails without a failing case below it (a crash, a timeout, a
// failing assertion outside any leaf) counts as one more failure.
//
// Usage: node dist/test/run.js [substring-filter ...]
// Env:   STRATA_TEST_JOBS (default 2), STRATA_TEST_TIMEOUT (seconds per file, default 900),
//        STRATA_TEST_COVERAGE=0 (no coverage), and the knobs test/lib/env.ts passes on to the tests.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { Parser, Result } from 'tap-parser';
import { clearStaleMounts, repoRoot, strataProgram } from './lib/mount-union';
import { TEST_ROOT, testEnv, testKnobs } from './lib/env';
import { coverageCheck, type CoverageResult } from './lib/coverage';

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

interface Tally {
  passed: number;
  failed: number;
  skipped: number;
  failures: string[];
}

const subtestName = (s: string) => s.replace(/^Subtest: /, '');

/**
 * Counts the leaf subtests under parser `p` into `tally`; returns how many failures it counted.
 * A subtest's result arrives on its parent after its own child parser has ended.
 */
function countCases(p: Parser, where: string, tally: Tally): { failures: () => number } {
  let failuresBelow = 0;
  const pending: { name: string; hasChildren: () => boolean; failures: () => number }[] = [];
  p.on('child', (child: Parser) => {
    const name = subtestName(child.name);
    let grandChildren = 0;
    child.on('child', () => grandChildren++);
    const below = countCases(child, where ? `${where} > ${name}` : name, tally);
    pending.push({ name, hasChildren: () => grandChildren > 0, failures: below.failures });
  });
  p.on('assert', (r: Result) => {
    const i = pending.findIndex((c) => c.name === r.name);
    if (i < 0) return; // a plain assertion: its subtest's result carries it
    const c = pending.splice(i, 1)[0];
    const label = where ? `${where} > ${r.name}` : r.name;
    const bad = !r.ok && !r.skip && !r.todo;
    if (!c.hasChildren()) {
      if (r.skip || r.todo) tally.skipped++;
      else if (r.ok) tally.passed++;
      else {
        tally.failed++;
        failuresBelow++;
        tally.failures.push(label);
      }
    } else {
      failuresBelow += c.failures();
      if (bad && c.failures() === 0) {
        tally.failed++;
        failuresBelow++;
        tally.failures.push(`${label}: failed outside its cases (crash/timeout/plan) ${JSON.stringify(r.diag ?? {}).slice(0, 300)}`);
      }
    }
  });
  return { failures: () => failuresBelow };
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
  // V8 writes each process's coverage here (the daemons, CLIs and mount programs the tests start
  // too: test/lib/env.ts passes NODE_V8_COVERAGE on); every user may write (unprivileged CLIs).
  let coverageDir: string | undefined;
  if (process.env.STRATA_TEST_COVERAGE !== '0') {
    fs.mkdirSync(TEST_ROOT, { recursive: true, mode: 0o755 });
    // named <label>-<pid>-<hex> as workspaces are, so a concurrent run's stale sweep leaves it alone
    coverageDir = path.join(TEST_ROOT, `coverage-${process.pid}-${randomBytes(4).toString('hex')}`);
    fs.mkdirSync(coverageDir, { mode: 0o1777 });
    fs.chmodSync(coverageDir, 0o1777);
  }
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
  const tally: Tally = { passed: 0, failed: 0, skipped: 0, failures: [] };
  const parser = new Parser();
  countCases(parser, '', tally);

  const env = { ...testKnobs(), ...testEnv(coverageDir ? { NODE_V8_COVERAGE: coverageDir } : {}) };
  const started = Date.now();
  const proc = spawn(process.execPath, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'inherit'] });
  proc.stdout.on('data', (d: Buffer) => {
    process.stdout.write(d);
    parser.write(d);
  });
  proc.on('close', (code) => {
    parser.end();
    const seconds = Math.round((Date.now() - started) / 1000);
    if (tally.failures.length) {
      console.log('# failures:');
      for (const f of tally.failures) console.log(`#   ${f}`);
    }
    if (code !== 0 && tally.failed === 0) {
      tally.failed++;
      console.log(`# tap exited with ${code} without a counted failure`);
    }
    console.log(`# tests took ${seconds} s`);
    if (coverageDir !== undefined) {
      let cov: CoverageResult | undefined;
      try {
        cov = coverageCheck(root, coverageDir, filters.length === 0);
      } finally {
        if (!process.env.STRATA_KEEP_WORKSPACE) fs.rmSync(coverageDir, { recursive: true, force: true });
      }
      for (const line of cov.lines) console.log(`# ${line}`);
      if (cov.failure) {
        tally.failed++;
        console.log(`# ${cov.failure}`);
      }
    }
    console.log(`${tally.passed} passed, ${tally.failed} failed` + (tally.skipped ? `, ${tally.skipped} skipped` : ''));
    process.exit(tally.failed > 0 ? 1 : 0);
  });
}

main();
