// strata image import|ls|history|inspect|tag|rm|save|load  (+ shortcuts: images, history, rmi, save, load)
import * as fs from 'node:fs';
import * as path from 'node:path';
import type {
  HistoryEntry,
  ImageDeleteResponse,
  ImageInspect,
  ImageSummary,
} from '../../daemon/model/types';
import type { LoadResponse, SaveResponse } from '../../daemon/model/types-image-io';
import { resolveSocket, seg, withQuery } from '../client';
import { AtomicOutput, openInput, packDirectory } from '../files';
import { countedTransfer, runStreamed } from '../progress';
import { ago, ellipsis, humanSize, json, shortId, splitRef, table, UsageError } from '../format';
import { action, clientFor, Cmd, eachTarget, formatted, inspectMany, INSPECT_OPTIONS, LISTING_OPTIONS, out } from './common';

const importCmd: Cmd = {
  command: 'import <source> <ref>',
  describe: 'Create an image from a rootfs (.tar, .tar.gz, a directory, or - for standard input)',
  builder: (y) =>
    y
      .positional('source', { type: 'string', describe: 'rootfs tarball, directory, or -' })
      .positional('ref', { type: 'string', describe: 'NAME[:TAG]' })
      .option('message', { alias: 'm', type: 'string', describe: 'Commit message of the imported layer' }),
  handler: action(async (argv) => {
    // The CLI reads the source (with the user's permissions) and streams it to the daemon.
    // yargs parses a lone "-" as an empty string: that is standard input.
    const source = argv.source === '' || argv.source === '-' ? '-' : String(argv.source);
    const st = source === '-' ? undefined : fs.statSync(source, { throwIfNoEntry: false });
    const body = st?.isDirectory() ? packDirectory(source) : openInput(source, 'import source');
    const message = argv.message !== undefined ? String(argv.message) : source === '-' ? '' : `Imported from ${path.basename(path.resolve(source))}`;
    // Bytes sent of bytes to send (a file's size; a directory's tar or stdin: unknown) on a terminal.
    const bar = countedTransfer(source === '-' ? 'stdin' : path.basename(source), 'Importing', st?.isFile() ? st.size : null);
    body.on('data', (c: Buffer) => bar.add(c.length));
    let r: { id: string };
    try {
      r = await clientFor(argv).upload<{ id: string }>(withQuery('/images/import', { ref: String(argv.ref), message }), body);
    } catch (err) {
      bar.done(false);
      throw err;
    }
    bar.done();
    out(r.id);
  }),
};

// The step lines (Saving layer ..., Loading layer ...) come from the daemon as the work goes
// (progress stream, cli/progress.ts); these are the summary lines printed from its final result.

/** Summary line of `image save`. */
export function saveLines(r: SaveResponse, output: string): string[] {
  return [`Saved ${r.refs.length ? r.refs.join(', ') : r.id} to ${output} (${r.format}, ${humanSize(r.size)})`];
}

/** Summary lines of `image load`: the names (or ids) loaded. */
export function loadLines(r: LoadResponse): string[] {
  const lines: string[] = [];
  for (const img of r.images) {
    if (img.refs.length) for (const ref of img.refs) lines.push(`Loaded image: ${ref}`);
    else lines.push(`Loaded image ID: ${img.id}`);
  }
  return lines;
}

