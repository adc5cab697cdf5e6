// strata build | run | exec
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startFailureCode } from '../../daemon/runtime/exit-codes';
import type { BuildResult, ExecInfo, RunPrepareRequest, RunPrepareResponse } from '../../daemon/model/types-build-run';
import { resolveSocket, seg, withQuery } from '../client';
import { packDirectory } from '../files';
import { runStreamed, StreamError } from '../progress';
import { parseMount, UsageError } from '../format';
import { action, Args, clientFor, Cmd, optionList } from './common';

interface ArgSpec {
  bools: Record<string, string>; // flag spelling -> option name
  values: Record<string, string>;
}

const RUN_SPEC: ArgSpec = {
  bools: { '-h': 'help', '--help': 'help', '--rm': 'rm', '-i': 'interactive', '--interactive': 'interactive', '-t': 'tty', '--tty': 'tty' },
  values: {
    '--name': 'name',
    '-v': 'volume',
    '--volume': 'volume',
    '--mount': 'mount',
    '-e': 'env',
    '--env': 'env',
    '-w': 'workdir',
    '--workdir': 'workdir',
    '-u': 'user',
    '--user': 'user',
    '--network': 'network',
    '--net': 'network',
    '--entrypoint': 'entrypoint',
    '--hostname': 'hostname',
    '--socket': 'socket',
  },
};

const EXEC_SPEC: ArgSpec = {
  bools: { '-h': 'help', '--help': 'help', '-i': 'interactive', '--interactive': 'interactive', '-t': 'tty', '--tty': 'tty' },
  values: { '-e': 'env', '--env': 'env', '-w': 'workdir', '--workdir': 'workdir', '-u': 'user', '--user': 'user', '--socket': 'socket' },
};

/**
 * docker-style parsing of `run`/`exec` arguments: options up to the first non-option (the
 * image or container), everything after it is the command, untouched (`sh -c '...'`, `ls -h`).
 */
export function parseCommandArgs(raw: string[], spec: ArgSpec): { opts: Record<string, string[] | boolean>; positionals: string[] } {
  const opts: Record<string, string[] | boolean> = {};
  const add = (name: string, v: string) => {
    const cur = opts[name];
    opts[name] = Array.isArray(cur) ? [...cur, v] : [v];
  };
  let i = 0;
  for (; i < raw.length; i++) {
    const a = raw[i];
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('-') || a === '-') break;
    const eq = a.indexOf('=');
    const key = eq > 0 ? a.slice(0, eq) : a;
    if (spec.bools[key] !== undefined) {
      const v = eq > 0 ? a.slice(eq + 1) : 'true';
      if (!['true', 'false', '1', '0'].includes(v)) throw new UsageError(`invalid value "${v}" for ${key}`);
      opts[spec.bools[key]] = v === 'true' || v === '1';
      continue;
    }
    if (spec.values[key] !== undefined) {
      if (eq > 0) add(spec.values[key], a.slice(eq + 1));
      else {
        if (i + 1 >= raw.length) throw new UsageError(`flag needs an argument: ${key}`);
        add(spec.values[key], raw[++i]);
      }
      continue;
    }
    if (/^-[a-zA-Z]{2,}$/.test(a)) {
      // -it, or -eK=V style (a value option glued to its value)
      const first = `-${a[1]}`;
      if (spec.values[first] !== undefined) {
        add(spec.values[first], a.slice(2));
        continue;
      }
      const letters = a.slice(1).split('');
      if (letters.every((l) => spec.bools[`-${l}`] !== undefined)) {
        for (const l of letters) opts[spec.bools[`-${l}`]] = true;
        continue;
      }
    } else if (/^-[a-zA-Z].+/.test(a) && spec.values[a.slice(0, 2)] !== undefined) {
      add(spec.values[a.slice(0, 2)], a.slice(2));
      continue;
    }
    throw new UsageError(`unknown flag: ${a}`);
  }
  return { opts, positionals: raw.slice(i) };
}

/** The raw words yargs left after the command name (it stops at the first non-option). */
function rawAfter(argv: Args, name: string): string[] {
  const raw = (argv._ as unknown[]).map(String);
  if (raw[0] === name && raw[1] === name) return raw.slice(2);
  if (raw[0] === name) return raw.slice(1);
  return raw;
}

/** -e values: K=V as given, a bare K takes its value from this environment (dropped if unset). */
function envList(items: string[]): string[] {
  const out: string[] = [];
  for (const e of items) {
    if (e.includes('=')) out.push(e);
    else if (e !== '' && process.env[e] !== undefined) out.push(`${e}=${process.env[e]}`);
  }
  return out;
}

/** Runs a program with this terminal; resolves with its exit code (128+n for a signal). */
function runInherited(cmd: string, args: string[], stdin: boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [stdin ? 'inherit' : 'ignore', 'inherit', 'inherit'] });
    // The child gets the terminal's signals itself (runc forwards them to the container).
    const ignore = () => undefined;
    process.on('SIGINT', ignore);
    process.on('SIGTERM', ignore);
    process.on('SIGHUP', ignore);
    const done = () => {
      process.off('SIGINT', ignore);
      process.off('SIGTERM', ignore);
      process.off('SIGHUP', ignore);
    };
    child.once('error', (err) => {
      done();
      reject(err);
    });
    child.once('close', (code, signal) => {
      done();
      if (code !== null) resolve(code);
      else resolve(128 + (signal ? ((require('node:os') as typeof import('node:os')).constants.signals[signal] ?? 1) : 1));
    });
  });
}

