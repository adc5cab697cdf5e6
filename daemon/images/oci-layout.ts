// `image save` / `image load`: OCI image layout archives (oci-layout, index.json, blobs/sha256/...)
// and classic docker-archive tars (manifest.json, <config-hex>.json, <layer-id>/layer.tar, repositories).
//
// Save: layer blobs are uncompressed OCI layer tars (application/vnd.oci.image.layer.v1.tar), so a
// blob's digest is its diff id. A layer's tar is the byte-exact one it was loaded from when strata
// kept it (foreign layers), else packLayer of its directory. The config blob is the stored one
// (foreign images) or ociConfigJson as commitImage computed it, so the archive carries the image id.
//
// Load: the outer archive is read without extracting it by its own names (archive-reader.ts); every
// blob digest, the config digest and every layer's diff id are verified before anything is
// created; layers are created through LayerStore (whiteouts back to overlay format); the images are
// inserted in one transaction. On any failure the layers this load created are removed again.
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable, Writable, pipeline as streamPipeline } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { ArchiveError, CorruptArchiveError, UnsupportedArchiveError, packLayer } from '../archive';
import { decompressor, type Codec } from '../archive/decompress';
import { TarWriter } from '../archive/tar-writer';
import { DomainError, invalid, notFound } from '../model/errors';
import type { ImageConfig } from '../model/types';
import type { LoadResponse, LoadedImage, SaveFormat, SaveResponse, SavedLayer } from '../model/types-image-io';
import type { ProgressReporter } from '../model/progress';
import { countingStream, digestShort, noProgress, sizeText } from '../model/progress';
import { formatRef, parseRef } from '../model/validate';
import { chainId, type LayerStore } from '../layers/layer-store';
import type { Logger } from '../log';
import type { Store } from '../store';
import type { HistoryRecord, ImageRow, LayerRow } from '../store/types';
import type { StorageRoot } from '../stratad/root';
import { OuterArchive } from './archive-reader';
import { codecOf, DistributionStore } from './dist-store';
import type { ImageService } from './images';
import { imageIdOf, ociConfigJson } from './oci-config';
import { originalTarPath, rawConfigPath, readRawConfig, sweepOrphans, writeAtomic } from './oci-store';

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
const MT_DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
const MT_DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const ANN_REF_NAME = 'org.opencontainers.image.ref.name';
export const ANN_CONTAINERD_NAME = 'io.containerd.image.name';

const ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x' };
const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

function sha256(b: Buffer | string): string {
  return createHash('sha256').update(b).digest('hex');
}

function hexOf(id: string): string {
  return id.startsWith('sha256:') ? id.slice(7) : id;
}

// ---------------------------------------------------------------------------------------------
// save

/** Discards what is written and counts it. */
class Counter extends Writable {
  bytes = 0;
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.bytes += chunk.length;
    cb();
  }
}

type LayerPlan = {
  row: LayerRow;
  diffId: string;
  size: number;
  source: { kind: 'original'; file: string } | { kind: 'blob'; file: string; codec: Codec } | { kind: 'pack'; dir: string };
};

/** The config blob an image's id was computed from. */
export function storedConfigBlob(d: ImageIoDeps, img: ImageRow, chain: LayerRow[]): Buffer {
  const raw = readRawConfig(d.root, img.id);
  if (raw !== undefined) return raw;
  return Buffer.from(ociConfigJson(img.config, chain.map((l) => l.diffId), img.history, img.created));
}

/** The config blob with other diff ids (a layer's tar could not be reproduced byte for byte). */
export function rewrittenConfigBlob(d: ImageIoDeps, img: ImageRow, diffIds: string[]): Buffer {
  const raw = readRawConfig(d.root, img.id);
  if (raw === undefined) return Buffer.from(ociConfigJson(img.config, diffIds, img.history, img.created));
  const doc = JSON.parse(raw.toString('utf8')) as { rootfs?: { type?: string; diff_ids?: string[] } };
  doc.rootfs = { type: 'layers', diff_ids: diffIds };
  return Buffer.from(JSON.stringify(doc));
}

