// Manifests a registry serves: OCI image manifest and index, Docker schema 2 manifest and manifest
// list. Parsing checks the shape strata relies on; an index is resolved to one platform.
import { createHash } from 'node:crypto';
import { DomainError, InvalidError } from '../model/errors';

export const MT = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerForeignLayer: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

/** Every manifest type strata reads, for the Accept header. */
export const ACCEPT_MANIFESTS = [MT.ociIndex, MT.ociManifest, MT.dockerList, MT.dockerManifest].join(', ');

/** A manifest or index the registry sent that strata cannot use. */
export class ManifestError extends DomainError {
  constructor(message: string) {
    super('upstream', message);
  }
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  urls?: string[];
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface ImageManifest {
  kind: 'manifest';
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
}

export interface ImageIndex {
  kind: 'index';
  mediaType: string;
  manifests: Descriptor[];
}

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export function sha256Digest(b: Buffer): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex');
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function descriptor(v: unknown, what: string): Descriptor {
  if (!isObject(v)) throw new ManifestError(`${what} is not an object`);
  const { mediaType, digest, size } = v;
  if (typeof digest !== 'string' || !DIGEST_RE.test(digest)) throw new ManifestError(`${what} has an invalid or unsupported digest ${JSON.stringify(digest)}`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw new ManifestError(`${what} has an invalid size ${JSON.stringify(size)}`);
  const d: Descriptor = { mediaType: typeof mediaType === 'string' ? mediaType : '', digest, size };
  if (isObject(v.platform) && typeof v.platform.os === 'string' && typeof v.platform.architecture === 'string') {
    d.platform = { os: v.platform.os, architecture: v.platform.architecture, ...(typeof v.platform.variant === 'string' ? { variant: v.platform.variant } : {}) };
  }
  if (Array.isArray(v.urls)) d.urls = v.urls.filter((u): u is string => typeof u === 'string');
  return d;
}

/** Parses a manifest body; the media type comes from the document, else from Content-Type. */
export function parseManifest(body: Buffer, contentType: string | undefined): ImageManifest | ImageIndex {
  let doc: unknown;
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new ManifestError(`the manifest is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(doc)) throw new ManifestError('the manifest is not a JSON object');
  const ct = (contentType ?? '').split(';')[0].trim();
  const mediaType = typeof doc.mediaType === 'string' ? doc.mediaType : ct;
  if (doc.schemaVersion === 1 || mediaType.startsWith('application/vnd.docker.distribution.manifest.v1')) {
    throw new ManifestError('Docker schema 1 manifests are not supported');
  }
  if (mediaType === MT.ociIndex || mediaType === MT.dockerList || (mediaType === '' && Array.isArray(doc.manifests))) {
    if (!Array.isArray(doc.manifests)) throw new ManifestError('the image index has no "manifests" list');
    return { kind: 'index', mediaType: mediaType || MT.ociIndex, manifests: doc.manifests.map((m, i) => descriptor(m, `index entry ${i}`)) };
  }
  if (mediaType !== MT.ociManifest && mediaType !== MT.dockerManifest && mediaType !== '') {
    throw new ManifestError(`unsupported manifest media type ${mediaType}`);
  }
  if (!Array.isArray(doc.layers)) throw new ManifestError('the manifest has no "layers" list');
  return {
    kind: 'manifest',
    mediaType: mediaType || MT.ociManifest,
    config: descriptor(doc.config, 'the manifest\'s config'),
    layers: doc.layers.map((l, i) => descriptor(l, `layer ${i + 1}`)),
  };
}

const ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

/** The platform this daemon runs on (linux/amd64 here). */
export function hostPlatform(): Platform {
  const architecture = ARCH[process.arch] ?? process.arch;
  return architecture === 'arm64' ? { os: 'linux', architecture, variant: 'v8' } : { os: 'linux', architecture };
}

/** Parses os/arch[/variant]. */
export function parsePlatform(s: string): Platform {
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === '' || !/^[a-z0-9_.-]+$/i.test(p))) {
    throw new InvalidError(`invalid platform "${s}": expected os/arch[/variant]`);
  }
  const [os, architecture, variant] = parts.map((p) => p.toLowerCase());
  return variant !== undefined ? { os, architecture, variant } : { os, architecture };
}

export function platformString(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? '/' + p.variant : ''}`;
}

/** The index entry for `want`: exact variant first; arm64's v8 and a missing variant are the same. */
export function selectPlatform(index: ImageIndex, want: Platform): Descriptor | undefined {
  const norm = (p: Platform): string => (p.architecture === 'arm64' && (p.variant === undefined || p.variant === 'v8') ? '' : p.variant ?? '');
  const candidates = index.manifests.filter(
    (m) => m.platform !== undefined && m.platform.os === want.os && m.platform.architecture === want.architecture && m.mediaType !== 'application/vnd.in-toto+json',
  );
  if (want.variant === undefined) return candidates[0];
  return candidates.find((m) => norm(m.platform!) === norm(want)) ?? candidates.find((m) => m.platform!.variant === undefined);
}

/** Layer compression by media type (sniffed from the first bytes when the type does not say). */
export type Compression = 'gzip' | 'zstd' | 'none' | 'unknown';

export function compressionOf(mediaType: string): Compression {
  if (mediaType.endsWith('+gzip') || mediaType === MT.dockerLayerGzip || mediaType === MT.dockerForeignLayer) return 'gzip';
  if (mediaType.endsWith('+zstd')) return 'zstd';
  if (mediaType === MT.ociLayer || mediaType.endsWith('.tar')) return 'none';
  return 'unknown';
}

export function isLayerMediaType(mediaType: string): boolean {
  return compressionOf(mediaType) !== 'unknown' || mediaType === '';
}
