// Assertions on CLI runs shared by the end-to-end tests.
import type { Test } from 'tap';
import type { RunResult } from './exec';

/** The run exited 0; returns its trimmed stdout. */
export function ok(t: Test, r: RunResult, what: string): string {
  t.equal(r.status, 0, `${what} exits 0${r.status !== 0 ? `: ${r.stderr.trim()}` : ''}`);
  return r.stdout.trim();
}

/** The run failed with a stderr matching `re`. */
export function failsWith(t: Test, r: RunResult, re: RegExp, what: string): void {
  t.not(r.status, 0, `${what} fails`);
  t.match(r.stderr, re, `${what}: clear error (${r.stderr.trim().split('\n')[0]})`);
}