async function planLayer(d: ImageIoDeps, row: LayerRow): Promise<LayerPlan> {
  const orig = originalTarPath(d.root, row.diffId);
  try {
    const st = fs.statSync(orig);
    if (st.isFile()) return { row, diffId: row.diffId, size: st.size, source: { kind: 'original', file: orig } };
  } catch {
    // none kept: a pulled blob, else pack the directory
  }
  const dist = new DistributionStore(d.root);
  const blob = dist.layerBlobs(row.diffId).find((b) => b.kept && b.tarSize !== undefined);
  if (blob !== undefined) {
    return { row, diffId: row.diffId, size: blob.tarSize!, source: { kind: 'blob', file: dist.blobPath(blob.digest), codec: codecOf(blob.mediaType) } };
  }
  const dir = d.layers.path(row.id);
  const counter = new Counter();
  const r = await packLayer(dir, counter);
  return { row, diffId: r.diffId, size: counter.bytes, source: { kind: 'pack', dir } };
}

/** Outer-archive writer with fixed metadata for its own members. */
class OuterWriter {
  readonly w: TarWriter;
  private readonly dirs = new Set<string>();
  constructor(
    out: Writable,
    private readonly mtime: number,
    private readonly progress: ProgressReporter,
  ) {
    this.w = new TarWriter(out);
  }

  async dir(name: string): Promise<void> {
    if (this.dirs.has(name)) return;
    this.dirs.add(name);
    await this.w.addEntry({ name, type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeSec: this.mtime, mtimeNsec: 0, size: 0 });
  }

  async file(name: string, data: Buffer | string): Promise<void> {
    const b = Buffer.isBuffer(data) ? data : Buffer.from(data);
    await this.w.addEntry({ name, type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeSec: this.mtime, mtimeNsec: 0, size: b.length });
    if (b.length) await this.w.write(b);
  }

  /** Writes a layer tar as member `name`, checking it hashes to its planned diff id. */
  async layer(name: string, p: LayerPlan): Promise<void> {
    await this.w.addEntry({ name, type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeSec: this.mtime, mtimeNsec: 0, size: p.size });
    const short = digestShort(p.diffId);
    this.progress.step(`Saving layer ${short} (${sizeText(p.size)})`);
    const bar = this.progress.bytes(short, 'Saving', p.size);
    const h = createHash('sha256');
    let written = 0;
    const sink = new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        written += chunk.length;
        bar.add(chunk.length);
        if (written > p.size) return cb(new ArchiveError(`layer ${p.diffId} grew while it was being saved`));
        h.update(chunk);
        this.w.write(chunk).then(() => cb(), cb);
      },
    });
    if (p.source.kind === 'original') await pipeline(fs.createReadStream(p.source.file), sink);
    else if (p.source.kind === 'blob') await pipeline(fs.createReadStream(p.source.file), decompressor(p.source.codec, p.source.file), sink);
    else await packLayer(p.source.dir, sink);
    bar.done();
    if (written !== p.size || 'sha256:' + h.digest('hex') !== p.diffId) {
      throw new ArchiveError(`layer ${p.row.id} changed while it was being saved (its tar no longer hashes to ${p.diffId})`);
    }
  }
}

