// `strata login`: checks credentials against a registry (GET /v2/ with them). Nothing is stored
// here: the CLI keeps the credentials in its auth file. They are never logged.
import { invalid } from '../model/errors';
import type { LoginResponse, RegistryAuth } from '../model/types-registry';
import { keyDomain, registryKey } from '../registry/reference';
import { registryClient, type RegistryDeps } from './pull';

export async function checkLogin(d: RegistryDeps, registry: string, credentials: RegistryAuth | undefined, tlsVerify: boolean | undefined): Promise<LoginResponse> {
  const domain = keyDomain(registryKey(registry));
  if (credentials === undefined) throw invalid('"auth" is required');
  const c = registryClient(d, { domain, path: '' }, tlsVerify, credentials);
  try {
    await c.checkLogin();
  } finally {
    c.close();
  }
  d.log.info({ registry: domain, username: credentials.username }, 'login checked');
  return { status: 'Login Succeeded' };
}
