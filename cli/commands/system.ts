// strata info, strata system info|df
import type { Info, SystemDf } from '../../daemon/model/types';
import { ago, humanSize, json, shortId, splitRef, table } from '../format';
import { action, clientFor, Cmd, out } from './common';

export function infoText(i: Info): string {
  return [
    `Storage Driver: ${i.driver}`,
    `Version: ${i.version}`,
    `Root Dir: ${i.rootDir}`,
    `Backing Filesystem: ${i.backingFilesystem}`,
    `Passthrough: ${i.passthrough ? 'on' : 'off'}`,
    `Images: ${i.images}`,
    `Layers: ${i.layers}`,
    `Containers: ${i.containers} (mounted ${i.containersMounted})`,
    `Volumes: ${i.volumes}`,
    `FUSE Engine: ${i.engine.threads} of ${i.engine.maxThreads} threads running, ${i.engine.mountsServed} mounts served`,
    `Live Restore: ${i.engine.liveRestore ? 'on' : 'off'}${i.engine.holderPid ? ` (fd holder pid ${i.engine.holderPid})` : ''}`,
    `Takeovers: ${i.engine.takeovers}${i.engine.lastTakeover ? ` (last ${i.engine.lastTakeover.at}, ${i.engine.lastTakeover.ms} ms, ${i.engine.lastTakeover.mounts} mounts)` : ''}`,
  ].join('\n');
}

const infoCmd = (command: string): Cmd => ({
  command,
  describe: 'Display system-wide information',
  builder: (y) => y.option('format', { type: 'string', choices: ['text', 'json'], default: 'text', describe: 'Output format' }),
  handler: action(async (argv) => {
    const info = await clientFor(argv).get<Info>('/info');
    out(argv.format === 'json' ? json(info) : infoText(info));
  }),
});

function withPct(reclaimable: number, total: number): string {
  return total > 0 ? `${humanSize(reclaimable)} (${Math.floor((reclaimable * 100) / total)}%)` : humanSize(reclaimable);
}

/** docker system df's summary table (same arithmetic as docker's formatter). */
export function dfSummary(df: SystemDf): string {
  const activeImages = df.images.filter((i) => i.containers > 0);
  const usedByImages = activeImages.reduce((s, i) => s + i.uniqueSize, 0);
  const imgReclaim = Math.max(0, df.layersSize - usedByImages);

  const isActive = (c: SystemDf['containers'][number]) => c.state === 'mounted';
  const cSize = df.containers.reduce((s, c) => s + c.size, 0);
  const cReclaim = df.containers.filter((c) => !isActive(c)).reduce((s, c) => s + c.size, 0);

  const vSize = df.volumes.reduce((s, v) => s + Math.max(0, v.size), 0);
  const vReclaim = df.volumes.filter((v) => v.links === 0).reduce((s, v) => s + Math.max(0, v.size), 0);

  return table(
    ['TYPE', 'TOTAL', 'ACTIVE', 'SIZE', 'RECLAIMABLE'],
    [
      ['Images', String(df.images.length), String(activeImages.length), humanSize(df.layersSize), withPct(imgReclaim, df.layersSize)],
      ['Containers', String(df.containers.length), String(df.containers.filter(isActive).length), humanSize(cSize), withPct(cReclaim, cSize)],
      ['Local Volumes', String(df.volumes.length), String(df.volumes.filter((v) => v.links > 0).length), humanSize(vSize), withPct(vReclaim, vSize)],
      // Nothing is in use between builds: every cache layer is reclaimable.
      ['Build Cache', String(df.buildCacheCount ?? 0), '0', humanSize(df.buildCacheSize), humanSize(df.buildCacheSize)],
    ],
  );
}

/** docker system df -v: per-image, per-container and per-volume tables. */
export function dfVerbose(df: SystemDf, now = Date.now()): string {
  const imgRows: string[][] = [];
  for (const i of df.images) {
    const refs = i.repoTags.length ? i.repoTags.map(splitRef) : [['<none>', '<none>']];
    for (const [repo, tag] of refs) {
      imgRows.push([
        repo,
        tag,
        shortId(i.id),
        ago(i.created, now),
        humanSize(i.size),
        humanSize(i.sharedSize),
        humanSize(i.uniqueSize),
        String(i.containers),
      ]);
    }
  }
  const cRows = df.containers.map((c) => [
    shortId(c.id),
    shortId(c.image),
    humanSize(c.size),
    ago(c.created, now),
    c.state === 'mounted' ? 'Mounted' : 'Created',
    c.name,
  ]);
  const vRows = df.volumes.map((v) => [v.name, String(v.links), v.size < 0 ? 'N/A' : humanSize(v.size)]);
  return [
    'Images space usage:',
    '',
    table(['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE', 'SHARED SIZE', 'UNIQUE SIZE', 'CONTAINERS'], imgRows),
    '',
    'Containers space usage:',
    '',
    table(['CONTAINER ID', 'IMAGE', 'SIZE', 'CREATED', 'STATUS', 'NAMES'], cRows),
    '',
    'Local Volumes space usage:',
    '',
    table(['VOLUME NAME', 'LINKS', 'SIZE'], vRows),
    '',
    `Build cache usage: ${humanSize(df.buildCacheSize)}`,
  ].join('\n');
}

const dfCmd: Cmd = {
  command: 'df',
  describe: 'Show disk usage',
  builder: (y) =>
    y
      .option('verbose', { alias: 'v', type: 'boolean', default: false, describe: 'Show detailed information on space usage' })
      .option('format', { type: 'string', choices: ['table', 'json'], default: 'table', describe: 'Output format' }),
  handler: action(async (argv) => {
    const df = await clientFor(argv).get<SystemDf>('/system/df');
    if (argv.format === 'json') return out(json(df));
    out(argv.verbose ? dfVerbose(df) : dfSummary(df));
  }),
};

export const systemCommand: Cmd = {
  command: 'system',
  describe: 'Manage strata',
  builder: (y) => y.command(dfCmd).command(infoCmd('info')).demandCommand(1, 'system: missing subcommand'),
  handler: () => {},
};

export const systemShortcuts: Cmd[] = [infoCmd('info')];
