// A real stratad on a temporary root and socket, and the real strata CLI pointed at it.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { run, runAsync, type RunResult, type ShOptions, TEST_GID, TEST_UID } from './exec';
import { repoRoot } from './mount-union';
import { unmountUnder } from './mount-table';
import { makeWorkspace, type TestLike } from './workspace';
import { testEnv } from './env';

export interface CliOptions {
  input?: string;
  /** run the CLI as TEST_UID/TEST_GID (setpriv, no supplementary groups) */
  asUser?: ShOptions['asUser'];
  env?: Record<string, string>;
  timeout?: number;
  /** omit --socket (to test $STRATA_SOCKET and the default) */
  noSocket?: boolean;
  /** working directory of the CLI (synchronous calls) */
  cwd?: string;
}

export interface Daemon {
  /** the workspace holding root, socket and log */
  ws: string;
  root: string;
  socket: string;
  /** file receiving the daemon's stdout and stderr (appended across restarts) */
  logFile: string;
  /** pid of the running daemon (node itself: bin/stratad execs) */
  readonly pid: number;
  readonly running: boolean;
  /** `bin/strata --socket S ...args`, synchronously; never throws */
  cli(args: string[], opts?: CliOptions): RunResult;
  /** the same, asynchronously (for concurrent calls) */
  cliAsync(args: string[], opts?: CliOptions): Promise<RunResult>;
  /** send `signal` and wait for the process to exit; resolves to its exit code (null when killed by a signal) */
  kill(signal?: NodeJS.Signals, waitMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** stop (SIGTERM, then SIGKILL) if running, then start again on the same root and socket */
  restart(): Promise<void>;
  /** start a new stratad with --upgrade while this one runs: it takes the root and the mounts over, the old one exits */
  upgrade(): Promise<void>;
  /** pids of the fd holders kept for this root (strata-holder processes) */
  holderPids(): number[];
  /** the log so far */
  log(): string;
}

export const STRATAD = (): string => path.join(repoRoot(), 'bin', 'stratad');
export const STRATA = (): string => path.join(repoRoot(), 'bin', 'strata');


/** Daemons of this process still running: SIGKILLed if the test process exits without its teardowns. */
const liveDaemons = new Set<ChildProcess>();
/** Roots of the daemons of this process (their fd holders are killed at exit). */
const liveRoots = new Set<string>();
let exitHooked = false;
function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', () => {
    // A daemon with --live-restore leaves its mounts to the holder: end them with it.
    for (const root of liveRoots) {
      for (const pid of holderPids(root)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    for (const p of liveDaemons) {
      try {
        p.kill('SIGKILL');
      } catch {
        // gone
      }
    }
  });
}

/** GET /_ping over the socket; true on "OK". */
export function ping(socket: string, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.request({ socketPath: socket, path: '/_ping', method: 'GET', timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(res.statusCode === 200 && body === 'OK'));
      res.on('error', () => resolve(false));
    });
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.on('error', () => resolve(false));
    req.end();
  });
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Commands run through `env -i` with a clean environment: tap's processinfo hooks every spawn and injects
 * NODE_OPTIONS (its loader) into node children, which slows every CLI call and makes an unprivileged
 * CLI fail at exit writing tap's process info; `env -i` strips it before node starts.
 */
export function cleanEnv(cmd: string[], extra: Record<string, string> = {}, coverage = true): [string, string[]] {
  const vars = Object.entries(testEnv({ LC_ALL: 'C', ...extra }, { coverage })).map(([k, v]) => `${k}=${v}`);
  return ['env', ['-i', ...vars, ...cmd]];
}

function cliCommand(d: { socket: string }, args: string[], opts: CliOptions): [string, string[]] {
  const full = [STRATA(), ...(opts.noSocket ? [] : ['--socket', d.socket]), ...args];
  if (opts.asUser) {
    const u = opts.asUser === true ? { uid: TEST_UID, gid: TEST_GID, groups: [] as number[] } : opts.asUser;
    const groups = u.groups && u.groups.length ? [`--groups=${u.groups.join(',')}`] : ['--clear-groups'];
    return cleanEnv(['setpriv', `--reuid=${u.uid}`, `--regid=${u.gid}`, ...groups, '--', ...full], opts.env, false);
  }
  return cleanEnv(full, opts.env, false);
}

/** Processes running the fd holder (strata-holder) for `root`'s holder socket. */
export function holderPids(root: string): number[] {
  const sock = path.join(root, 'holder.sock');
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (path.basename(argv[0]) === 'strata-holder' && argv.includes(sock)) out.push(Number(e));
    } catch {
      // gone
    }
  }
  return out;
}

