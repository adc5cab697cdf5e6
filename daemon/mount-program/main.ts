// strata-mount: a drop-in for fuse-overlayfs. The caller's process returns once
// the mount is live; a detached child serves it until it is unmounted. The caller only parses
// and waits: the serving modules (the engine, pino, the addon) load in the child alone, which
// spares every mount a second load of them.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import type { RunningMount } from '../mounts/union-mount';
import { packageVersion } from '../util/version';
import { parseMountArgs, USAGE, UsageError, type MountCommand } from './options';

const STATUS_FD = 3;

const SERVED = 'served (READ/WRITE answered by strata-mount: 1 MiB requests, page cache kept for unchanged files, reads spliced from the file, readahead answered on a second thread, writes cached by the kernel and written back in 1 MiB requests)';

/** What --version says about this environment: the data path and how mounts are made. */
async function environment(): Promise<string> {
  const { hasSysAdmin, privilegedHost } = await import('../fuse/mount');
  const passthrough = privilegedHost();
  const dataPath = passthrough ? 'passthrough (the kernel reads and writes large and written files itself)' : SERVED;
  const why = passthrough ? '' : ' - passthrough needs CAP_SYS_ADMIN in the initial user namespace';
  const via = hasSysAdmin() ? 'mount(2), fusermount3 where that is refused' : 'fusermount3';
  return `data path: ${dataPath}${why}\nmounts with: ${via}\n`;
}

function describe(m: RunningMount): Record<string, unknown> {
  return { mountpoint: m.mountpoint, dataPath: m.dataPath === 'passthrough' ? 'passthrough' : SERVED, via: m.via };
}

/** Serves the mount in this process; reports readiness to `report`. */
async function serve(cmd: MountCommand, report: (msg: string) => void): Promise<never> {
  const { resolveConfig } = await import('../union/config');
  const { mountIndexes } = await import('../layer-index/files');
  const { configureEngine, startUnionMount } = await import('../mounts/union-mount');
  const { createLogger } = await import('../log');
  const cfg = resolveConfig({ lowers: cmd.lowers, upper: cmd.upper, work: cmd.work, ...cmd.union });
  cfg.indexes = mountIndexes(cfg.lowers, cmd.indexDir);
  // The daemon's engine, with one thread: this process serves one mount.
  configureEngine({ threads: 1, logLevel: cmd.mount.logLevel, logFile: cmd.mount.logFile });
  const mount = await startUnionMount(cfg, cmd.mountpoint, cmd.mount);
  createLogger('strata-mount').info(describe(mount), 'mounted');
  const stop = () => {
    mount.unmount().catch(() => process.exit(1));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  report('ok');
  await mount.done;
  process.exit(0);
}

/** Starts a detached copy of this program and waits for its word on fd 3. */
function detach(argv: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [__filename, '--serve-detached', ...argv], {
      detached: true,
      stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
    });
    let said = '';
    const status = child.stdio[STATUS_FD] as NodeJS.ReadableStream;
    status.setEncoding('utf8');
    status.on('data', (d: string) => (said += d));
    status.on('end', () => {
      if (said.startsWith('ok')) {
        child.unref();
        resolve(0);
      } else {
        process.stderr.write(`strata-mount: ${said.trim() || 'the mount process exited without a mount'}\n`);
        resolve(1);
      }
    });
  });
}

async function main(): Promise<void> {
  let argv = process.argv.slice(2);
  if (argv.includes('--version') || argv.includes('-V')) {
    process.stdout.write(`strata-mount version ${packageVersion()}\nFUSE protocol 7.40\n${await environment()}`);
    return;
  }
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  const detachedChild = argv[0] === '--serve-detached';
  if (detachedChild) argv = argv.slice(1);
  let cmd: MountCommand;
  try {
    cmd = parseMountArgs(argv);
  } catch (err) {
    process.stderr.write(`strata-mount: ${(err as Error).message}\n${err instanceof UsageError ? USAGE + '\n' : ''}`);
    process.exit(2);
  }
  if (detachedChild) {
    const report = (msg: string) => {
      try {
        fs.writeSync(STATUS_FD, msg + '\n');
        fs.closeSync(STATUS_FD);
      } catch {
        // the caller went away; keep serving
      }
    };
    await serve(cmd, report).catch((err: Error) => {
      report(`error: ${err.message}`);
      process.exit(1);
    });
    return;
  }
  for (const w of cmd.warnings) process.stderr.write(`strata-mount: warning: ${w}\n`);
  // -d: debug logs (the data path, the mount method, requests per opcode at the end) on stderr.
  if (cmd.debug) process.env.STRATA_LOG_LEVEL ??= 'debug';
  if (cmd.foreground) {
    await serve(cmd, () => undefined).catch((err: Error) => {
      process.stderr.write(`strata-mount: ${err.message}\n`);
      process.exit(1);
    });
    return;
  }
  process.exit(await detach(argv));
}

void main();
