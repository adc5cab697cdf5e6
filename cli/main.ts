// strata: the CLI for stratad. Parses the command line, calls the daemon's HTTP API, prints the answer.
import * as fs from 'node:fs';
import * as path from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { DEFAULT_SOCKET } from './client';
import { buildRunCommands } from './commands/build-run';
import { containerCommand, containerShortcuts } from './commands/containers';
import { imageCommand, imageShortcuts } from './commands/images';
import { registryCommands } from './commands/registry';
import { systemCommand, systemShortcuts } from './commands/system';
import { volumeCommand } from './commands/volumes';

function version(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export async function main(args: string[]): Promise<void> {
  let y = yargs(args)
    .scriptName('strata')
    .usage('Usage: $0 [--socket PATH] COMMAND\n\nA container storage engine (client for stratad)')
    .option('socket', {
      type: 'string',
      global: true,
      describe: `Daemon socket (default: $STRATA_SOCKET or ${DEFAULT_SOCKET})`,
    })
    .command(imageCommand)
    .command(containerCommand)
    .command(volumeCommand)
    .command(systemCommand);
  for (const c of [...imageShortcuts, ...containerShortcuts, ...systemShortcuts, ...buildRunCommands, ...registryCommands]) y = y.command(c);
  y = y
    .parserConfiguration({ 'boolean-negation': false })
    .demandCommand(1, 'missing command')
    .strict()
    .help()
    .alias('help', 'h')
    .version(version())
    .wrap(Math.min(110, process.stdout.columns || 100))
    .fail((msg, err) => {
      // Only parse/validation failures land here: handlers report their own errors (commands/common.ts).
      process.stderr.write(`Error: ${msg || err?.message || 'invalid usage'}\nSee 'strata --help'.\n`);
      process.exit(2);
    });
  await y.parseAsync();
}

if (require.main === module) {
  main(hideBin(process.argv)).then(
    // Done: nothing left to wait for (an upload from a FIFO still blocked in a read must not keep
    // the CLI alive). Writes to stdout/stderr are synchronous on Linux, so none is lost.
    () => process.exit(process.exitCode ?? 0),
    (err: unknown) => {
      process.stderr.write(`Error: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
