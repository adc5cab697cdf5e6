// Coverage of a test run: V8's own (NODE_V8_COVERAGE, cheap), reported by c8 through the source
// maps onto the TypeScript files, and checked against the floor in .coverage-floor (line coverage
// in percent; it only goes up: raise it when the suite covers more).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';

export interface CoverageResult {
  /** Lines to print (the summary). */
  lines: string[];
  /** Set when the run must fail: coverage under the floor, or no report. */
  failure?: string;
}

interface Summary {
  total: Record<'lines' | 'statements' | 'functions' | 'branches', { pct: number; covered: number; total: number }>;
}

/** The code measured: the daemon, the CLI modules, the native-shims front (not the CLI bundle, not tests). */
const INCLUDE = ['dist/daemon/**', 'dist/cli/**', 'dist/native-shims/**'];
const EXCLUDE = ['dist/cli/strata.js'];

export function readFloor(root: string): number | undefined {
  try {
    const n = Number(fs.readFileSync(path.join(root, '.coverage-floor'), 'utf8').trim());
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

/** Reports the coverage in `dir`; `enforce` (a full run) checks it against the floor. */
export function coverageCheck(root: string, dir: string, enforce: boolean): CoverageResult {
  const reports = path.join(dir, 'report');
  const c8 = path.join(root, 'node_modules', 'c8', 'bin', 'c8.js');
  const args = [c8, 'report', '--temp-directory', dir, '--reports-dir', reports, '--reporter=json-summary', ...INCLUDE.flatMap((g) => ['--include', g]), ...EXCLUDE.flatMap((g) => ['--exclude', g])];
  const started = Date.now();
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20 });
  let summary: Summary;
  try {
    summary = JSON.parse(fs.readFileSync(path.join(reports, 'coverage-summary.json'), 'utf8')) as Summary;
  } catch {
    return { lines: [], failure: `coverage: c8 made no report (${(r.stderr || r.error?.message || `exit ${r.status}`).trim().slice(0, 300)})` };
  }
  const t = summary.total;
  const pct = (k: keyof Summary['total']) => `${k} ${t[k].pct}% (${t[k].covered}/${t[k].total})`;
  const lines = [`coverage: ${pct('lines')}, ${pct('branches')}, ${pct('functions')} (c8 report: ${Math.round((Date.now() - started) / 1000)} s)`];
  const floor = readFloor(root);
  if (floor === undefined) return { lines: [...lines, 'coverage: no .coverage-floor'] };
  lines.push(`coverage floor (.coverage-floor): lines ${floor}%${enforce ? '' : ' (checked on full runs only)'}`);
  if (enforce && t.lines.pct < floor) return { lines, failure: `coverage: lines ${t.lines.pct}% is under the floor of ${floor}%` };
  return { lines };
}
