// Small process helpers used by the test harness.
import { spawn, spawnSync, SpawnSyncOptions } from 'node:child_process';
import { testEnv } from './env';

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Run a program synchronously; never throws on non-zero exit. */
export function run(cmd: string, args: string[], opts: SpawnSyncOptions & { input?: string | Buffer } = {}): RunResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, timeout: 120_000, ...opts });
  if (r.error) {
    return { status: 127, stdout: '', stderr: String(r.error) };
  }
  return {
    status: r.status ?? (r.signal ? 128 : 1),
    stdout: typeof r.stdout === 'string' ? r.stdout : (r.stdout?.toString() ?? ''),
    stderr: typeof r.stderr === 'string' ? r.stderr : (r.stderr?.toString() ?? ''),
  };
}

/** Run a program and throw with its stderr if it fails. */
export function runOk(cmd: string, args: string[], opts: SpawnSyncOptions & { input?: string | Buffer } = {}): string {
  const r = run(cmd, args, opts);
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr.trim()}`);
  }
  return r.stdout;
}

/** Unprivileged identity used for permission tests. */
export const TEST_UID = 1000;
export const TEST_GID = 1000;

export interface ShOptions {
  /** run as TEST_UID/TEST_GID (no supplementary groups) */
  asUser?: boolean | { uid: number; gid: number; groups?: number[] };
  env?: Record<string, string>;
  umask?: string;
}

/** Run a shell script with `sh -c` in directory `cwd`. */
export function sh(cwd: string, script: string, opts: ShOptions = {}): RunResult {
  const full = (opts.umask ? `umask ${opts.umask}; ` : '') + script;
  const env = testEnv({ LC_ALL: 'C', ...opts.env });
  if (opts.asUser) {
    const u = opts.asUser === true ? { uid: TEST_UID, gid: TEST_GID, groups: [] as number[] } : opts.asUser;
    const groups = u.groups && u.groups.length ? [`--groups=${u.groups.join(',')}`] : ['--clear-groups'];
    return run('setpriv', [`--reuid=${u.uid}`, `--regid=${u.gid}`, ...groups, '--', 'sh', '-c', full], { cwd, env });
  }
  return run('sh', ['-c', full], { cwd, env });
}

export function hasCommand(name: string): boolean {
  return run('sh', ['-c', `command -v ${name}`]).status === 0;
}

/** Run a program without blocking this process's event loop (servers in the test keep answering). */
export function runAsync(cmd: string, args: string[], opts: { input?: string; timeout?: number } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    p.stdin.on('error', () => undefined); // EPIPE: the program exited without reading its input
    p.stdin.end(opts.input ?? '');
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeout ?? 180_000);
    p.on('error', (err) => {
      clearTimeout(timer);
      resolve({ status: 127, stdout, stderr: stderr + String(err) });
    });
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ status: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
}