/** Writes image `ref` to `out` (ended when complete) as an OCI layout or docker-archive tar. */
export async function saveImage(d: ImageIoDeps, ref: string, out: Writable, format: SaveFormat, progress: ProgressReporter = noProgress): Promise<SaveResponse> {
  if (format !== 'oci-archive' && format !== 'docker-archive') throw invalid(`unknown format "${String(format)}": use oci-archive or docker-archive`);
  sweepOrphans(d.root, d.store);

  const img = d.images.resolve(ref);
  const chain = d.images.chain(img.id);
  const refs = d.store.images.refsOf(img.id);
  const warnings: string[] = [];

  const plans: LayerPlan[] = [];
  for (const row of chain) plans.push(await planLayer(d, row));
  const diffIds = plans.map((p) => p.diffId);
  let config: Buffer;
  if (diffIds.every((x, i) => x === chain[i].diffId)) {
    config = storedConfigBlob(d, img, chain);
  } else {
    config = rewrittenConfigBlob(d, img, diffIds);
    const changed = plans.filter((p, i) => p.diffId !== chain[i].diffId).map((p) => p.row.diffId);
    warnings.push(
      `layer(s) ${changed.map((x) => x.slice(0, 19)).join(', ')} were created from tars strata did not keep; their tars were regenerated, so the saved image has id ${imageIdOf(config.toString('utf8'))} instead of ${img.id}`,
    );
  }
  const configDigest = 'sha256:' + sha256(config);
  if (configDigest !== img.id && warnings.length === 0) {
    warnings.push(`the image's config could not be reproduced exactly; the saved image has id ${configDigest} instead of ${img.id}`);
  }

  const created = Date.parse(img.created);
  const mtime = Number.isFinite(created) && created > 0 ? Math.floor(created / 1000) : 0;
  const ow = new OuterWriter(out, mtime, progress);
  let manifestDigest: string | undefined;
  let size = 0;
  try {
    if (format === 'oci-archive') {
      await ow.file('oci-layout', JSON.stringify({ imageLayoutVersion: '1.0.0' }));
      await ow.dir('blobs');
      await ow.dir('blobs/sha256');
      const seen = new Set<string>();
      for (const p of plans) {
        if (seen.has(p.diffId)) continue;
        seen.add(p.diffId);
        await ow.layer(`blobs/sha256/${hexOf(p.diffId)}`, p);
      }
      progress.step(`Saving config ${digestShort(configDigest)}`);
      await ow.file(`blobs/sha256/${hexOf(configDigest)}`, config);
      const manifest = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: MT_MANIFEST,
          config: { mediaType: MT_CONFIG, digest: configDigest, size: config.length },
          layers: plans.map((p) => ({ mediaType: MT_LAYER, digest: p.diffId, size: p.size })),
        }),
      );
      manifestDigest = 'sha256:' + sha256(manifest);
      progress.step(`Saving manifest ${digestShort(manifestDigest)}`);
      await ow.file(`blobs/sha256/${hexOf(manifestDigest)}`, manifest);
      const desc = { mediaType: MT_MANIFEST, digest: manifestDigest, size: manifest.length };
      const manifests = refs.length
        ? refs.map((r) => ({ ...desc, annotations: { [ANN_CONTAINERD_NAME]: r, [ANN_REF_NAME]: parseRef(r).tag } }))
        : [desc];
      await ow.file('index.json', JSON.stringify({ schemaVersion: 2, mediaType: MT_INDEX, manifests }));
    } else {
      // Classic `docker save`: one directory per layer named by a v1-style id (here: its chain id).
      const ids: string[] = [];
      let parent: string | null = null;
      for (const p of plans) {
        parent = chainId(parent, p.diffId);
        ids.push(hexOf(parent));
      }
      for (let i = 0; i < plans.length; i++) {
        const id = ids[i];
        await ow.dir(id);
        await ow.file(`${id}/VERSION`, '1.0');
        await ow.file(`${id}/json`, JSON.stringify({ id, ...(i > 0 ? { parent: ids[i - 1] } : {}), created: img.created, os: 'linux' }));
        await ow.layer(`${id}/layer.tar`, plans[i]);
      }
      progress.step(`Saving config ${digestShort(configDigest)}`);
      await ow.file(`${hexOf(configDigest)}.json`, config);
      const repoTags = refs;
      await ow.file(
        'manifest.json',
        JSON.stringify([{ Config: `${hexOf(configDigest)}.json`, RepoTags: repoTags.length ? repoTags : null, Layers: ids.map((id) => `${id}/layer.tar`) }]),
      );
      if (refs.length && ids.length) {
        const repos: Record<string, Record<string, string>> = {};
        for (const r of refs) {
          const { name, tag } = parseRef(r);
          (repos[name] ??= {})[tag] = ids[ids.length - 1];
        }
        await ow.file('repositories', JSON.stringify(repos));
      }
    }
    size = (await ow.w.finish(true)).bytes;
  } catch (err) {
    if (err instanceof ArchiveError) throw new DomainError('internal', `cannot save ${ref}: ${err.message}`);
    throw err;
  }
  const layers: SavedLayer[] = plans.map((p) => ({ digest: p.diffId, diffId: p.diffId, size: p.size, original: p.source.kind !== 'pack' }));
  d.log.info({ image: img.id, format, bytes: size }, 'image saved');
  return { format, id: configDigest, refs, layers, config: configDigest, manifest: manifestDigest, size, warnings };
}

