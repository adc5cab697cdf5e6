// strata container create|mount|unmount|ls|inspect|diff|commit|rm|export  (+ shortcuts: ps, diff, commit, rm, export)
import * as path from 'node:path';
import type {
  ChangeEntry,
  CommitRequest,
  ContainerInspect,
  ContainerSummary,
  CreateRequest,
} from '../../daemon/model/types';
import { resolveSocket, seg } from '../client';
import { countedTransfer, runStreamed } from '../progress';
import { AtomicOutput } from '../files';
import { ago, humanDuration, humanSize, json, parseMount, shortId, shortPath, table, UsageError } from '../format';
import { action, clientFor, Cmd, eachTarget, formatted, inspectMany, INSPECT_OPTIONS, LISTING_OPTIONS, optionList, out } from './common';

const createCmd: Cmd = {
  command: 'create <image>',
  describe: 'Create a container (a writable layer on top of IMAGE)',
  builder: (y) =>
    y
      .option('name', { type: 'string', describe: 'Assign a name to the container' })
      .option('volume', { alias: 'v', type: 'string', nargs: 1, requiresArg: true, describe: 'Bind mount a volume (NAME:/path[:ro], /host:/path[:ro], /path)' })
      .option('mount', { type: 'string', nargs: 1, requiresArg: true, describe: 'Attach a mount (type=volume|bind,source=...,target=...[,readonly])' }),
  handler: action(async (argv) => {
    const req: CreateRequest = { image: String(argv.image) };
    if (argv.name !== undefined) req.name = String(argv.name);
    const volumes = optionList(argv.volume);
    if (volumes.length) req.volumes = volumes;
    const mounts = optionList(argv.mount).map(parseMount);
    if (mounts.length) req.mounts = mounts;
    const r = await clientFor(argv).post<{ id: string; warnings?: string[] }>('/containers/create', req);
    for (const w of r.warnings ?? []) process.stderr.write(`WARNING: ${w}\n`);
    out(r.id);
  }),
};

const mountCmd: Cmd = {
  command: 'mount <container>',
  describe: "Mount a container's root filesystem and print its path",
  builder: (y) => y.option('at', { type: 'string', describe: 'Mount at PATH instead of the default location' }),
  handler: action(async (argv) => {
    const body = argv.at !== undefined ? { at: path.resolve(String(argv.at)) } : {};
    const r = await clientFor(argv).post<{ mountpoint: string }>(`/containers/${seg(argv.container)}/mount`, body);
    out(r.mountpoint);
  }),
};

const unmountCmd: Cmd = {
  command: 'unmount <containers..>',
  aliases: ['umount'],
  describe: "Unmount containers' root filesystems",
  handler: action(async (argv) => {
    const c = clientFor(argv);
    await eachTarget(argv.containers, async (id) => {
      await c.post(`/containers/${seg(id)}/unmount`);
      out(id);
    });
  }),
};

export function containerRows(cs: ContainerSummary[], noTrunc = false, now = Date.now()): string[][] {
  return cs.map((c) => [
    noTrunc ? c.Id : shortId(c.Id),
    noTrunc ? c.Image : shortId(c.Image),
    ago(c.Created, now),
    containerStatus(c, now),
    noTrunc ? (c.Mountpoint ?? '') : shortPath(c.Mountpoint ?? ''),
    c.Name,
  ]);
}

/** docker's STATUS: "Up 3 minutes" while a process runs in it, "Exited (0) 2 minutes ago" after, else Mounted or Created. */
export function containerStatus(c: ContainerSummary, now = Date.now()): string {
  if (c.StartedAt && !c.FinishedAt) return `Up ${humanDuration(now - Date.parse(c.StartedAt))}`;
  if (c.State === 'mounted') return c.MountStatus === 'taken-over' ? 'Mounted (taken over)' : 'Mounted';
  if (c.MountStatus === 'lost') return 'Lost';
  if (c.FinishedAt) return `Exited (${c.ExitCode ?? 'unknown'}) ${ago(c.FinishedAt, now)}`;
  return 'Created';
}

/** A ps row's fields for --format (templates and json), by docker's names. */
export interface ContainerRow {
  ID: string;
  Image: string;
  CreatedAt: string;
  RunningFor: string;
  State: string;
  Status: string;
  Mountpoint: string;
  Names: string;
  Size: string;
}

export function containerFields(c: ContainerSummary, noTrunc = false, now = Date.now()): ContainerRow {
  return {
    ID: noTrunc ? c.Id : shortId(c.Id),
    Image: noTrunc ? c.Image : shortId(c.Image),
    CreatedAt: c.Created,
    RunningFor: ago(c.Created, now),
    State: c.State,
    Status: containerStatus(c, now),
    Mountpoint: c.Mountpoint ?? '',
    Names: c.Name,
    Size: humanSize(c.SizeRw),
  };
}
const CONTAINER_HEADERS = { ID: 'CONTAINER ID', Image: 'IMAGE', CreatedAt: 'CREATED AT', RunningFor: 'CREATED', Status: 'STATUS', Mountpoint: 'MOUNTPOINT', Names: 'NAMES', Size: 'SIZE', State: 'STATE' };