/**
 * runc (args after its global options) with this terminal, its log in a file of ours: a command that
 * could not start exits 127 (not found) or 126 (not executable), as with Docker.
 */
async function runRunc(args: string[], stdin: boolean): Promise<number> {
  const os = require('node:os') as typeof import('node:os');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-runc-'));
  const log = path.join(dir, 'runc.log');
  try {
    const code = await runInherited(process.env.STRATA_RUNC || 'runc', ['--log', log, '--log-format', 'json', ...args], stdin);
    if (code === 0) return 0;
    let text = '';
    try {
      text = fs.readFileSync(log, 'utf8');
    } catch {
      // runc wrote no log
    }
    return startFailureCode(text) ?? code;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const buildCmd: Cmd = {
  command: 'build <context>',
  describe: 'Build an image from a Dockerfile',
  builder: (y) =>
    y
      .positional('context', { type: 'string', describe: 'Build context directory' })
      .option('tag', { alias: 't', type: 'string', nargs: 1, requiresArg: true, describe: 'Name and optionally a tag (name:tag); repeatable' })
      .option('file', { alias: 'f', type: 'string', requiresArg: true, describe: "Dockerfile (default: CONTEXT/Dockerfile)" })
      .option('no-cache', { type: 'boolean', default: false, describe: 'Do not use the build cache' })
      .option('build-arg', { type: 'string', nargs: 1, requiresArg: true, describe: 'Build-time variable K=V (a bare K takes its value from the environment)' })
      .option('network', { type: 'string', requiresArg: true, describe: 'Network for RUN steps: host, or none (default)' })
      .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Print only the image id' }),
  handler: action(async (argv) => {
    const context = path.resolve(String(argv.context));
    if (!fs.existsSync(context) || !fs.statSync(context).isDirectory()) throw new UsageError(`build context ${context} is not a directory`);
    const buildArgs: Record<string, string> = {};
    for (const a of optionList(argv['build-arg'])) {
      const eq = a.indexOf('=');
      if (eq === 0) throw new UsageError(`invalid --build-arg "${a}": expected K=V`);
      if (eq < 0) {
        if (process.env[a] !== undefined) buildArgs[a] = process.env[a]!;
      } else buildArgs[a.slice(0, eq)] = a.slice(eq + 1);
    }
    const dockerfile = path.resolve(argv.file !== undefined ? String(argv.file) : path.join(context, 'Dockerfile'));
    if (!fs.existsSync(dockerfile)) throw new Error(`cannot read Dockerfile ${dockerfile}: no such file`);
    let dockerfileRel = path.relative(context, dockerfile).split(path.sep).join('/');
    let extra: { name: string; data: Buffer; mode: number }[] = [];
    if (dockerfileRel.startsWith('../') || path.isAbsolute(dockerfileRel)) {
      // A Dockerfile from outside the context travels in the tar under a name of its own (as docker does).
      dockerfileRel = `.dockerfile.${(require('node:crypto') as typeof import('node:crypto')).randomBytes(10).toString('hex')}`;
      extra = [{ name: dockerfileRel, data: fs.readFileSync(dockerfile), mode: 0o644 }];
    }
    // The context goes to the daemon as a tar, read with the user's permissions, less what .dockerignore excludes.
    const { contextKeeper } = require('../../daemon/builder/context') as typeof import('../../daemon/builder/context');
    const body = packDirectory(context, contextKeeper(context, dockerfileRel), extra);
    const url = withQuery('/build', {
      t: optionList(argv.tag),
      dockerfile: dockerfileRel,
      dockerfileName: extra.length ? dockerfile : undefined,
      buildargs: JSON.stringify(buildArgs),
      nocache: argv['no-cache'] === true,
      network: argv.network !== undefined ? String(argv.network) : undefined,
    });
    const quiet = argv.quiet === true;
    let result: BuildResult;
    try {
      result = await runStreamed<BuildResult>(resolveSocket(argv.socket), url, { stream: body }, { quiet });
    } catch (err) {
      if (!(err instanceof StreamError)) throw err;
      process.stderr.write(`Error: ${err.message}\n`);
      process.exitCode = 1;
      return;
    }
    if (quiet) process.stdout.write(result.id + '\n');
  }),
};

function optionHelp<T>(y: import('yargs').Argv<T>, run: boolean) {
  // Only for --help: the arguments are parsed by parseCommandArgs (options stop at IMAGE/CONTAINER).
  let z = y
    .parserConfiguration({ 'halt-at-non-option': true })
    .option('interactive', { alias: 'i', type: 'boolean', describe: 'Keep STDIN open' })
    .option('tty', { alias: 't', type: 'boolean', describe: 'Allocate a pseudo-TTY' })
    .option('env', { alias: 'e', type: 'string', describe: 'Set an environment variable K=V (repeatable)' })
    .option('workdir', { alias: 'w', type: 'string', describe: 'Working directory inside the container' })
    .option('user', { alias: 'u', type: 'string', describe: run ? 'User (name|uid[:group|gid])' : 'User (uid[:gid])' });
  if (run) {
    z = z
      .option('rm', { type: 'boolean', describe: 'Remove the container when it exits' })
      .option('name', { type: 'string', describe: 'Assign a name to the container' })
      .option('volume', { alias: 'v', type: 'string', describe: 'Bind mount a volume (NAME:/path[:ro], /host:/path[:ro], /path)' })
      .option('mount', { type: 'string', describe: 'Attach a mount (type=volume|bind,source=...,target=...[,readonly])' })
      .option('network', { type: 'string', describe: 'host, or none (default: no network)' })
      .option('entrypoint', { type: 'string', describe: "Overwrite the image's ENTRYPOINT" })
      .option('hostname', { type: 'string', describe: 'Container host name' });
  }
  return z;
}

const str1 = (v: string[] | boolean | undefined): string | undefined => (Array.isArray(v) ? v[v.length - 1] : undefined);
const strs = (v: string[] | boolean | undefined): string[] => (Array.isArray(v) ? v : []);

/** The help of the command being run (yargs prints it; run and exec parse their own arguments). */
let showHelp: () => void = () => undefined;

const runCmd: Cmd = {
  command: 'run [image] [command..]',
  describe: 'Run a command in a new container',
  builder: (y) => {
    const z = optionHelp(y, true);
    showHelp = () => z.showHelp('log');
    return z;
  },
  handler: action(async (argv) => {
    const { opts, positionals } = parseCommandArgs(rawAfter(argv, 'run'), RUN_SPEC);
    if (opts.help === true) return showHelp();
    if (positionals.length === 0) throw new UsageError('"strata run" requires at least 1 argument: strata run [OPTIONS] IMAGE [COMMAND] [ARG...]');
    const client = clientFor({ ...argv, socket: str1(opts.socket) ?? argv.socket });
    const req: RunPrepareRequest = {
      image: positionals[0],
      cmd: positionals.slice(1),
      env: envList(strs(opts.env)),
      tty: opts.tty === true,
    };
    const name = str1(opts.name);
    if (name !== undefined) req.name = name;
    const volumes = strs(opts.volume);
    if (volumes.length) req.volumes = volumes;
    const mounts = strs(opts.mount).map(parseMount);
    if (mounts.length) req.mounts = mounts;
    req.workdir = str1(opts.workdir);
    req.user = str1(opts.user);
    req.network = str1(opts.network);
    req.entrypoint = str1(opts.entrypoint);
    req.hostname = str1(opts.hostname);
    if (req.tty && !process.stdin.isTTY) throw new UsageError('the input device is not a TTY: -t needs a terminal');
    const p = await client.post<RunPrepareResponse>('/run/prepare', req);
    let code = 125;
    try {
      code = await runRunc(['--root', p.runcRoot, 'run', '--bundle', p.bundle, p.runcId], opts.interactive === true || req.tty === true);
    } finally {
      await client.post(`/run/${seg(p.id)}/finish`, { remove: opts.rm === true, exitCode: code });
    }
    process.exitCode = code;
  }),
};

const execCmd: Cmd = {
  command: 'exec [container] [command..]',
  describe: 'Run a command in a running container',
  builder: (y) => {
    const z = optionHelp(y, false);
    showHelp = () => z.showHelp('log');
    return z;
  },
  handler: action(async (argv) => {
    const { opts, positionals } = parseCommandArgs(rawAfter(argv, 'exec'), EXEC_SPEC);
    if (opts.help === true) return showHelp();
    if (positionals.length < 2) throw new UsageError('"strata exec" requires at least 2 arguments: strata exec [OPTIONS] CONTAINER COMMAND [ARG...]');
    const client = clientFor({ ...argv, socket: str1(opts.socket) ?? argv.socket });
    const info = await client.get<ExecInfo>(`/containers/${seg(positionals[0])}/exec`);
    const args = ['--root', info.runcRoot, 'exec'];
    if (opts.tty === true) {
      if (!process.stdin.isTTY) throw new UsageError('the input device is not a TTY: -t needs a terminal');
      args.push('--tty');
    }
    for (const e of envList(strs(opts.env))) args.push('--env', e);
    const wd = str1(opts.workdir);
    if (wd !== undefined) args.push('--cwd', path.posix.resolve(info.cwd, wd));
    const u = str1(opts.user);
    if (u !== undefined) {
      if (!/^\d+(:\d+)?$/.test(u)) throw new UsageError(`exec -u takes a numeric uid[:gid], got "${u}"`);
      args.push('--user', u);
    }
    args.push(info.runcId, ...positionals.slice(1));
    process.exitCode = await runRunc(args, opts.interactive === true || opts.tty === true);
  }),
};

export const buildRunCommands: Cmd[] = [buildCmd, runCmd, execCmd];