// ---------------------------------------------------------------------------------------------
// load

interface LayerRef {
  member: string;
  /** Blob digest the manifest gives (OCI, docker blobs/sha256 layout). */
  digest?: string;
  mediaType?: string;
}

interface Candidate {
  what: string;
  configMember: string;
  configDigest?: string;
  layers: LayerRef[];
  refs: string[];
}

interface Prepared {
  c: Candidate;
  config: Buffer;
  doc: OciConfigDoc;
  diffIds: string[];
}

export interface OciConfigDoc {
  created?: string;
  architecture?: string;
  os?: string;
  config?: {
    Env?: string[] | null;
    Cmd?: string[] | null;
    Entrypoint?: string[] | null;
    WorkingDir?: string;
    User?: string;
    Labels?: Record<string, string> | null;
    ExposedPorts?: Record<string, unknown> | null;
    Volumes?: Record<string, unknown> | null;
    Shell?: string[] | null;
  } | null;
  rootfs?: { type?: string; diff_ids?: unknown };
  history?: { created?: string; created_by?: string; comment?: string; empty_layer?: boolean }[];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function strArray(v: unknown): string[] | null {
  return Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : null;
}

/** A user-facing name from an annotation / RepoTags entry: docker.io/library/x -> x; invalid -> undefined. */
function refFromName(name: string): string | undefined {
  let n = name;
  if (n.startsWith('docker.io/library/')) n = n.slice('docker.io/library/'.length);
  else if (n.startsWith('docker.io/')) n = n.slice('docker.io/'.length);
  try {
    return formatRef(parseRef(n));
  } catch {
    return undefined;
  }
}

function blobMember(digest: unknown, what: string): string {
  if (typeof digest !== 'string' || !/^[a-z0-9]+:[a-f0-9]+$/.test(digest)) throw new CorruptArchiveError(`${what} has an invalid digest ${JSON.stringify(digest)}`);
  const [alg, hex] = digest.split(':');
  if (alg !== 'sha256') throw new UnsupportedArchiveError(digest, `${what}: only sha256 digests are supported`);
  return `blobs/sha256/${hex}`;
}

function checkBlob(a: OuterArchive, member: string, digest: string, size: unknown, what: string): void {
  const info = a.info(member, what);
  if ('sha256:' + info.sha256 !== digest) throw new CorruptArchiveError(`${what} ${digest} does not match its content (sha256:${info.sha256})`);
  if (typeof size === 'number' && size !== info.size) throw new CorruptArchiveError(`${what} ${digest} is ${info.size} bytes, the manifest says ${size}`);
}

const ourArch = ARCH[process.arch] ?? process.arch;

function ociCandidates(a: OuterArchive): Candidate[] {
  const index = a.json('index.json', 'index');
  if (!isObject(index) || !Array.isArray(index.manifests)) throw new CorruptArchiveError('index.json has no "manifests" list');
  const out: Candidate[] = [];
  const walk = (desc: Record<string, unknown>, names: string[], depth: number): void => {
    const member = blobMember(desc.digest, 'manifest');
    checkBlob(a, member, desc.digest as string, desc.size, 'manifest');
    const doc = a.json(member, 'manifest');
    if (!isObject(doc)) throw new CorruptArchiveError(`manifest ${String(desc.digest)} is not a JSON object`);
    const mt = (doc.mediaType as string | undefined) ?? (desc.mediaType as string | undefined);
    if (mt === MT_INDEX || mt === MT_DOCKER_LIST || (mt === undefined && Array.isArray(doc.manifests))) {
      if (depth > 4) throw new CorruptArchiveError('image indexes nested too deeply');
      const subs = (Array.isArray(doc.manifests) ? doc.manifests : []).filter(isObject);
      const ours = subs.filter((s) => {
        const p = s.platform;
        return !isObject(p) || ((p.os === undefined || p.os === 'linux') && (p.architecture === undefined || p.architecture === ourArch));
      });
      if (ours.length === 0) throw new UnsupportedArchiveError(String(desc.digest), `the image index has no manifest for linux/${ourArch}`);
      walk(ours[0], names, depth + 1);
      return;
    }
    if (mt !== undefined && mt !== MT_MANIFEST && mt !== MT_DOCKER_MANIFEST) throw new UnsupportedArchiveError(String(desc.digest), `unsupported manifest media type ${mt}`);
    const cfg = doc.config;
    if (!isObject(cfg)) throw new CorruptArchiveError(`manifest ${String(desc.digest)} has no config`);
    const configMember = blobMember(cfg.digest, 'config');
    checkBlob(a, configMember, cfg.digest as string, cfg.size, 'config');
    if (!Array.isArray(doc.layers)) throw new CorruptArchiveError(`manifest ${String(desc.digest)} has no layers list`);
    const layers = doc.layers.map((l: unknown, i: number): LayerRef => {
      if (!isObject(l)) throw new CorruptArchiveError(`manifest ${String(desc.digest)}: layer ${i} is not an object`);
      const m = blobMember(l.digest, `layer ${i}`);
      checkBlob(a, m, l.digest as string, l.size, `layer blob`);
      return { member: m, digest: l.digest as string, mediaType: typeof l.mediaType === 'string' ? l.mediaType : undefined };
    });
    out.push({ what: `manifest ${String(desc.digest).slice(0, 19)}`, configMember, configDigest: cfg.digest as string, layers, refs: names });
  };
  for (const m of index.manifests) {
    if (!isObject(m)) throw new CorruptArchiveError('index.json: a manifest entry is not an object');
    const ann = isObject(m.annotations) ? m.annotations : {};
    const names: string[] = [];
    const full = ann[ANN_CONTAINERD_NAME];
    const refName = ann[ANN_REF_NAME];
    let r: string | undefined;
    if (typeof full === 'string') r = refFromName(full);
    // ref.name is a full reference when it has a repository (a '/' or a ':' tag separator)
    else if (typeof refName === 'string' && (refName.includes('/') || refName.includes(':'))) r = refFromName(refName);
    if (r !== undefined) names.push(r);
    walk(m, names, 0);
  }
  return out;
}

function dockerCandidates(a: OuterArchive): Candidate[] {
  const doc = a.json('manifest.json', 'manifest');
  if (!Array.isArray(doc)) throw new CorruptArchiveError('manifest.json is not a list');
  return doc.map((e: unknown, i: number): Candidate => {
    if (!isObject(e) || typeof e.Config !== 'string' || !Array.isArray(e.Layers)) {
      throw new CorruptArchiveError(`manifest.json entry ${i} lacks Config or Layers`);
    }
    const configMember = e.Config;
    const byName = /(?:^|\/)(?:sha256\/)?([0-9a-f]{64})(?:\.json)?$/.exec(configMember);
    const refs = (strArray(e.RepoTags) ?? []).map(refFromName).filter((r): r is string => r !== undefined);
    const layers = e.Layers.map((l: unknown): LayerRef => {
      if (typeof l !== 'string') throw new CorruptArchiveError(`manifest.json entry ${i}: a layer is not a path`);
      const blob = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(l);
      return { member: l, digest: blob ? `sha256:${blob[1]}` : undefined };
    });
    for (const l of layers) if (l.digest) checkBlob(a, l.member, l.digest, undefined, 'layer blob');
    return { what: `image ${i} (${configMember})`, configMember, configDigest: byName ? `sha256:${byName[1]}` : undefined, layers, refs };
  });
}

/** sha256 of the uncompressed layer tar: the member's own digest, or through gunzip. */
async function diffIdOf(a: OuterArchive, l: LayerRef): Promise<string> {
  const head = await readHead(a.stream(l.member, 'layer'), 4);
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) {
    throw new UnsupportedArchiveError(l.member, 'zstd-compressed layers are not supported (save the image uncompressed or with gzip)');
  }
  if (!(head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b)) return 'sha256:' + a.info(l.member, 'layer').sha256;
  const h = createHash('sha256');
  try {
    await pipeline(
      a.stream(l.member, 'layer'),
      zlib.createGunzip(),
      new Writable({
        write(chunk: Buffer, _e, cb) {
          h.update(chunk);
          cb();
        },
      }),
    );
  } catch (err) {
    throw new CorruptArchiveError(`layer ${l.member}: invalid gzip data: ${(err as Error).message}`);
  }
  return 'sha256:' + h.digest('hex');
}

