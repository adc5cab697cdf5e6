// Routes for registry pull, push and login (types: daemon/model/types-registry.ts). Pull and push answer with a
// progress stream (daemon/model/progress.ts) ending in {result}. Request bodies carry credentials: they are
// never logged.
import { DistributionStore } from '../images/dist-store';
import { pullImage, registryClient, type RegistryDeps } from '../images/pull';
import { pushImage } from '../images/push';
import { parseReference, keyDomain, registryKey } from '../registry/reference';
import { invalid } from '../model/errors';
import { progressStream } from './progress';
import { str, type Services } from './routes';
import type { ApiRequest, Router } from './server';
import type { LoginResponse, RegistryAuth } from '../model/types-registry';

function auth(req: ApiRequest): RegistryAuth | undefined {
  const a = req.body.auth as unknown;
  if (a === undefined || a === null) return undefined;
  const o = a as Record<string, unknown>;
  if (typeof o !== 'object' || typeof o.username !== 'string' || typeof o.password !== 'string') throw invalid('"auth" must be {username, password}');
  return { username: o.username, password: o.password };
}

function tlsVerify(req: ApiRequest): boolean | undefined {
  const v = req.body.tlsVerify as unknown;
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw invalid('"tlsVerify" must be a boolean');
  return v;
}

export function registerRegistryRoutes(r: Router, s: Services): void {
  const deps = (): RegistryDeps => ({ ...s, dist: new DistributionStore(s.root), certsDir: s.certsDir, insecureRegistries: s.insecureRegistries ?? [] });
  r.add('POST', '/images/pull', (req) => {
    const body = { ref: str(req, 'ref', true), platform: str(req, 'platform'), tlsVerify: tlsVerify(req), auth: auth(req) };
    parseReference(body.ref);
    return progressStream((p, signal) => pullImage(deps(), body, p, signal), { log: s.log, what: 'image pull' });
  });
  r.add('POST', '/images/:ref/push', (req) => {
    const body = { target: str(req, 'target'), tlsVerify: tlsVerify(req), auth: auth(req) };
    s.images.resolve(req.params.ref);
    return progressStream((p, signal) => pushImage(deps(), req.params.ref, body, p, signal), { log: s.log, what: 'image push' });
  });
  r.add('POST', '/registry/login', async (req): Promise<LoginResponse> => {
    const domain = keyDomain(registryKey(str(req, 'registry', true)));
    const credentials = auth(req);
    if (credentials === undefined) throw invalid('"auth" is required');
    const c = registryClient(deps(), { domain, path: '' }, tlsVerify(req), credentials);
    try {
      await c.checkLogin();
    } finally {
      c.close();
    }
    s.log.info({ registry: domain, username: credentials.username }, 'login checked');
    return { status: 'Login Succeeded' };
  });
}
