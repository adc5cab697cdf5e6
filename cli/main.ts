// strata: the CLI for stratad. Parses the command line, calls the daemon's HTTP API, prints the answer.
// Start-up time matters (bin/strata runs a bundle of this tree): what only some commands need (the
// archive code and native addon, node:os, node:crypto, node:readline) is required where it is used.
// The commonest commands are run without yargs by fast.ts (bin/strata tries it first).
import type { Argv, CommandModule } from 'yargs';
import { DEFAULT_SOCKET } from '../daemon/model/types';
import { packageVersion } from '../daemon/util/version';
import { GLOBAL_OPTIONS } from './argv';

/** Every command's definition; modules are loaded here, when a command line needs parsing. */
export function commands(): CommandModule[] {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { buildRunCommands } = require('./commands/build-run') as typeof import('./commands/build-run');
  const { containerCommand, containerShortcuts } = require('./commands/containers') as typeof import('./commands/containers');
  const { imageCommand, imageShortcuts } = require('./commands/images') as typeof import('./commands/images');
  const { registryCommands } = require('./commands/registry') as typeof import('./commands/registry');
  const { systemCommand, systemShortcuts } = require('./commands/system') as typeof import('./commands/system');
  const { volumeCommand } = require('./commands/volumes') as typeof import('./commands/volumes');
  const { withPositionals } = require('./commands/common') as typeof import('./commands/common');
  return [imageCommand, containerCommand, volumeCommand, systemCommand,
    ...imageShortcuts, ...containerShortcuts, ...systemShortcuts, ...buildRunCommands, ...registryCommands].map(withPositionals);
}

export async function main(args: string[]): Promise<void> {
  // `strata --version` needs no parser: answer before loading one.
  if (args.length === 1 && args[0] === '--version') {
    process.stdout.write(packageVersion() + '\n');
    return;
  }
  // Node's require of the ESM yargs gives the function itself, the bundle a namespace with it as default.
  const mod = require('yargs') as { default?: typeof import('yargs').default };
  const yargs = mod.default ?? (mod as unknown as typeof import('yargs').default);
  let y = yargs(args)
    .scriptName('strata')
    .usage('Usage: $0 [--socket PATH] COMMAND\n\nA container storage engine (client for stratad)')
    .option('socket', {
      ...GLOBAL_OPTIONS.socket,
      global: true,
      describe: `Daemon socket (default: $STRATA_SOCKET or ${DEFAULT_SOCKET})`,
    });
  for (const c of commands()) y = y.command(c);
  const parser = y;
  y = y
    // Shell completion from these same definitions: the script asks `strata --get-yargs-completions WORDS...`.
    .completion('__complete', false)
    .command({
      command: 'completion <shell>',
      describe: 'Print a shell completion script (bash): source <(strata completion bash)',
      builder: (z: Argv) => z.positional('shell', { type: 'string', choices: ['bash'], describe: 'Shell' }),
      handler: () => void parser.showCompletionScript(),
    } as CommandModule)
    .parserConfiguration({ 'boolean-negation': false })
    .demandCommand(1, 'missing command')
    .strict()
    .help()
    .alias('help', 'h')
    .version(packageVersion())
    .wrap(Math.min(110, process.stdout.columns || 100))
    .fail((msg, err) => {
      // Only parse/validation failures land here: handlers report their own errors (commands/common.ts).
      process.stderr.write(`Error: ${msg || err?.message || 'invalid usage'}\nSee 'strata --help'.\n`);
      process.exit(2);
    });
  await y.parseAsync();
}

/** Run the command line of this process, then exit. */
export function run(): void {
  main(process.argv.slice(2)).then(
    // Done: nothing left to wait for (an upload from a FIFO still blocked in a read must not keep
    // the CLI alive). Writes to stdout/stderr are synchronous on Linux, so none is lost.
    () => process.exit(process.exitCode ?? 0),
    (err: unknown) => {
      process.stderr.write(`Error: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}

if (require.main === module) run();
