// Running processes with runc, under strata's own runc state root.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as os from 'node:os';

/** runc --root: a private state directory, so strata's containers never mix with other runc users'. */
export function runcRoot(): string {
  return process.env.STRATA_RUNC_ROOT || '/run/strata/runc';
}

export function runcBinary(): string {
  return process.env.STRATA_RUNC || 'runc';
}

export interface RunOutcome {
  code: number;
  signal: string | null;
}

/** runc's private state dir; its parent (shared with the API socket) stays traversable. */
function ensureRuncRoot(): void {
  const root = runcRoot();
  fs.mkdirSync(path.dirname(root), { recursive: true, mode: 0o755 });
  fs.mkdirSync(root, { recursive: true, mode: 0o700 });
}

/**
 * `runc run --bundle B ID` in the foreground with stdin closed; stdout and stderr go
 * to `onOutput` as they come. Resolves with the process's exit code (128+n for a signal).
 * `abort` kills the container (the caller went away).
 */
export function runcRun(bundle: string, id: string, onOutput: (chunk: Buffer) => void, abort?: AbortSignal): Promise<RunOutcome> {
  ensureRuncRoot();
  return new Promise((resolve, reject) => {
    const child = spawn(runcBinary(), ['--root', runcRoot(), 'run', '--bundle', bundle, id], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', onOutput);
    child.stderr.on('data', onOutput);
    const onAbort = () => {
      runcKill(id);
      child.kill('SIGKILL');
    };
    abort?.addEventListener('abort', onAbort, { once: true });
    child.once('error', (err) => {
      abort?.removeEventListener('abort', onAbort);
      reject(err);
    });
    child.once('close', (code, signal) => {
      abort?.removeEventListener('abort', onAbort);
      resolve({ code: code ?? 128 + (signal ? (os.constants.signals[signal] ?? 9) : 9), signal });
    });
  });
}

/** Best effort: SIGKILL the container's processes. */
export function runcKill(id: string): void {
  spawnSync(runcBinary(), ['--root', runcRoot(), 'kill', '--all', id, 'KILL'], { stdio: 'ignore', timeout: 10_000 });
}

/** Best effort: forget a container (killing what is left of it). */
export function runcDelete(id: string): void {
  spawnSync(runcBinary(), ['--root', runcRoot(), 'delete', '--force', id], { stdio: 'ignore', timeout: 20_000 });
}

/** The runc state of a container: "running", "stopped", ... or undefined when runc does not know it. */
export function runcState(id: string): string | undefined {
  const r = spawnSync(runcBinary(), ['--root', runcRoot(), 'state', id], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) return undefined;
  try {
    return (JSON.parse(r.stdout) as { status?: string }).status;
  } catch {
    return undefined;
  }
}
