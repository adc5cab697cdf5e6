// strata volume create|ls|inspect|rm|prune
import type { Volume, VolumeCreateRequest } from '../../daemon/model/types';
import { seg } from '../client';
import { humanSize, json, parseKeyValues, table } from '../format';
import { action, clientFor, Cmd, eachTarget, formatted, inspectMany, INSPECT_OPTIONS, LISTING_OPTIONS, optionList, out } from './common';

const createCmd: Cmd = {
  command: 'create [name]',
  describe: 'Create a volume',
  builder: (y) =>
    y
      .option('label', { type: 'string', nargs: 1, requiresArg: true, describe: 'Set metadata (key=value)' })
      .option('opt', { alias: 'o', type: 'string', nargs: 1, requiresArg: true, describe: 'Set driver options (key=value)' }),
  handler: action(async (argv) => {
    const req: VolumeCreateRequest = {};
    if (argv.name !== undefined) req.name = String(argv.name);
    const labels = optionList(argv.label);
    if (labels.length) req.labels = parseKeyValues('label', labels);
    const opts = optionList(argv.opt);
    if (opts.length) req.options = parseKeyValues('opt', opts);
    const v = await clientFor(argv).post<Volume>('/volumes/create', req);
    out(v.Name);
  }),
};

/** A volume ls row's fields for --format (templates and json), by docker's names; Links: containers using it. */
export interface VolumeListRow {
  Driver: string;
  Name: string;
  Mountpoint: string;
  Labels: Record<string, string>;
  Scope: string;
  Links: number;
  Anonymous: boolean;
}

function volumeFields(v: Volume): VolumeListRow {
  return { Driver: v.Driver, Name: v.Name, Mountpoint: v.Mountpoint, Labels: v.Labels, Scope: v.Scope, Links: v.UsedBy.length, Anonymous: v.Anonymous };
}

const lsCmd: Cmd = {
  command: 'ls',
  aliases: ['list'],
  describe: 'List volumes',
  builder: LISTING_OPTIONS,
  handler: action(async (argv) => {
    const r = await clientFor(argv).get<{ volumes: Volume[] }>('/volumes');
    const vols = r.volumes ?? [];
    const f = formatted(argv, () => vols.map(volumeFields), { Name: 'VOLUME NAME' });
    if (f !== undefined) return out(f);
    if (argv.quiet) return out(vols.map((v) => v.Name).join('\n'));
    out(table(['DRIVER', 'VOLUME NAME'], vols.map((v) => [v.Driver, v.Name])));
  }),
};

const inspectCmd: Cmd = {
  command: 'inspect <names..>',
  describe: 'Display detailed information on one or more volumes',
  builder: INSPECT_OPTIONS,
  handler: action(async (argv) => {
    const c = clientFor(argv);
    await inspectMany(argv.names, (n) => c.get<Volume>(`/volumes/${seg(n)}`), argv.format);
  }),
};

const rmCmd: Cmd = {
  command: 'rm <names..>',
  aliases: ['remove'],
  describe: 'Remove one or more volumes',
  builder: (y) => y.option('force', { alias: 'f', type: 'boolean', default: false, describe: 'Force the removal' }),
  handler: action(async (argv) => {
    const c = clientFor(argv);
    await eachTarget(argv.names, async (n) => {
      await c.delete(`/volumes/${seg(n)}`, { force: argv.force });
      out(n);
    });
  }),
};

function confirm(question: string): Promise<boolean> {
  return new Promise((resolve) => {
    const readline = require('node:readline') as typeof import('node:readline');
    const rl = readline.createInterface({ input: process.stdin, output: process.stdout });
    let answered = false;
    rl.question(question, (a) => {
      answered = true;
      rl.close();
      resolve(/^y(es)?$/i.test(a.trim()));
    });
    rl.on('close', () => {
      if (!answered) resolve(false);
    });
  });
}

export function pruneReport(deleted: string[], spaceReclaimed: number): string {
  const lines: string[] = [];
  if (deleted.length) lines.push('Deleted Volumes:', ...deleted, '');
  lines.push(`Total reclaimed space: ${humanSize(spaceReclaimed)}`);
  return lines.join('\n');
}

const pruneCmd: Cmd = {
  command: 'prune',
  describe: 'Remove unused local volumes',
  builder: (y) =>
    y
      .option('all', { alias: 'a', type: 'boolean', default: false, describe: 'Remove all unused volumes, not just anonymous ones' })
      .option('force', { alias: 'f', type: 'boolean', default: false, describe: 'Do not prompt for confirmation' }),
  handler: action(async (argv) => {
    if (!argv.force && !process.stdin.isTTY) {
      // No one to ask: say so rather than read a "no" from a pipe or /dev/null and print nothing.
      process.stderr.write('Nothing removed: volume prune asks for confirmation and stdin is not a terminal; use -f to prune without asking.\n');
      process.exitCode = 1;
      return;
    }
    if (!argv.force) {
      const what = argv.all ? 'all local volumes' : 'anonymous local volumes';
      const ok = await confirm(
        `WARNING! This will remove ${what} not used by at least one container.\nAre you sure you want to continue? [y/N] `,
      );
      if (!ok) return;
    }
    const r = await clientFor(argv).post<{ deleted: string[]; spaceReclaimed: number }>('/volumes/prune', {}, { all: argv.all });
    out(pruneReport(r.deleted ?? [], r.spaceReclaimed ?? 0));
  }),
};

/** The commands cli/fast.ts runs without yargs, under their group's word. */
export const volumeDeclared: [string, Cmd][] = [['volume', lsCmd], ['volume', inspectCmd]];

export const volumeCommand: Cmd = {
  command: 'volume',
  describe: 'Manage volumes',
  builder: (y) =>
    y
      .command(createCmd)
      .command(lsCmd)
      .command(inspectCmd)
      .command(rmCmd)
      .command(pruneCmd)
      .demandCommand(1, 'volume: missing subcommand'),
  handler: () => {},
};
