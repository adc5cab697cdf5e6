// The CLI's registry credentials: a Docker config.json-style file ({"auths": {"host:port": {"auth":
// base64("user:password")}}}), mode 0600, written atomically. Path: --authfile, then
// $REGISTRY_AUTH_FILE (as podman), then ~/.strata/config.json. Other keys in the file are kept.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RegistryAuth } from '../daemon/model/types-registry';
import { DOCKER_HUB_AUTH_KEY, registryKey } from '../daemon/registry/reference';

interface AuthFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string }>;
  [k: string]: unknown;
}

export function authFilePath(flag?: string): string {
  return flag || process.env.REGISTRY_AUTH_FILE || path.join(process.env.HOME || (require('node:os') as typeof import('node:os')).homedir(), '.strata', 'config.json');
}

function read(file: string): AuthFile {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new Error(`cannot read the auth file ${file}: ${(err as Error).message}`);
  }
  try {
    const doc = JSON.parse(text) as unknown;
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new Error('not a JSON object');
    return doc as AuthFile;
  } catch (err) {
    throw new Error(`the auth file ${file} is not valid: ${(err as Error).message}`);
  }
}

function write(file: string, doc: AuthFile): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(doc, null, '\t') + '\n', { mode: 0o600 });
  fs.chmodSync(tmp, 0o600);
  fs.renameSync(tmp, file);
}

/** Credentials stored for a registry domain (docker.io uses Docker Hub's historical key). */
export function credentialsFor(file: string, domain: string): RegistryAuth | undefined {
  const auths = read(file).auths ?? {};
  const keys = domain === 'docker.io' ? [DOCKER_HUB_AUTH_KEY, 'docker.io', 'index.docker.io', 'registry-1.docker.io'] : [domain, `https://${domain}`, `http://${domain}`];
  for (const k of keys) {
    const e = auths[k];
    if (e === undefined) continue;
    if (typeof e.auth === 'string' && e.auth !== '') {
      const plain = Buffer.from(e.auth, 'base64').toString('utf8');
      const i = plain.indexOf(':');
      if (i > 0) return { username: plain.slice(0, i), password: plain.slice(i + 1) };
    }
    if (typeof e.username === 'string' && typeof e.password === 'string') return { username: e.username, password: e.password };
  }
  return undefined;
}

export function storeCredentials(file: string, registry: string, a: RegistryAuth): string {
  const key = registryKey(registry);
  const doc = read(file);
  doc.auths = { ...(doc.auths ?? {}), [key]: { auth: Buffer.from(`${a.username}:${a.password}`).toString('base64') } };
  write(file, doc);
  return key;
}

/** Removes a registry's credentials; false when there were none. */
export function removeCredentials(file: string, registry: string): boolean {
  const key = registryKey(registry);
  const doc = read(file);
  if (doc.auths === undefined || doc.auths[key] === undefined) return false;
  delete doc.auths[key];
  write(file, doc);
  return true;
}
