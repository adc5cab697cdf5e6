// Routes for registry pull, push and login (types: daemon/model/types-registry.ts). Pull and push answer with a
// progress stream (daemon/model/progress.ts) ending in {result}. Request bodies carry credentials: they are
// never logged.
import { DistributionStore } from '../images/dist-store';
import { checkLogin } from '../images/login';
import { pullImage, type RegistryDeps } from '../images/pull';
import { pushImage } from '../images/push';
import { parseReference } from '../registry/reference';
import { progressStream } from './progress';
import { auth, optionalBool, str } from './request';
import type { Router } from './server';
import type { Services } from './services';

export function registerRegistryRoutes(r: Router, s: Services): void {
  const deps = (): RegistryDeps => ({ ...s, dist: new DistributionStore(s.root), certsDir: s.certsDir, insecureRegistries: s.insecureRegistries ?? [] });
  r.add('POST', '/images/pull', (req) => {
    const body = { ref: str(req, 'ref', true), platform: str(req, 'platform'), tlsVerify: optionalBool(req, 'tlsVerify'), auth: auth(req) };
    parseReference(body.ref);
    return progressStream((p, signal) => pullImage(deps(), body, p, signal), { log: s.log, what: 'image pull' });
  });
  r.add('POST', '/images/:ref/push', (req) => {
    const body = { target: str(req, 'target'), tlsVerify: optionalBool(req, 'tlsVerify'), auth: auth(req) };
    s.images.resolve(req.params.ref);
    return progressStream((p, signal) => pushImage(deps(), req.params.ref, body, p, signal), { log: s.log, what: 'image push' });
  });
  r.add('POST', '/registry/login', (req) => checkLogin(deps(), str(req, 'registry', true), auth(req), optionalBool(req, 'tlsVerify')));
}