/**
 * Start `bin/stratad --root R --socket S --log-level warn` in a fresh workspace (/tmp/strata-test/<label>-...)
 * and wait until /_ping answers. Teardown: SIGTERM, SIGKILL after 10 s, then lazily unmount anything left.
 */
export async function startDaemon(
  t: TestLike,
  opts: {
    label?: string;
    extraArgs?: string[];
    logLevel?: string;
    /** storage root (default WS/root) */
    root?: string;
    /** run under this umask (octal text) */
    umask?: string;
    /** extra environment of the daemon */
    env?: Record<string, string>;
  } = {},
): Promise<Daemon> {
  hookExit();
  const ws = makeWorkspace(t, opts.label ?? 'daemon');
  const root = opts.root ?? path.join(ws, 'root');
  const socket = path.join(ws, 'strata.sock');
  const logFile = path.join(ws, 'stratad.log');
  let proc: ChildProcess | null = null;
  let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> = Promise.resolve({ code: null, signal: null });
  let isRunning = false;

  liveRoots.add(root);
  const start = async (more: string[] = [], before?: Promise<unknown>): Promise<void> => {
    const fd = fs.openSync(logFile, 'a');
    // env -i and sh both exec: the pid is the daemon's
    const daemonCmd = [STRATAD(), '--root', root, '--socket', socket, '--log-level', opts.logLevel ?? 'warn', ...(opts.extraArgs ?? []), ...more];
    const [cmd, argv] = cleanEnv(opts.umask !== undefined ? ['sh', '-c', `umask ${opts.umask} && exec "$@"`, 'sh', ...daemonCmd] : daemonCmd, opts.env);
    const p = spawn(cmd, argv, { stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    proc = p;
    isRunning = true;
    liveDaemons.add(p);
    exited = new Promise((resolve) => {
      p.once('exit', (code, signal) => {
        if (proc === p) isRunning = false;
        liveDaemons.delete(p);
        resolve({ code, signal });
      });
    });
    await before; // an upgrade: the old daemon answers until it has handed over
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (!isRunning) throw new Error(`stratad exited during start-up: ${fs.readFileSync(logFile, 'utf8').trim()}`);
      if (await ping(socket, 1000)) return;
      await delay(25);
    }
    throw new Error(`stratad did not answer /_ping on ${socket} within 20 s: ${fs.readFileSync(logFile, 'utf8').trim()}`);
  };

  const kill = async (signal: NodeJS.Signals = 'SIGTERM', waitMs = 15_000) => {
    if (!isRunning || proc === null) return exited;
    proc.kill(signal);
    const timeout = delay(waitMs).then(() => 'timeout' as const);
    const r = await Promise.race([exited, timeout]);
    if (r === 'timeout') {
      proc.kill('SIGKILL');
      await exited;
      throw new Error(`stratad did not exit within ${waitMs} ms of ${signal}; killed`);
    }
    return r;
  };

  const d: Daemon = {
    ws,
    root,
    socket,
    logFile,
    get pid() {
      return proc?.pid ?? -1;
    },
    get running() {
      return isRunning;
    },
    cli(args, o = {}) {
      const [cmd, argv] = cliCommand(d, args, o);
      return run(cmd, argv, { timeout: o.timeout ?? 60_000, input: o.input ?? '', cwd: o.cwd });
    },
    cliAsync(args, o = {}) {
      const [cmd, argv] = cliCommand(d, args, o);
      return runAsync(cmd, argv, { input: o.input, timeout: o.timeout ?? 60_000 });
    },
    kill: (signal, waitMs) => kill(signal, waitMs),
    async restart() {
      if (isRunning) {
        try {
          await kill('SIGTERM', 10_000);
        } catch {
          // killed with SIGKILL
        }
      }
      await start();
    },
    async upgrade() {
      const old = exited;
      await start(['--upgrade'], old);
    },
    holderPids: () => holderPids(root),
    log: () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : ''),
  };

  t.teardown(async () => {
    try {
      if (isRunning) {
        try {
          await kill('SIGTERM', 10_000);
        } catch (e) {
          console.error(`# ${String(e)}`);
        }
      }
      // A daemon with --live-restore leaves its mounts to the holder: end them with it.
      for (const pid of holderPids(root)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      unmountUnder(root, true);
    } catch (e) {
      console.error(`# daemon teardown failed: ${String(e)}`);
    }
  });
  await start();
  return d;
}
