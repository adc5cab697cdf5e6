// The API's routes: each turns a request into one service call.
import { registerBuildRunRoutes } from './routes-build-run';
import { registerImageIoRoutes } from './routes-image-io';
import { registerRegistryRoutes } from './routes-registry';
import { flag, mountSpecs, query, record, str, strings } from './request';
import { progressStream } from './progress';
import { Router } from './server';
import type { Services } from './services';
import type { ChangeEntry, CommitRequest, CreateRequest } from '../model/types';
import { systemDf, systemInfo } from '../system/system-service';

export function buildRouter(s: Services): Router {
  const r = new Router();
  r.add('GET', '/_ping', () => 'OK');
  r.add('GET', '/info', () => systemInfo(s));
  r.add('GET', '/system/df', () => systemDf(s));

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
