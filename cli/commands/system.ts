// strata info, strata system info|df
import type { Info, SystemDf } from '../../daemon/model/types';
import { ago, humanSize, json, shortId, splitRef, table } from '../format';
import { action, clientFor, Cmd, out } from './common';

export function infoText(i: Info): string {
  return [
    `Storage Driver: ${i.Driver}`,
    `Version: ${i.ServerVersion}`,
    `Root Dir: ${i.DockerRootDir}`,
    `Backing Filesystem: ${i.BackingFilesystem}`,
    `Passthrough: ${i.Passthrough ? 'on' : 'off'}`,
    `Images: ${i.Images}`,
    `Layers: ${i.Layers}`,
    `Containers: ${i.Containers} (mounted ${i.ContainersMounted})`,
    `Volumes: ${i.Volumes}`,
    `FUSE Engine: ${i.Engine.Threads} of ${i.Engine.MaxThreads} threads running, ${i.Engine.MountsServed} mounts served`,
    `Live Restore: ${i.Engine.LiveRestore ? 'on' : 'off'}${i.Engine.HolderPid ? ` (fd holder pid ${i.Engine.HolderPid})` : ''}`,
    `Takeovers: ${i.Engine.Takeovers}${i.Engine.LastTakeover ? ` (last ${i.Engine.LastTakeover.At}, ${i.Engine.LastTakeover.Ms} ms, ${i.Engine.LastTakeover.Mounts} mounts)` : ''}`,
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

/** One row of docker system df's summary, named as docker's `--format json` names it. */
interface DfRow { Type: string; TotalCount: string; Active: string; Size: string; Reclaimable: string }

/** docker system df's summary rows (same arithmetic as docker's formatter). */
export function dfRows(df: SystemDf): DfRow[] {
  const activeImages = df.Images.filter((i) => i.Containers > 0);
  const usedByImages = activeImages.reduce((s, i) => s + i.UniqueSize, 0);
  const imgReclaim = Math.max(0, df.LayersSize - usedByImages);

  const isActive = (c: SystemDf['Containers'][number]) => c.State === 'mounted';
  const cSize = df.Containers.reduce((s, c) => s + c.SizeRw, 0);
  const cReclaim = df.Containers.filter((c) => !isActive(c)).reduce((s, c) => s + c.SizeRw, 0);

  const vSize = df.Volumes.reduce((s, v) => s + Math.max(0, v.UsageData.Size), 0);
  const vReclaim = df.Volumes.filter((v) => v.UsageData.RefCount === 0).reduce((s, v) => s + Math.max(0, v.UsageData.Size), 0);

  const row = (Type: string, total: number, active: number, Size: string, Reclaimable: string): DfRow =>
    ({ Type, TotalCount: String(total), Active: String(active), Size, Reclaimable });
  return [
    row('Images', df.Images.length, activeImages.length, humanSize(df.LayersSize), withPct(imgReclaim, df.LayersSize)),
    row('Containers', df.Containers.length, df.Containers.filter(isActive).length, humanSize(cSize), withPct(cReclaim, cSize)),
    row('Local Volumes', df.Volumes.length, df.Volumes.filter((v) => v.UsageData.RefCount > 0).length, humanSize(vSize), withPct(vReclaim, vSize)),
    // Nothing is in use between builds: every cache layer is reclaimable.
    row('Build Cache', df.BuildCacheCount ?? 0, 0, humanSize(df.BuildCacheSize), humanSize(df.BuildCacheSize)),
  ];
}

/** docker system df's summary table. */
export function dfSummary(df: SystemDf): string {
  return table(
    ['TYPE', 'TOTAL', 'ACTIVE', 'SIZE', 'RECLAIMABLE'],
    dfRows(df).map((r) => [r.Type, r.TotalCount, r.Active, r.Size, r.Reclaimable]),
  );
}

/** docker system df -v: per-image, per-container and per-volume tables. */
export function dfVerbose(df: SystemDf, now = Date.now()): string {
  const imgRows: string[][] = [];
  for (const i of df.Images) {
    const refs = i.RepoTags.length ? i.RepoTags.map(splitRef) : [['<none>', '<none>']];
    for (const [repo, tag] of refs) {
      imgRows.push([
        repo,
        tag,
        shortId(i.Id),
        ago(i.Created, now),
        humanSize(i.Size),
        humanSize(i.SharedSize),
        humanSize(i.UniqueSize),
        String(i.Containers),
      ]);
    }
  }
  const cRows = df.Containers.map((c) => [
    shortId(c.Id),
    shortId(c.Image),
    humanSize(c.SizeRw),
    ago(c.Created, now),
    c.State === 'mounted' ? 'Mounted' : 'Created',
    c.Name,
  ]);
  const vRows = df.Volumes.map((v) => [v.Name, String(v.UsageData.RefCount), v.UsageData.Size < 0 ? 'N/A' : humanSize(v.UsageData.Size)]);
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
    `Build cache usage: ${humanSize(df.BuildCacheSize)}`,
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
    // As docker: the summary is one JSON object per row; -v prints the whole usage object.
    if (argv.format === 'json') return out(argv.verbose ? json(df) : dfRows(df).map((r) => JSON.stringify(r)).join('\n'));
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