const lsCmd = (command: string, aliases: string[] = []): Cmd => ({
  command,
  aliases,
  describe: 'List containers (mounted only, unless --all)',
  builder: {
    ...LISTING_OPTIONS,
    all: { alias: 'a', type: 'boolean', default: false, describe: 'Show all containers' },
    'no-trunc': { type: 'boolean', default: false, describe: "Don't truncate output" },
  },
  handler: action(async (argv) => {
    const cs = await clientFor(argv).get<ContainerSummary[]>('/containers/json', { all: argv.all });
    const f = formatted(argv, () => cs.map((c) => containerFields(c, argv.noTrunc)), CONTAINER_HEADERS);
    if (f !== undefined) return out(f);
    if (argv.quiet) return out(cs.map((c) => (argv.noTrunc ? c.Id : shortId(c.Id))).join('\n'));
    out(table(['CONTAINER ID', 'IMAGE', 'CREATED', 'STATUS', 'MOUNTPOINT', 'NAMES'], containerRows(cs, argv.noTrunc)));
  }),
});

const inspectCmd: Cmd = {
  command: 'inspect <containers..>',
  describe: 'Display detailed information on one or more containers',
  builder: INSPECT_OPTIONS,
  handler: action(async (argv) => {
    const c = clientFor(argv);
    await inspectMany(argv.containers, (id) => c.get<ContainerInspect>(`/containers/${seg(id)}/json`), argv.format);
  }),
};

const diffCmd = (command: string): Cmd => ({
  command,
  describe: "Inspect changes to files or directories on a container's filesystem",
  builder: (y) => y.option('format', { type: 'string', choices: ['table', 'json'], default: 'table', describe: 'Output format' }),
  handler: action(async (argv) => {
    const changes = await clientFor(argv).get<ChangeEntry[]>(`/containers/${seg(argv.container)}/changes`);
    if (argv.format === 'json') return out(json(changes));
    out(changes.map((ch) => `${ch.Kind} ${ch.Path}`).join('\n'));
  }),
});

const commitCmd = (command: string): Cmd => ({
  command,
  describe: "Create a new image from a container's changes",
  builder: (y) =>
    y
      .option('message', { alias: 'm', type: 'string', describe: 'Commit message' })
      .option('author', { alias: 'a', type: 'string', describe: 'Author (e.g. "Jane Doe <jane@example.com>")' })
      .option('change', { alias: 'c', type: 'string', nargs: 1, requiresArg: true, describe: 'Instruction recorded as the history entry (CREATED BY)' }),
  handler: action(async (argv) => {
    const req: CommitRequest = {};
    if (argv.ref !== undefined) req.ref = String(argv.ref);
    if (argv.message !== undefined) req.comment = String(argv.message);
    if (argv.author !== undefined) req.author = String(argv.author);
    const changes = optionList(argv.change);
    if (changes.length) req.createdBy = changes.join('\n');
    // A progress stream (the bytes of the new layer, on a terminal) ending in the new image's id.
    const r = await runStreamed<{ id: string }>(resolveSocket(argv.socket), `/containers/${seg(argv.container)}/commit?progress=1`, { json: req });
    out(r.id);
  }),
});

const exportCmd = (command: string): Cmd => ({
  command,
  describe: "Export a container's root filesystem as a tar archive",
  builder: (y) =>
    y
      .positional('container', { type: 'string' })
      .option('output', { alias: 'o', type: 'string', requiresArg: true, describe: 'Write to FILE (default: standard output)' }),
  handler: action(async (argv) => {
    const output = argv.output === undefined ? '-' : String(argv.output);
    const url = `/containers/${seg(argv.container)}/export`;
    if (output === '-' && process.stdout.isTTY) throw new UsageError('refusing to write a tar archive to a terminal: use -o FILE or redirect the output');
    // The tar comes through the socket; the CLI writes it (a file: temp name, renamed when complete),
    // and shows the bytes received on a terminal (the total is not known before the end).
    const file = output === '-' ? undefined : new AtomicOutput(path.resolve(output));
    const bar = countedTransfer(String(argv.container), 'Exporting', null);
    let size: number;
    try {
      size = await clientFor(argv).download(url, file ? file.stream : process.stdout, (n) => bar.add(n));
      if (file) size = await file.commit();
    } catch (err) {
      bar.done(false);
      file?.abort();
      throw err;
    }
    bar.done();
    if (file) out(`Exported ${String(argv.container)} to ${file.file} (${humanSize(size)})`);
  }),
});

const rmCmd = (command: string, aliases: string[] = []): Cmd => ({
  command,
  aliases,
  describe: 'Remove one or more containers',
  builder: (y) => y.option('force', { alias: 'f', type: 'boolean', default: false, describe: 'Unmount first if mounted' }),
  handler: action(async (argv) => {
    const c = clientFor(argv);
    await eachTarget(argv.containers, async (id) => {
      await c.delete(`/containers/${seg(id)}`, { force: argv.force });
      out(id);
    });
  }),
});

const containerLs = lsCmd('ls', ['list', 'ps']);
const psShortcut = lsCmd('ps');

/** The commands cli/fast.ts runs without yargs, under their group's word ('' at the top level). */
export const containerDeclared: [string, Cmd][] = [['container', containerLs], ['container', inspectCmd], ['', psShortcut]];

export const containerCommand: Cmd = {
  command: 'container',
  describe: 'Manage containers',
  builder: (y) =>
    y
      .command(createCmd)
      .command(mountCmd)
      .command(unmountCmd)
      .command(containerLs)
      .command(inspectCmd)
      .command(diffCmd('diff <container>'))
      .command(commitCmd('commit <container> [ref]'))
      .command(rmCmd('rm <containers..>', ['remove']))
      .command(exportCmd('export <container>'))
      .demandCommand(1, 'container: missing subcommand'),
  handler: () => {},
};

/** Top-level shortcuts: strata ps | diff | commit | rm */
export const containerShortcuts: Cmd[] = [
  psShortcut,
  diffCmd('diff <container>'),
  commitCmd('commit <container> [ref]'),
  rmCmd('rm <containers..>'),
  exportCmd('export <container>'),
];
