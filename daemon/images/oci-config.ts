// The OCI image configuration of an image: its id is the sha256 of this JSON.
import { createHash } from 'node:crypto';
import type { ImageConfig } from '../model/types';
import type { HistoryRecord, ImageRow, LayerRow } from '../store/types';
import { isObject, strArray, type ImageIoDeps } from './oci-layout';
import { readRawConfig } from './oci-store';

export const DEFAULT_ENV = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'];

export function emptyConfig(): ImageConfig {
  return { env: [...DEFAULT_ENV], cmd: null, entrypoint: null, workingDir: '', user: '', labels: {} };
}

const ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x' };

export function ociConfigJson(config: ImageConfig, diffIds: string[], history: HistoryRecord[], created: string): string {
  const doc = {
    created,
    architecture: ARCH[process.arch] ?? process.arch,
    os: 'linux',
    config: {
      Env: config.env,
      Cmd: config.cmd ?? undefined,
      Entrypoint: config.entrypoint ?? undefined,
      WorkingDir: config.workingDir || undefined,
      User: config.user || undefined,
      Labels: Object.keys(config.labels).length ? config.labels : undefined,
      ExposedPorts: config.exposedPorts?.length ? Object.fromEntries(config.exposedPorts.map((p) => [p, {}])) : undefined,
      Volumes: config.volumes?.length ? Object.fromEntries(config.volumes.map((v) => [v, {}])) : undefined,
      Shell: config.shell,
    },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: history.map((h) => ({
      created: h.created,
      created_by: h.createdBy || undefined,
      comment: h.comment || undefined,
      empty_layer: h.emptyLayer || undefined,
    })),
  };
  return JSON.stringify(doc);
}

export function imageIdOf(json: string): string {
  return 'sha256:' + createHash('sha256').update(json).digest('hex');
}

/** An image config document as archives and registries carry it (the fields strata reads). */
export interface OciConfigDoc {
  created?: string;
  architecture?: string;
  os?: string;
  config?: {
    Env?: string[] | null;
    Cmd?: string[] | null;
    Entrypoint?: string[] | null;
    WorkingDir?: string;
    User?: string;
    Labels?: Record<string, string> | null;
    ExposedPorts?: Record<string, unknown> | null;
    Volumes?: Record<string, unknown> | null;
    Shell?: string[] | null;
  } | null;
  rootfs?: { type?: string; diff_ids?: unknown };
  history?: { created?: string; created_by?: string; comment?: string; empty_layer?: boolean }[];
}

/** The config blob an image's id was computed from. */
export function storedConfigBlob(d: ImageIoDeps, img: ImageRow, chain: LayerRow[]): Buffer {
  const raw = readRawConfig(d.root, img.id);
  if (raw !== undefined) return raw;
  return Buffer.from(ociConfigJson(img.config, chain.map((l) => l.diffId), img.history, img.created));
}

/** The config blob with other diff ids (a layer's tar could not be reproduced byte for byte). */
export function rewrittenConfigBlob(d: ImageIoDeps, img: ImageRow, diffIds: string[]): Buffer {
  const raw = readRawConfig(d.root, img.id);
  if (raw === undefined) return Buffer.from(ociConfigJson(img.config, diffIds, img.history, img.created));
  const doc = JSON.parse(raw.toString('utf8')) as { rootfs?: { type?: string; diff_ids?: string[] } };
  doc.rootfs = { type: 'layers', diff_ids: diffIds };
  return Buffer.from(JSON.stringify(doc));
}

export function toImageConfig(doc: OciConfigDoc): ImageConfig {
  const c = doc.config ?? {};
  const out: ImageConfig = {
    env: strArray(c.Env) ?? [],
    cmd: strArray(c.Cmd),
    entrypoint: strArray(c.Entrypoint),
    workingDir: typeof c.WorkingDir === 'string' ? c.WorkingDir : '',
    user: typeof c.User === 'string' ? c.User : '',
    labels: isObject(c.Labels) ? Object.fromEntries(Object.entries(c.Labels).filter(([, v]) => typeof v === 'string')) as Record<string, string> : {},
  };
  if (isObject(c.ExposedPorts) && Object.keys(c.ExposedPorts).length) out.exposedPorts = Object.keys(c.ExposedPorts);
  if (isObject(c.Volumes) && Object.keys(c.Volumes).length) out.volumes = Object.keys(c.Volumes);
  const shell = strArray(c.Shell);
  if (shell) out.shell = shell;
  return out;
}

export function toHistory(doc: OciConfigDoc, layerSizes: number[]): HistoryRecord[] {
  const hist = Array.isArray(doc.history) ? doc.history : [];
  let li = 0;
  return hist.map((h) => {
    const empty = h.empty_layer === true;
    const size = empty ? 0 : (layerSizes[li++] ?? 0);
    return {
      created: typeof h.created === 'string' ? h.created : '',
      createdBy: typeof h.created_by === 'string' ? h.created_by : '',
      comment: typeof h.comment === 'string' ? h.comment : '',
      emptyLayer: empty,
      size,
    };
  });
}