const saveCmd: Cmd = {
  command: 'save <image>',
  describe: 'Save an image to an OCI layout (default) or docker-archive tar',
  builder: (y) =>
    y
      .positional('image', { type: 'string', describe: 'NAME[:TAG] or id' })
      .option('output', { alias: 'o', type: 'string', requiresArg: true, describe: 'Write to FILE (default: standard output)' })
      .option('format', { type: 'string', choices: ['oci-archive', 'docker-archive'], default: 'oci-archive', describe: 'Archive format' }),
  handler: action(async (argv) => {
    // The archive comes through the socket; the CLI writes it (temp file renamed when complete).
    const toStdout = argv.output === undefined || argv.output === '-';
    if (toStdout && process.stdout.isTTY) throw new UsageError('refusing to write an archive to a terminal: use -o FILE or redirect the output');
    const file = toStdout ? undefined : new AtomicOutput(path.resolve(String(argv.output)));
    const url = withQuery(`/images/${seg(argv.image)}/save`, { format: String(argv.format) });
    let r: SaveResponse;
    try {
      r = await runStreamed<SaveResponse>(resolveSocket(argv.socket), url, undefined, {
        onData: file ? (c) => file.write(c) : (c) => writeStdout(c),
        textTo: toStdout ? process.stderr : process.stdout,
      });
      if (file) await file.commit();
    } catch (err) {
      file?.abort();
      throw err;
    }
    for (const w of r.warnings ?? []) process.stderr.write(`WARNING: ${w}\n`);
    if (file) out(saveLines(r, file.file).join('\n'));
  }),
};

function writeStdout(c: Buffer): Promise<void> | void {
  if (!process.stdout.write(c)) return new Promise((r) => process.stdout.once('drain', () => r()));
}

const loadCmd: Cmd = {
  command: 'load',
  describe: 'Load images from an OCI layout or docker-archive tar (plain or gzip)',
  builder: (y) => y.option('input', { alias: 'i', type: 'string', requiresArg: true, describe: 'Read from FILE (default: standard input)' }),
  handler: action(async (argv) => {
    const input = openInput(argv.input === undefined ? '-' : String(argv.input), '');
    const r = await runStreamed<LoadResponse>(resolveSocket(argv.socket), '/images/load', { stream: input });
    for (const w of r.warnings ?? []) process.stderr.write(`WARNING: ${w}\n`);
    out(loadLines(r).join('\n'));
  }),
};

export function imageRows(images: ImageSummary[], noTrunc = false, now = Date.now()): string[][] {
  const rows: string[][] = [];
  for (const img of images) {
    const refs = img.RepoTags.length ? img.RepoTags.map(splitRef) : [['<none>', '<none>']];
    for (const [repo, tag] of refs) {
      rows.push([repo, tag, noTrunc ? img.Id : shortId(img.Id), ago(img.Created, now), humanSize(img.Size)]);
    }
  }
  return rows;
}

/** An images row's fields for --format (templates and json; one row per tag), by docker's names. */
export interface ImageRow {
  ID: string;
  Repository: string;
  Tag: string;
  CreatedAt: string;
  CreatedSince: string;
  Size: string;
}

function imageFields(images: ImageSummary[], noTrunc = false, now = Date.now()): ImageRow[] {
  return images.flatMap((img) =>
    (img.RepoTags.length ? img.RepoTags.map(splitRef) : [['<none>', '<none>']]).map(([repo, tag]) => ({
      ID: noTrunc ? img.Id : shortId(img.Id),
      Repository: repo,
      Tag: tag,
      CreatedAt: img.Created,
      CreatedSince: ago(img.Created, now),
      Size: humanSize(img.Size),
    })),
  );
}
const IMAGE_HEADERS = { ID: 'IMAGE ID', Repository: 'REPOSITORY', Tag: 'TAG', CreatedAt: 'CREATED AT', CreatedSince: 'CREATED', Size: 'SIZE' };
const HISTORY_HEADERS = { ID: 'IMAGE', CreatedAt: 'CREATED AT', CreatedSince: 'CREATED', CreatedBy: 'CREATED BY', Size: 'SIZE', Comment: 'COMMENT' };

const lsCmd = (command: string, aliases: string[] = []): Cmd => ({
  command,
  aliases,
  describe: 'List images',
  builder: { ...LISTING_OPTIONS, 'no-trunc': { type: 'boolean', default: false, describe: "Don't truncate ids" } },
  handler: action(async (argv) => {
    const images = await clientFor(argv).get<ImageSummary[]>('/images/json');
    const f = formatted(argv, () => imageFields(images, argv.noTrunc), IMAGE_HEADERS);
    if (f !== undefined) return out(f);
    if (argv.quiet) {
      const ids = images.map((i) => (argv.noTrunc ? i.Id : shortId(i.Id)));
      return out([...new Set(ids)].join('\n'));
    }
    out(table(['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE'], imageRows(images, argv.noTrunc)));
  }),
});