async function readHead(s: Readable, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let len = 0;
  try {
    for await (const c of s) {
      chunks.push(c as Buffer);
      len += (c as Buffer).length;
      if (len >= n) break;
    }
  } finally {
    s.destroy();
  }
  return Buffer.concat(chunks).subarray(0, n);
}

export function toImageConfig(doc: OciConfigDoc): ImageConfig {
  const c = doc.config ?? {};
  const out: ImageConfig = {
    env: strArray(c.Env) ?? [],
    cmd: strArray(c.Cmd),
    entrypoint: strArray(c.Entrypoint),
    workingDir: typeof c.WorkingDir === 'string' ? c.WorkingDir : '',
    user: typeof c.User === 'string' ? c.User : '',
    labels: isObject(c.Labels) ? Object.fromEntries(Object.entries(c.Labels).filter(([, v]) => typeof v === 'string')) as Record<string, string> : {},
  };
  if (isObject(c.ExposedPorts) && Object.keys(c.ExposedPorts).length) out.exposedPorts = Object.keys(c.ExposedPorts);
  if (isObject(c.Volumes) && Object.keys(c.Volumes).length) out.volumes = Object.keys(c.Volumes);
  const shell = strArray(c.Shell);
  if (shell) out.shell = shell;
  return out;
}

