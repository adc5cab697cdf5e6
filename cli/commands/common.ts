// Shared plumbing for command handlers: the client, output, error reporting and exit codes.
import type { Argv, CommandModule, Options } from 'yargs';
import { Client, ConnectError, resolveSocket } from '../client';
import { UsageError } from '../format';
import { renderAll } from '../template';

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

/** A repeatable option's values (yargs gives a value, an array or nothing). */
export function optionList(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  return (Array.isArray(v) ? v : [v]).map(String);
}

/**
 * Options every listing takes. Declared as data, as the options of the commands cli/fast.ts runs
 * without yargs (the builder of such a command is an options object, which yargs also takes).
 */
export const LISTING_OPTIONS = {
  format: { type: 'string', default: 'table', describe: "table, json (one object per line), or a Go template: '{{.ID}}', 'table {{.ID}}\\t{{.Names}}'" },
  quiet: { alias: 'q', type: 'boolean', default: false, describe: 'Only show ids (or names)' },
} satisfies Record<string, Options>;

/**
 * A listing's output for its --format, or undefined for its default table: a template renders each
 * row's fields (docker's names: {{.ID}}, {{.Names}}), and `json` prints them one object per line, as
 * docker's `--format json` does (the same as '{{json .}}').
 */
export function formatted(argv: Args, rows: () => object[], headers: Record<string, string>): string | undefined {
  const f = argv.format === undefined ? 'table' : String(argv.format);
  if (f === 'table') return undefined;
  if (f === 'json') return rows().map((r) => JSON.stringify(r)).join('\n');
  return renderAll(f, rows(), headers);
}

/** inspect's -f/--format: a Go template over each object (default: all of them as a JSON array). */
export const INSPECT_OPTIONS = {
  format: { alias: 'f', type: 'string', describe: "Format the output using a Go template ('{{.Id}}', '{{json .Config}}')" },
} satisfies Record<string, Options>;

/** Fetch several objects for `inspect`, print the found ones as a JSON array (or through -f), report the rest. */
export async function inspectMany(targets: string[], get: (t: string) => Promise<unknown>, format?: unknown): Promise<void> {
  const found: unknown[] = [];
  await eachTarget(targets, async (t) => {
    found.push(await get(t));
  });
  if (format === undefined || format === 'json') return out(JSON.stringify(found, null, 2));
  out(renderAll(String(format), found, {}));
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