export function historyRows(entries: HistoryEntry[], noTrunc: boolean, now = Date.now()): string[][] {
  return entries.map((h) => [
    noTrunc ? h.Id : shortId(h.Id),
    ago(h.Created, now),
    noTrunc ? h.CreatedBy : ellipsis(h.CreatedBy, 45),
    humanSize(h.Size),
    h.Comment,
  ]);
}

const historyCmd = (command: string): Cmd => ({
  command,
  describe: 'Show the history of an image',
  builder: { ...LISTING_OPTIONS, 'no-trunc': { type: 'boolean', default: false, describe: "Don't truncate output" } },
  handler: action(async (argv) => {
    const entries = await clientFor(argv).get<HistoryEntry[]>(`/images/${seg(argv.image)}/history`);
    const f = formatted(argv, () => entries.map((h) => ({ ID: argv.noTrunc ? h.Id : shortId(h.Id), CreatedAt: h.Created, CreatedSince: ago(h.Created), CreatedBy: h.CreatedBy, Size: humanSize(h.Size), Comment: h.Comment })), HISTORY_HEADERS);
    if (f !== undefined) return out(f);
    if (argv.quiet) return out(entries.map((h) => (argv.noTrunc ? h.Id : shortId(h.Id))).join('\n'));
    out(table(['IMAGE', 'CREATED', 'CREATED BY', 'SIZE', 'COMMENT'], historyRows(entries, argv.noTrunc)));
  }),
});

const inspectCmd: Cmd = {
  command: 'inspect <images..>',
  describe: 'Display detailed information on one or more images',
  builder: INSPECT_OPTIONS,
  handler: action(async (argv) => {
    const c = clientFor(argv);
    await inspectMany(argv.images, (ref) => c.get<ImageInspect>(`/images/${seg(ref)}/json`), argv.format);
  }),
};

const tagCmd: Cmd = {
  command: 'tag <source> <target>',
  describe: 'Create a tag TARGET that refers to SOURCE',
  handler: action(async (argv) => {
    await clientFor(argv).post(`/images/${seg(argv.source)}/tag`, { ref: String(argv.target) });
  }),
};

const rmCmd = (command: string, aliases: string[] = []): Cmd => ({
  command,
  aliases,
  describe: 'Remove one or more images',
  builder: (y) => y.option('force', { alias: 'f', type: 'boolean', default: false, describe: 'Force removal' }),
  handler: action(async (argv) => {
    const c = clientFor(argv);
    await eachTarget(argv.images, async (ref) => {
      const r = await c.delete<ImageDeleteResponse>(`/images/${seg(ref)}`, { force: argv.force });
      const lines = [...(r.untagged ?? []).map((u) => `Untagged: ${u}`), ...(r.deleted ?? []).map((d) => `Deleted: ${d}`)];
      out(lines.join('\n'));
    });
  }),
});

const imageLs = lsCmd('ls', ['list']);
const imagesShortcut = lsCmd('images');
const imageHistory = historyCmd('history <image>');

/** The commands cli/fast.ts runs without yargs, under their group's word ('' at the top level). */
export const imageDeclared: [string, Cmd][] = [
  ['image', imageLs],
  ['image', inspectCmd],
  ['image', imageHistory],
  ['', imagesShortcut],
  ['', imageHistory],
];

export const imageCommand: Cmd = {
  command: 'image',
  describe: 'Manage images',
  builder: (y) =>
    y
      .command(importCmd)
      .command(imageLs)
      .command(imageHistory)
      .command(inspectCmd)
      .command(tagCmd)
      .command(rmCmd('rm <images..>', ['remove']))
      .command(saveCmd)
      .command(loadCmd)
      .demandCommand(1, 'image: missing subcommand'),
  handler: () => {},
};

/** Top-level shortcuts: strata images | history | rmi */
export const imageShortcuts: Cmd[] = [imagesShortcut, imageHistory, rmCmd('rmi <images..>'), saveCmd, loadCmd, tagCmd];
