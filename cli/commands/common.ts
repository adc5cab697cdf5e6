// Shared plumbing for command handlers: the client, output, error reporting and exit codes.
import type { Argv, CommandModule } from 'yargs';
import { Client, ConnectError, resolveSocket } from '../client';
import { UsageError } from '../format';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Cmd = CommandModule<any, any>;

/** Parsed arguments as handlers see them (each command reads its own fields). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Args = { socket?: string; [k: string]: any };

export function clientFor(argv: Args): Client {
  return new Client(resolveSocket(argv.socket));
}

export function out(text: string): void {
  if (text !== '') process.stdout.write(text.endsWith('\n') ? text : text + '\n');
}

/** Report one error as a single "Error: ..." line and set the exit status (2 for usage, else 1). */
export function report(err: unknown): void {
  const msg = err instanceof Error ? err.message : String(err);
  process.stderr.write(`Error: ${msg.split('\n')[0]}\n`);
  const code = err instanceof UsageError ? 2 : 1;
  if (Number(process.exitCode ?? 0) < code) process.exitCode = code;
}

/** Wrap a handler: errors become one stderr line and exit status, never a stack trace. */
export function action(fn: (argv: Args) => Promise<void>): (argv: Args) => Promise<void> {
  return async (argv) => {
    try {
      await fn(argv);
    } catch (err) {
      report(err);
    }
  };
}

/**
 * Run `fn` for every target, continuing past failures like `docker rm a b`: each failure is reported,
 * a failure to reach the daemon stops the loop.
 */
export async function eachTarget(targets: string[], fn: (t: string) => Promise<void>): Promise<void> {
  for (const t of targets) {
    try {
      await fn(t);
    } catch (err) {
      if (err instanceof ConnectError) throw err;
      report(err);
    }
  }
}

/** Options every listing takes. */
export function listingOptions<T>(y: Argv<T>): Argv<T> {
  return y
    .option('format', { type: 'string', choices: ['table', 'json'], default: 'table', describe: 'Output format' })
    .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Only show ids (or names)' });
}

/** Fetch several objects for `inspect`, print the found ones as a JSON array, report the rest. */
export async function inspectMany(targets: string[], get: (t: string) => Promise<unknown>): Promise<void> {
  const found: unknown[] = [];
  await eachTarget(targets, async (t) => {
    found.push(await get(t));
  });
  out(JSON.stringify(found, null, 2));
}


/** What each positional argument name means, for the "Positionals:" section of --help. */
const POSITIONALS: Record<string, string> = {
  image: 'Image (NAME[:TAG] or id)',
  images: 'Images (NAME[:TAG] or id)',
  container: 'Container (name or id)',
  containers: 'Containers (names or ids)',
  command: 'Command and its arguments',
  name: 'Volume name',
  names: 'Volume names',
  source: 'Source',
  target: 'Target',
  ref: 'Reference',
  registry: 'Registry HOST[:PORT]',
  context: 'Build context directory',
};

/**
 * The command with every positional of its command string described in its --help (a command's own
 * description wins), and the same for its subcommands, whatever depth.
 */
export function withPositionals(c: Cmd): Cmd {
  if (typeof c.command !== 'string') return c;
  const names = [...c.command.matchAll(/[<[]([\w-]+)(?:\.\.)?[>\]]/g)].map((m) => m[1]);
  const own = c.builder;
  return {
    ...c,
    builder: ((y: Argv) => {
      const register = y.command.bind(y) as (m: Cmd) => Argv;
      (y as unknown as { command: (m: Cmd) => Argv }).command = (m: Cmd) => register(withPositionals(m));
      for (const n of names) y = y.positional(n, { type: 'string', describe: POSITIONALS[n] ?? n.toUpperCase() });
      if (typeof own === 'function') return own(y) ?? y;
      return own ? y.options(own) : y;
    }) as Cmd['builder'],
  };
}
