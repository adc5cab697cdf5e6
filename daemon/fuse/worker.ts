// Worker-thread entry: serves one FUSE connection with a filesystem built from
// a module named by the spawner, so this folder knows nothing of what it serves.
import { parentPort, workerData } from 'node:worker_threads';
import { FuseSession } from './session';
import type { FuseFilesystem } from './filesystem';
import { createLogger } from '../log';

export interface WorkerInput {
  devFd: number;
  /** Absolute path of a module exporting `createFilesystem(config): FuseFilesystem`. */
  module: string;
  config: unknown;
  passthrough: boolean;
  posixAcl?: boolean;
  logLevel?: string;
  logFile?: string;
}

export type WorkerMessage =
  | { type: 'ready'; passthrough: boolean; minor: number }
  | { type: 'error'; message: string }
  | { type: 'exit' };

function main(): void {
  // Errors carry errnos to the kernel, not stacks to people: skip the costly stack capture.
  Error.stackTraceLimit = 0;
  const input = workerData as WorkerInput;
  const log = createLogger('strata-fuse', { level: input.logLevel, file: input.logFile });
  const post = (m: WorkerMessage) => parentPort?.postMessage(m);
  let fsys: FuseFilesystem;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require(input.module) as { createFilesystem(config: unknown, log: unknown): FuseFilesystem };
    fsys = mod.createFilesystem(input.config, log);
  } catch (err) {
    post({ type: 'error', message: (err as Error).message });
    return;
  }
  const session = new FuseSession(input.devFd, fsys, {
    passthrough: input.passthrough,
    posixAcl: input.posixAcl,
    onReady: (info) => post({ type: 'ready', ...info }),
    log: (level, msg, fields) => log[level](fields ?? {}, msg),
  });
  try {
    session.run();
  } catch (err) {
    log.error({ err: (err as Error).stack }, 'FUSE session ended with an error');
    post({ type: 'error', message: (err as Error).message });
  }
  post({ type: 'exit' });
}

main();
