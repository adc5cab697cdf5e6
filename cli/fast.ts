// The commonest commands (ps, images, history, volume ls, inspect, --version) without yargs: bin/strata
// runs this small bundle first and the whole CLI (main.ts) only for what it declines. Their options
// are declared as data in the command modules, which yargs reads for --help and errors; argv.ts parses
// them by hand from the same declarations, and runs the same handlers.
import { GLOBAL_OPTIONS, commandWords, parseDeclared } from './argv';
import type { Args, Cmd } from './commands/common';
import { packageVersion } from '../daemon/util/version';

/** The declared commands; their modules (and node:net under them) are loaded once a command line needs them. */
function declared(): [string, Cmd][] {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { containerDeclared } = require('./commands/containers') as typeof import('./commands/containers');
  const { imageDeclared } = require('./commands/images') as typeof import('./commands/images');
  const { volumeDeclared } = require('./commands/volumes') as typeof import('./commands/volumes');
  return [...containerDeclared, ...imageDeclared, ...volumeDeclared];
}

/** The command and its argv when `args` is one of the declared commands and surely parses; else undefined. */
export function match(args: string[]): { cmd: Cmd; argv: Args } | undefined {
  // Global options may come before the command words (strata --socket S ps).
  let i = 0;
  const globals: string[] = [];
  while (i < args.length && args[i].startsWith('--') && GLOBAL_OPTIONS[args[i].slice(2).split('=')[0]] !== undefined) {
    const n = args[i].includes('=') ? 1 : 2;
    globals.push(...args.slice(i, i + n));
    i += n;
  }
  for (const [group, cmd] of declared()) {
    const words = group ? [group] : [];
    if (group && args[i] !== group) continue;
    const sub = args[i + words.length];
    if (sub === undefined || !commandWords(cmd).includes(sub)) continue;
    const argv = parseDeclared(cmd, [...words, sub], [...globals, ...args.slice(i + words.length + 1)]);
    if (argv) return { cmd, argv };
  }
  return undefined;
}

/**
 * Run this process's command line if it is one of these commands, then exit (as main.ts's run does);
 * false when it is not, and nothing was done.
 */
export function run(args: string[] = process.argv.slice(2)): boolean {
  if (args.length === 1 && args[0] === '--version') {
    process.stdout.write(packageVersion() + '\n');
    return true;
  }
  if (process.env.STRATA_CLI_NO_FAST === '1') return false; // tests compare both paths' output
  const m = match(args);
  if (!m || typeof m.cmd.handler !== 'function') return false;
  Promise.resolve(m.cmd.handler(m.argv as Parameters<typeof m.cmd.handler>[0])).then(
    () => process.exit(process.exitCode ?? 0),
    (err: unknown) => {
      process.stderr.write(`Error: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
  return true;
}
