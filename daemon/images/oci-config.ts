// The OCI image configuration of an image: its id is the sha256 of this JSON.
import { createHash } from 'node:crypto';
import type { ImageConfig } from '../model/types';
import type { HistoryRecord } from '../store/types';

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
