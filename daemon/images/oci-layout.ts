// Image archives, the parts save and load share: the OCI image layout's media types and
// annotations, and how an archive's images are described while it is read (candidates).
// Save: image-save.ts (OCI layout; docker-archive.ts for the classic format). Load: image-load.ts.
import { createHash } from 'node:crypto';
import { CorruptArchiveError } from '../archive';
import type { LayerStore } from '../layers/layer-store';
import type { Logger } from '../log';
import { canonicalRef } from '../model/validate';
import type { Store } from '../store';
import type { StorageRoot } from '../root/storage-root';
import type { OuterArchive } from './archive-reader';
import type { ImageService } from './images';

export interface ImageIoDeps {
  root: StorageRoot;
  store: Store;
  images: ImageService;
  layers: LayerStore;
  log: Logger;
}

export const MT_INDEX = 'application/vnd.oci.image.index.v1+json';
export const MT_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const MT_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const MT_LAYER = 'application/vnd.oci.image.layer.v1.tar';
export const MT_DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const MT_DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const ANN_REF_NAME = 'org.opencontainers.image.ref.name';
export const ANN_CONTAINERD_NAME = 'io.containerd.image.name';

const ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x' };
export const ourArch = ARCH[process.arch] ?? process.arch;
export const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

export function sha256(b: Buffer | string): string {
  return createHash('sha256').update(b).digest('hex');
}

export function hexOf(id: string): string {
  return id.startsWith('sha256:') ? id.slice(7) : id;
}

/** An image found in an archive being loaded: its config and layer members, and its names. */
export interface LayerRef {
  member: string;
  /** Blob digest the manifest gives (OCI, docker blobs/sha256 layout). */
  digest?: string;
  mediaType?: string;
}

export interface Candidate {
  what: string;
  configMember: string;
  configDigest?: string;
  layers: LayerRef[];
  refs: string[];
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export function strArray(v: unknown): string[] | null {
  return Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : null;
}

/** A user-facing name from an annotation / RepoTags entry: docker.io/library/x -> x; invalid -> undefined. */
export function refFromName(name: string): string | undefined {
  let n = name;
  if (n.startsWith('docker.io/library/')) n = n.slice('docker.io/library/'.length);
  else if (n.startsWith('docker.io/')) n = n.slice('docker.io/'.length);
  try {
    return canonicalRef(n);
  } catch {
    return undefined;
  }
}

export function checkBlob(a: OuterArchive, member: string, digest: string, size: unknown, what: string): void {
  const info = a.info(member, what);
  if ('sha256:' + info.sha256 !== digest) throw new CorruptArchiveError(`${what} ${digest} does not match its content (sha256:${info.sha256})`);
  if (typeof size === 'number' && size !== info.size) throw new CorruptArchiveError(`${what} ${digest} is ${info.size} bytes, the manifest says ${size}`);
}
