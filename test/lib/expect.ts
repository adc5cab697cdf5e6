// Assertions on CLI runs shared by the daemon tests.
import type { Test } from 'tap';
import type { RunResult } from './exec';

/** Expect success; returns trimmed stdout. */
export function ok(t: Test, r: RunResult, what: string): string {
  t.equal(r.status, 0, `${what} exits 0${r.status !== 0 ? `: ${r.stderr.trim()}` : ''}`);
  return r.stdout.trim();
}

/** Expect exit 1 with one "Error: ..." line matching `re`. */
export function fails(t: Test, r: RunResult, re: RegExp, what: string): void {
  t.equal(r.status, 1, `${what} exits 1`);
  t.match(r.stderr, re, `${what}: message`);
  t.notMatch(r.stderr, /\n\s+at /, `${what}: no stack trace`);
}

/** A listing's `--format json` output: one JSON object per line, as docker prints lists. */
export function jsonLines<T>(text: string): T[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);
}
