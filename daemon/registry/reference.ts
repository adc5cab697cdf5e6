// Image references as Docker parses them (distribution/reference): [domain[:port]/]path[:tag][@digest].
// A single-component name on Docker Hub gets `library/`; no domain means docker.io; no tag and no
// digest means `latest`. Pure functions: used by the daemon (pull/push) and the CLI (credentials).
import { InvalidError } from '../model/errors';

export const DEFAULT_DOMAIN = 'docker.io';
/** Where docker.io's API really lives. */
export const DOCKER_HUB_API = 'registry-1.docker.io';

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?$/;
const IPV6_DOMAIN = /^\[[0-9a-fA-F:.]+\](?::[0-9]+)?$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const SHA256 = /^sha256:[a-f0-9]{64}$/;
const MAX_NAME = 255;

export class InvalidReferenceError extends InvalidError {
  constructor(ref: string, why: string) {
    super(`invalid reference "${ref}": ${why}`);
  }
}

export interface Reference {
  /** Registry host[:port] as written, docker.io for Docker Hub. */
  domain: string;
  /** Repository path inside the registry, e.g. library/busybox. */
  path: string;
  /** Tag given or implied (latest when neither tag nor digest is given); undefined for a bare digest. */
  tag?: string;
  digest?: string;
}

/** Parses a reference; `defaultTag` false leaves a reference without tag and digest tagless. */
export function parseReference(ref: string, opts: { defaultTag?: boolean } = {}): Reference {
  if (ref === '') throw new InvalidReferenceError(ref, 'it is empty');
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new InvalidReferenceError(ref, `"${digest}" is not a digest (algorithm:hex)`);
    if (digest.startsWith('sha256:') && !SHA256.test(digest)) throw new InvalidReferenceError(ref, 'a sha256 digest has 64 lowercase hex digits');
    if (!digest.startsWith('sha256:')) throw new InvalidReferenceError(ref, `unsupported digest algorithm "${digest.split(':')[0]}" (only sha256)`);
  }
  let tag: string | undefined;
  const slash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > slash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new InvalidReferenceError(ref, `tag "${tag}" must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`);
  }
  if (rest === '') throw new InvalidReferenceError(ref, 'the repository name is empty');
  let domain = DEFAULT_DOMAIN;
  let path = rest;
  const first = rest.indexOf('/');
  if (first >= 0) {
    const head = rest.slice(0, first);
    // Docker's rule: the first component is a registry when it looks like a host.
    if (head.includes('.') || head.includes(':') || head === 'localhost' || head.toLowerCase() !== head) {
      domain = head;
      path = rest.slice(first + 1);
      if (!DOMAIN.test(domain) && !IPV6_DOMAIN.test(domain)) throw new InvalidReferenceError(ref, `"${domain}" is not a valid registry host[:port]`);
    }
  }
  if (domain === 'index.docker.io') domain = DEFAULT_DOMAIN;
  if (path.toLowerCase() !== path) throw new InvalidReferenceError(ref, 'repository name must be lowercase');
  for (const c of path.split('/')) {
    if (!PATH_COMPONENT.test(c)) {
      throw new InvalidReferenceError(ref, `repository name components are lowercase letters, digits and separators (. _ __ -), got "${c}"`);
    }
  }
  if (domain === DEFAULT_DOMAIN && !path.includes('/')) path = `library/${path}`;
  if ((domain + '/' + path).length > MAX_NAME) throw new InvalidReferenceError(ref, `the name is longer than ${MAX_NAME} characters`);
  if (tag === undefined && digest === undefined && opts.defaultTag !== false) tag = 'latest';
  return { domain, path, tag, digest };
}

/** The repository as Docker shows it: docker.io/library/x -> x, docker.io/u/x -> u/x, else host/path. */
export function familiarName(r: Pick<Reference, 'domain' | 'path'>): string {
  if (r.domain !== DEFAULT_DOMAIN) return `${r.domain}/${r.path}`;
  return r.path.startsWith('library/') ? r.path.slice('library/'.length) : r.path;
}

/** The full canonical form: docker.io/library/busybox:latest@sha256:... */
export function canonicalString(r: Reference): string {
  return `${r.domain}/${r.path}${r.tag !== undefined ? ':' + r.tag : ''}${r.digest !== undefined ? '@' + r.digest : ''}`;
}

/** The local image name a pull with a tag records (familiar name:tag), or undefined for digest-only. */
export function localTagOf(r: Reference): string | undefined {
  return r.tag === undefined ? undefined : `${familiarName(r)}:${r.tag}`;
}

/** Host[:port] to connect to for a domain (docker.io's API is registry-1.docker.io). */
export function apiHost(domain: string): string {
  return domain === DEFAULT_DOMAIN ? DOCKER_HUB_API : domain;
}

/**
 * Normalizes what a user gives `login`/`logout` (a host, a URL, docker.io aliases) to the key
 * credentials are stored under: host[:port], with docker.io's historical key for Docker Hub.
 */
export function registryKey(input: string): string {
  let s = input.trim().replace(/^[a-z]+:\/\//i, '');
  s = s.replace(/\/.*$/, '');
  if (s === '' ) throw new InvalidReferenceError(input, 'no registry given');
  if (s === 'docker.io' || s === 'index.docker.io' || s === 'registry-1.docker.io') return DOCKER_HUB_AUTH_KEY;
  if (!DOMAIN.test(s) && !IPV6_DOMAIN.test(s)) throw new InvalidReferenceError(input, `"${s}" is not a valid registry host[:port]`);
  return s;
}

/** The key Docker's config.json keeps Docker Hub credentials under. */
export const DOCKER_HUB_AUTH_KEY = 'https://index.docker.io/v1/';

/** Host part of a registry key (docker.io for Docker Hub's key). */
export function keyDomain(key: string): string {
  return key === DOCKER_HUB_AUTH_KEY ? DEFAULT_DOMAIN : key;
}
