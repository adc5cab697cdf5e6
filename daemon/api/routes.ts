// The API's routes: each turns a request into one service call.
import type { ContainerService } from '../containers/containers';
import type { ImageService } from '../images/images';
import type { MountManager } from '../mounts/mount-manager';
import type { Store } from '../store';
import type { StorageRoot } from '../stratad/root';
import type { LayerStore } from '../layers/layer-store';
import type { Logger } from '../log';
import type { VolumeService } from '../volumes/volumes';
import { registerBuildRunRoutes } from './routes-build-run';
import { registerImageIoRoutes } from './routes-image-io';
import { registerRegistryRoutes } from './routes-registry';
import { badRequest } from './errors';
import { progressStream } from './progress';
import { Router, type ApiRequest } from './server';
import type { ChangeEntry, CommitRequest, CreateRequest, Info, MountSpec, SystemDf } from './types';

export interface Services {
  root: StorageRoot;
  store: Store;
  images: ImageService;
  containers: ContainerService;
  volumes: VolumeService;
  mounts: MountManager;
  layers: LayerStore;
  log: Logger;
  version: string;
  backingFilesystem: string;
  /** Per-registry CA files: <certsDir>/<host[:port]>/*.crt. */
  certsDir?: string;
  /** Registries (host[:port]) reached over plain HTTP or unverified TLS without --tls-verify=false. */
  insecureRegistries?: string[];
}

export function str(req: ApiRequest, key: string, required: true): string;
export function str(req: ApiRequest, key: string, required?: false): string | undefined;
export function str(req: ApiRequest, key: string, required = false): string | undefined {
  const v = req.body[key];
  if (v === undefined || v === null) {
    if (required) throw badRequest(`"${key}" is required`);
    return undefined;
  }
  if (typeof v !== 'string') throw badRequest(`"${key}" must be a string`);
  return v;
}

/** A query parameter (routes whose body is an upload take their options there). */
export function query(req: ApiRequest, key: string, required: true): string;
export function query(req: ApiRequest, key: string, required?: false): string | undefined;
export function query(req: ApiRequest, key: string, required = false): string | undefined {
  const v = req.query.get(key);
  if (v === null) {
    if (required) throw badRequest(`query parameter "${key}" is required`);
    return undefined;
  }
  return v;
}

export function strings(req: ApiRequest, key: string): string[] | undefined {
  const v = req.body[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw badRequest(`"${key}" must be an array of strings`);
  return v as string[];
}

export function record(req: ApiRequest, key: string): Record<string, string> | undefined {
  const v = req.body[key];
  if (v === undefined) return undefined;
  if (v === null || typeof v !== 'object' || Array.isArray(v) || Object.values(v).some((x) => typeof x !== 'string')) {
    throw badRequest(`"${key}" must be an object of strings`);
  }
  return v as Record<string, string>;
}

export function flag(req: ApiRequest, key: string): boolean {
  const v = req.query.get(key);
  return v === '1' || v === 'true';
}

export function mountSpecs(req: ApiRequest): MountSpec[] | undefined {
  const v = req.body.mounts;
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) throw badRequest('"mounts" must be an array');
  return v.map((m: unknown, i) => {
    const o = m as Record<string, unknown>;
    if (o === null || typeof o !== 'object') throw badRequest(`mounts[${i}] must be an object`);
    if (o.type !== 'volume' && o.type !== 'bind') throw badRequest(`mounts[${i}].type must be "volume" or "bind"`);
    if (typeof o.target !== 'string') throw badRequest(`mounts[${i}].target is required`);
    if (typeof o.source !== 'string') throw badRequest(`mounts[${i}].source must be a string`);
    return { type: o.type, source: o.source, target: o.target, readonly: o.readonly === true };
  });
}

