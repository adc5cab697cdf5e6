// The environment of every process the tests start: nothing of the machine's own (NODE_EXTRA_CA_CERTS,
// NODE_OPTIONS, proxies, STRATA_SOCKET, a locale...) reaches a daemon, a CLI call or a mount program.
// The runner (test/run.ts) gives the test files the same, plus the STRATA_* knobs meant for them.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Where every test workspace lives (workspace.ts); names are <label>-<pid>-<hex> so stale ones can be swept. */
export const TEST_ROOT = '/tmp/strata-test';

export const TEST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

let home: string | undefined;

/**
 * This process's HOME for what tests run (a CLI writing ~/.strata/config.json writes it here, not on
 * the machine): a directory under TEST_ROOT, removed when the process exits.
 */
export function processHome(): string {
  if (home !== undefined && fs.existsSync(home)) return home;
  fs.mkdirSync(TEST_ROOT, { recursive: true, mode: 0o755 });
  const dir = path.join(TEST_ROOT, `home-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
  fs.mkdirSync(dir, { mode: 0o755 });
  if (home === undefined) process.on('exit', () => home !== undefined && fs.rmSync(home, { recursive: true, force: true }));
  home = dir;
  return dir;
}

/** Passed on when set: where V8 writes coverage (make test's c8 report reads it). */
const PASSED_ON = ['NODE_V8_COVERAGE'];

/**
 * PATH, HOME (a workspace of this process) and LANG=C.UTF-8 (the C locale, with UTF-8 names shown as
 * they are: GNU tar escapes them under plain C), then `extra`. `coverage: false`
 * for programs whose coverage is not measured (the bundled CLI): V8 would write it for nothing.
 */
export function testEnv(extra: Record<string, string> = {}, opts: { coverage?: boolean } = {}): Record<string, string> {
  const env: Record<string, string> = { PATH: TEST_PATH, HOME: processHome(), LANG: 'C.UTF-8' };
  for (const k of opts.coverage === false ? [] : PASSED_ON) {
    const v = process.env[k];
    if (v !== undefined) env[k] = v;
  }
  return { ...env, ...extra };
}

/** The knobs of the test files themselves (README, test/run.ts), passed from the runner's environment to tap's. */
const TEST_KNOBS = [
  'STRATA_MOUNT_PROGRAM',
  'STRATA_SEED',
  'STRATA_RANDOM_OPS',
  'STRATA_RANDOM_CHECK_EVERY',
  'STRATA_SHRINK_BUDGET_MS',
  'STRATA_FUZZ_SEED',
  'STRATA_FUZZ_COUNT',
  'STRATA_KEEP_WORKSPACE',
  'STRATA_TEST_VERBOSE',
];

export function testKnobs(from: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of TEST_KNOBS) {
    const v = from[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}