export function toHistory(doc: OciConfigDoc, layerSizes: number[]): HistoryRecord[] {
  const hist = Array.isArray(doc.history) ? doc.history : [];
  let li = 0;
  return hist.map((h) => {
    const empty = h.empty_layer === true;
    const size = empty ? 0 : (layerSizes[li++] ?? 0);
    return {
      created: typeof h.created === 'string' ? h.created : '',
      createdBy: typeof h.created_by === 'string' ? h.created_by : '',
      comment: typeof h.comment === 'string' ? h.comment : '',
      emptyLayer: empty,
      size,
    };
  });
}

async function prepare(a: OuterArchive, c: Candidate): Promise<Prepared> {
  const config = a.bytes(c.configMember, 'config');
  const digest = 'sha256:' + sha256(config);
  if (c.configDigest !== undefined && c.configDigest !== digest) {
    throw new CorruptArchiveError(`${c.what}: config ${c.configDigest} does not match its content (${digest})`);
  }
  let doc: OciConfigDoc;
  try {
    doc = JSON.parse(config.toString('utf8')) as OciConfigDoc;
  } catch (err) {
    throw new CorruptArchiveError(`${c.what}: the config is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(doc as unknown)) throw new CorruptArchiveError(`${c.what}: the config is not a JSON object`);
  if (doc.os !== undefined && doc.os !== 'linux') throw new UnsupportedArchiveError(c.configMember, `image is for os "${String(doc.os)}", not linux`);
  const diffIds = strArray(doc.rootfs?.diff_ids);
  if (diffIds === null || diffIds.some((x) => !DIGEST_RE.test(x))) throw new CorruptArchiveError(`${c.what}: the config has no valid rootfs.diff_ids`);
  if (diffIds.length !== c.layers.length) {
    throw new CorruptArchiveError(`${c.what}: the config lists ${diffIds.length} layer(s) (rootfs.diff_ids), the manifest ${c.layers.length}`);
  }
  for (let i = 0; i < c.layers.length; i++) {
    const got = await diffIdOf(a, c.layers[i]);
    if (got !== diffIds[i]) {
      throw new CorruptArchiveError(`${c.what}: layer ${i + 1} (${c.layers[i].member}) has diff id ${got}, the config says ${diffIds[i]}`);
    }
  }
  return { c, config, doc, diffIds };
}

/** Keeps the exact tar of a layer whose directory would not pack back to the same bytes. */
async function keepOriginal(d: ImageIoDeps, a: OuterArchive, l: LayerRef, layer: LayerRow, written: string[]): Promise<void> {
  const dest = originalTarPath(d.root, layer.diffId);
  if (fs.existsSync(dest)) return;
  const canon = await packLayer(d.layers.path(layer.id), null);
  if (canon.diffId === layer.diffId) return;
  fs.mkdirSync(path.dirname(dest), { recursive: true, mode: 0o700 });
  const tmp = `${dest}.tmp-${randomBytes(4).toString('hex')}`;
  try {
    const head = await readHead(a.stream(l.member, 'layer'), 2);
    const gz = head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b;
    const file = a.file(l.member);
    if (!gz && file !== undefined) fs.linkSync(file, tmp);
    else if (gz) await pipeline(a.stream(l.member, 'layer'), zlib.createGunzip(), fs.createWriteStream(tmp, { flags: 'wx', mode: 0o600 }));
    else await pipeline(a.stream(l.member, 'layer'), fs.createWriteStream(tmp, { flags: 'wx', mode: 0o600 }));
    fs.renameSync(tmp, dest);
    written.push(dest);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/** Loads every image of the archive `input` (the client streams it). All or nothing. */
export async function loadImages(d: ImageIoDeps, input: Readable, progress: ProgressReporter = noProgress): Promise<LoadResponse> {
  sweepOrphans(d.root, d.store);

  const tmp = d.root.tempDir('load');
  const createdLayers: string[] = [];
  const writtenFiles: string[] = [];
  const warnings: string[] = [];
  try {
    const a = await OuterArchive.read(input, tmp);
    let format: LoadResponse['format'];
    let candidates: Candidate[];
    if (a.has('index.json') && (a.has('oci-layout') || !a.has('manifest.json'))) {
      format = 'oci-archive';
      candidates = ociCandidates(a);
    } else if (a.has('manifest.json')) {
      format = 'docker-archive';
      candidates = dockerCandidates(a);
    } else {
      throw new CorruptArchiveError('neither an OCI image layout (index.json) nor a docker archive (manifest.json)');
    }
    if (candidates.length === 0) throw new CorruptArchiveError('the archive holds no image');
    // One image under several names (an index entry per tag): load it once with all its names.
    const byConfig = new Map<string, Candidate>();
    for (const c of candidates) {
      const key = c.configDigest ?? 'sha256:' + a.info(c.configMember, 'config').sha256;
      const seen = byConfig.get(key);
      if (seen === undefined) byConfig.set(key, { ...c, refs: [...c.refs] });
      else for (const r of c.refs) if (!seen.refs.includes(r)) seen.refs.push(r);
    }
    candidates = [...byConfig.values()];

    // Verify everything before creating anything.
    const prepared: Prepared[] = [];
    for (const c of candidates) prepared.push(await prepare(a, c));

    // Layers.
    const chains: LayerRow[][] = [];
    const reusedFlags: boolean[][] = [];
    for (const p of prepared) {
      const rows: LayerRow[] = [];
      const reused: boolean[] = [];
      let parent: string | null = null;
      for (let i = 0; i < p.diffIds.length; i++) {
        const want = chainId(parent, p.diffIds[i]);
        const existing = d.store.layers.get(want);
        let row: LayerRow;
        const short = digestShort(p.diffIds[i]);
        if (existing !== undefined && existing.state === 'ready') {
          row = existing;
          reused.push(true);
          progress.step(`Layer ${short} already exists`);
        } else {
          const l = p.c.layers[i];
          const blobSize = a.info(l.member, 'layer').size;
          progress.step(`Loading layer ${short} (${sizeText(blobSize)})`);
          const bar = progress.bytes(short, 'Loading', blobSize);
          // pipeline: an error of either side destroys the other (no fd left open)
          const counted = streamPipeline(a.stream(l.member, 'layer'), countingStream(bar), () => undefined);
          row = await d.layers.create(parent, { kind: 'tar', input: counted }, '');
          bar.done();
          createdLayers.push(row.id);
          reused.push(false);
          if (row.id !== want) throw new CorruptArchiveError(`layer ${l.member} extracted to diff id ${row.diffId}, expected ${p.diffIds[i]}`);
        }
        await keepOriginal(d, a, p.c.layers[i], row, writtenFiles);
        rows.push(row);
        parent = row.id;
      }
      chains.push(rows);
      reusedFlags.push(reused);
    }

    // Images, all in one transaction.
    const results: LoadedImage[] = [];
    const inserts: (() => void)[] = [];
    for (let k = 0; k < prepared.length; k++) {
      const p = prepared[k];
      const rows = chains[k];
      const id = imageIdOf(p.config.toString('utf8'));
      const existed = d.store.images.get(id) !== undefined;
      const config = toImageConfig(p.doc);
      const history = toHistory(p.doc, rows.map((r) => r.size));
      const created = typeof p.doc.created === 'string' && !Number.isNaN(Date.parse(p.doc.created)) ? p.doc.created : new Date(0).toISOString();
      if (!existed && ociConfigJson(config, p.diffIds, history, created) !== p.config.toString('utf8')) {
        const f = rawConfigPath(d.root, id);
        if (!fs.existsSync(f)) {
          writeAtomic(f, p.config);
          writtenFiles.push(f);
        }
      }
      inserts.push(() => {
        if (d.store.images.get(id) === undefined) {
          d.store.images.insert({ id, config, layers: rows.map((r) => r.id), created, parent: null, history });
        }
        for (const r of p.c.refs) d.store.images.tag(r, id);
      });
      results.push({
        id,
        refs: p.c.refs,
        existed,
        layers: rows.map((r, i) => ({ diffId: r.diffId, id: r.id, size: r.size, reused: reusedFlags[k][i] })),
      });
    }
    d.store.transaction(() => {
      for (const f of inserts) f();
    });
    d.log.info({ format, images: results.map((r) => r.id) }, 'images loaded');
    return { format, images: results, warnings };
  } catch (err) {
    for (const f of d.layers.removeCreated(createdLayers)) d.log.warn({ layer: f.id, err: f.err }, 'cannot remove layer of a failed load');
    for (const f of writtenFiles) fs.rmSync(f, { force: true });
    if (err instanceof ArchiveError) throw invalid(`cannot load the archive: ${err.message}`);
    throw err;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