export function buildRouter(s: Services): Router {
  const r = new Router();
  r.add('GET', '/_ping', () => 'OK');
  r.add('GET', '/info', (): Info => {
    const counts = s.store.counts();
    return {
      Driver: 'strata-fuse',
      ServerVersion: s.version,
      DockerRootDir: s.root.dir,
      BackingFilesystem: s.backingFilesystem,
      Passthrough: s.mounts.passthrough || process.geteuid?.() === 0,
      Images: counts.images,
      Layers: counts.layers,
      Containers: counts.containers,
      ContainersMounted: counts.containersMounted,
      Volumes: counts.volumes,
    };
  });
  r.add('GET', '/system/df', (): SystemDf => {
    return {
      ...s.images.df(),
      Containers: s.containers.list(true).map((c) => ({ Id: c.Id, Name: c.Name, Image: c.Image, SizeRw: c.SizeRw, State: c.State, Created: c.Created })),
      Volumes: s.volumes.sizes().map((v) => ({ Name: v.name, UsageData: { Size: v.size, RefCount: v.links } })),
      BuildCacheSize: s.store.buildCache.size(),
      BuildCacheCount: s.store.buildCache.count(),
    };
  });

  r.add('POST', '/images/import', async (req) => ({ id: await s.images.import(req.upload, query(req, 'ref', true), query(req, 'message') ?? '') }), { upload: true });
  r.add('GET', '/images/json', () => s.images.list());
  r.add('GET', '/images/:ref/json', (req) => s.images.inspect(req.params.ref));
  r.add('GET', '/images/:ref/history', (req) => s.images.history(req.params.ref));
  r.add('POST', '/images/:ref/tag', (req) => {
    s.images.tag(req.params.ref, str(req, 'ref', true));
    return {};
  });
  r.add('DELETE', '/images/:ref', (req) => s.images.remove(req.params.ref, flag(req, 'force')));

  r.add('POST', '/containers/create', (req) => {
    const body: CreateRequest = { image: str(req, 'image', true), name: str(req, 'name'), volumes: strings(req, 'volumes'), mounts: mountSpecs(req) };
    return s.containers.create(body);
  });
  r.add('GET', '/containers/json', (req) => s.containers.list(flag(req, 'all')));
  r.add('GET', '/containers/:id/json', (req) => s.containers.inspect(req.params.id));
  r.add('POST', '/containers/:id/mount', async (req) => ({ mountpoint: await s.containers.mount(req.params.id, str(req, 'at')) }));
  r.add('POST', '/containers/:id/unmount', async (req) => {
    await s.containers.unmount(req.params.id);
    return {};
  });
  r.add('GET', '/containers/:id/changes', (req): ChangeEntry[] => s.containers.diff(req.params.id).map((c) => ({ Kind: c.kind, Path: c.path })));
  r.add('POST', '/containers/:id/commit', async (req) => {
    const body: CommitRequest = { ref: str(req, 'ref'), comment: str(req, 'comment'), author: str(req, 'author'), createdBy: str(req, 'createdBy') };
    if (!flag(req, 'progress')) return { id: await s.containers.commit(req.params.id, body) };
    s.containers.resolve(req.params.id); // an unknown container is a plain 404
    return progressStream(async (p) => ({ id: await s.containers.commit(req.params.id, body, p) }), { log: s.log, what: 'container commit' });
  });
  r.add('DELETE', '/containers/:id', async (req) => {
    await s.containers.remove(req.params.id, flag(req, 'force'));
    return {};
  });

  r.add('POST', '/volumes/create', (req) => s.volumes.create({ name: str(req, 'name'), labels: record(req, 'labels'), options: record(req, 'options') }));
  r.add('GET', '/volumes', () => ({ volumes: s.volumes.list() }));
  r.add('POST', '/volumes/prune', (req) => s.volumes.prune(flag(req, 'all')));
  r.add('GET', '/volumes/:name', (req) => s.volumes.get(req.params.name));
  r.add('DELETE', '/volumes/:name', (req) => {
    s.volumes.remove(req.params.name);
    return {};
  });
  registerImageIoRoutes(r, s);
  registerRegistryRoutes(r, s);
  registerBuildRunRoutes(r, s);
  return r;
}
