// `strata pull`: an image from a registry into the store.
//
// The manifest (an index resolved to one platform) and the config are fetched and verified first.
// Layers not already in the store are then downloaded, up to 3 at a time, each streamed straight
// through its decompressor into a staged layer directory while the blob's digest is computed; the
// bytes also go to distribution/downloads/<digest>, so an interrupted download resumes with a Range
// request (within this pull after a short retry, or in the next pull). Nothing is recorded until
// every blob matched its digest and every layer its diff id; then the layers are committed bottom-up
// and the image inserted and tagged in one transaction. On any failure the staged and created
// layers are removed again: no image, no partial layer.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import type * as http from 'node:http';
import { PassThrough, pipeline as streamPipeline } from 'node:stream';
import { ArchiveError } from '../archive';
import { decompressor, type Codec } from '../archive/decompress';
import { DomainError, invalid } from '../model/errors';
import { countingStream, noProgress, sizeText } from '../model/progress';
import type { ProgressReporter } from '../model/progress';
import type { PullRequest, PullResponse } from '../model/types-registry';
import type { StagedLayer } from '../layers/layer-store';
import { chainId } from '../layers/layer-store';
import type { Credentials } from '../registry/auth';
import { repoScope } from '../registry/auth';
import { readBody, RegistryClient, RegistryError } from '../registry/client';
import {
  ACCEPT_MANIFESTS,
  compressionOf,
  hostPlatform,
  ManifestError,
  parseManifest,
  parsePlatform,
  platformString,
  selectPlatform,
  sha256Digest,
  type Descriptor,
  type ImageManifest,
  type Platform,
} from '../registry/manifest';
import { familiarName, localTagOf, parseReference, type Reference } from '../registry/reference';
import type { LayerRow } from '../store/types';
import type { DistributionStore } from './dist-store';
import type { ImageIoDeps } from './oci-layout';
import { toHistory, toImageConfig, type OciConfigDoc } from './oci-config';
import { imageIdOf, ociConfigJson } from './oci-config';
import { rawConfigPath, writeAtomic } from './oci-store';

export interface RegistryDeps extends ImageIoDeps {
  dist: DistributionStore;
  /** Per-registry CA files: <certsDir>/<host[:port]>/*.crt. */
  certsDir?: string;
  /** Registries reached over plain HTTP or unverified TLS (stratad --insecure-registry). */
  insecureRegistries?: string[];
}

/** Layer downloads at once, as Docker's default. */
export const PULL_CONCURRENCY = 3;
/** Waits before retrying an interrupted blob download (then the pull fails; the next one resumes). */
const RETRY_DELAYS_MS = [250, 1000, 2000];

/** A blob's content did not match its digest. */
export class DigestMismatchError extends DomainError {
  constructor(message: string) {
    super('upstream', message);
  }
}

export function registryClient(d: RegistryDeps, r: Reference, tlsVerify: boolean | undefined, auth: Credentials | undefined): RegistryClient {
  const insecure = tlsVerify === false || (d.insecureRegistries ?? []).includes(r.domain);
  return new RegistryClient({ domain: r.domain, tlsVerify: !insecure, certsDir: d.certsDir, credentials: auth });
}

/** `name` as the user wrote it, for messages: host/repo:tag. */
function shown(r: Reference): string {
  return `${familiarName(r)}${r.tag !== undefined ? ':' + r.tag : ''}${r.digest !== undefined ? '@' + r.digest : ''}`;
}

/** Docker's short layer name in progress lines: 12 hex digits of the blob digest. */
export function shortBlob(digest: string): string {
  return digest.replace(/^sha256:/, '').slice(0, 12);
}

interface FetchedManifest {
  body: Buffer;
  digest: string;
  contentType?: string;
}

/** GET a manifest by tag or digest; its digest is checked against the one asked for and the one the registry names. */
export async function fetchManifest(c: RegistryClient, repo: string, reference: string, signal?: AbortSignal): Promise<FetchedManifest> {
  let res: http.IncomingMessage;
  try {
    res = await c.request('GET', `/v2/${repo}/manifests/${reference}`, { headers: { Accept: ACCEPT_MANIFESTS }, scopes: [repoScope(repo, ['pull'])], signal });
  } catch (err) {
    if (err instanceof RegistryError && err.httpStatus === 404) {
      const what = err.code === 'NAME_UNKNOWN' ? `repository ${repo} not found` : `manifest for ${repo}:${reference} not found`;
      throw new RegistryError(`${what} on ${c.host}: ${err.code ?? 'MANIFEST_UNKNOWN'}`, 'not-found', 404, err.code);
    }
    throw err;
  }
  const body = await readBody(res);
  const digest = sha256Digest(body);
  if (reference.startsWith('sha256:') && reference !== digest) {
    throw new DigestMismatchError(`manifest ${reference} of ${repo} does not match its content (it hashes to ${digest}); nothing was stored`);
  }
  const named = res.headers['docker-content-digest'];
  if (typeof named === 'string' && named.startsWith('sha256:') && named !== digest) {
    throw new DigestMismatchError(`manifest ${repo}:${reference}: the registry names it ${named} but its content hashes to ${digest}; nothing was stored`);
  }
  const ct = res.headers['content-type'];
  return { body, digest, contentType: typeof ct === 'string' ? ct : undefined };
}

/** GETs a small blob (a config) and checks its digest and size. */
export async function fetchSmallBlob(c: RegistryClient, repo: string, desc: Descriptor, signal?: AbortSignal): Promise<Buffer> {
  const res = await c.request('GET', `/v2/${repo}/blobs/${desc.digest}`, { scopes: [repoScope(repo, ['pull'])], signal });
  const body = await readBody(res, 64 << 20);
  const got = sha256Digest(body);
  if (got !== desc.digest) throw new DigestMismatchError(`blob ${desc.digest} (config) does not match its content (it hashes to ${got}); nothing was stored`);
  if (body.length !== desc.size) throw new DigestMismatchError(`blob ${desc.digest} (config) is ${body.length} bytes, the manifest says ${desc.size}`);
  return body;
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(new DomainError('cancelled', 'the pull was cancelled'));
    }, { once: true });
  });
}

interface LayerJob {
  index: number;
  desc: Descriptor;
  diffId: string;
  codec: Codec;
}

/**
 * Streams one blob into `sink`: first what an earlier attempt left in the download file, then the
 * registry's bytes from that offset (Range), appending them to the file. Computes the digest over
 * all of it and keeps reading (without writing) if the sink goes away, so a corrupt blob is
 * reported as a digest mismatch rather than as whatever the decompressor made of it.
 */
async function download(
  c: RegistryClient,
  repo: string,
  desc: Descriptor,
  partial: string,
  sink: PassThrough,
  progress: ProgressReporter,
  signal?: AbortSignal,
): Promise<void> {
  const id = shortBlob(desc.digest);
  const hash = createHash('sha256');
  let offset = 0;
  const bar = progress.bytes(id, 'Downloading', desc.size);
  const write = async (chunk: Buffer): Promise<void> => {
    hash.update(chunk);
    offset += chunk.length;
    bar.add(chunk.length);
    if (sink.destroyed || sink.writableEnded) return;
    if (!sink.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          sink.off('drain', done);
          sink.off('close', done);
          resolve();
        };
        sink.on('drain', done);
        sink.on('close', done);
      });
    }
  };
  let have = 0;
  try {
    have = fs.statSync(partial).size;
  } catch {
    // nothing downloaded yet
  }
  if (have > desc.size) {
    fs.rmSync(partial, { force: true });
    have = 0;
  }
  if (have > 0) {
    progress.step(`${id}: Resuming download at ${sizeText(have)} of ${sizeText(desc.size)}`);
    // opened now: another pull that finished with this blob may rename the file while we read it
    const rfd = fs.openSync(partial, 'r');
    for await (const chunk of fs.createReadStream('', { fd: rfd, start: 0, end: have - 1 })) await write(chunk as Buffer);
  }
  let fd = -1;
  try {
    for (let attempt = 0; offset < desc.size; attempt++) {
      try {
        const res = await c.request('GET', `/v2/${repo}/blobs/${desc.digest}`, {
          headers: offset > 0 ? { Range: `bytes=${offset}-` } : {},
          scopes: [repoScope(repo, ['pull'])],
          ok: [200, 206],
          signal,
        });
        let skip = 0;
        if (offset > 0 && res.statusCode === 200) skip = offset; // Range ignored: the whole blob again
        if (res.statusCode === 206) {
          const m = /^bytes (\d+)-/.exec(String(res.headers['content-range'] ?? ''));
          if (m === null || Number(m[1]) !== offset) {
            res.destroy();
            throw new RegistryError(`blob ${desc.digest}: the registry answered a Range request for byte ${offset} with ${String(res.headers['content-range'])}`, 'upstream');
          }
        }
        for await (const raw of res) {
          let chunk = raw as Buffer;
          if (skip > 0) {
            const n = Math.min(skip, chunk.length);
            skip -= n;
            chunk = chunk.subarray(n);
            if (chunk.length === 0) continue;
          }
          if (offset + chunk.length > desc.size) throw new DigestMismatchError(`blob ${desc.digest} is larger than the ${desc.size} bytes the manifest says; nothing was stored`);
          if (fd < 0) fd = fs.openSync(partial, 'a', 0o600);
          fs.writeSync(fd, chunk);
          await write(chunk);
        }
        if (offset < desc.size) throw Object.assign(new Error(`the connection closed after ${offset} of ${desc.size} bytes`), { code: 'ECONNRESET' });
      } catch (err) {
        const permanent = err instanceof DigestMismatchError || signal?.aborted || (err instanceof RegistryError && err.httpStatus !== undefined && err.httpStatus < 500);
        if (permanent || attempt >= RETRY_DELAYS_MS.length) {
          if (err instanceof RegistryError || err instanceof DigestMismatchError) throw err;
          throw new RegistryError(`downloading blob ${desc.digest} failed after ${offset} of ${desc.size} bytes: ${(err as Error).message} (pull again to resume)`, 'upstream');
        }
        progress.step(`${id}: Retrying download at ${sizeText(offset)} (${(err as Error).message})`);
        await delay(RETRY_DELAYS_MS[attempt], signal);
      }
    }
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
  bar.done();
  const got = 'sha256:' + hash.digest('hex');
  if (got !== desc.digest) {
    fs.rmSync(partial, { force: true });
    throw new DigestMismatchError(`blob ${desc.digest} does not match its content (it hashes to ${got}); nothing was stored`);
  }
  progress.step(`${id}: Verifying Checksum`);
  progress.step(`${id}: Download complete`);
}

/** Downloads in progress in this daemon, by blob digest: two pulls never append to one download file. */
const inFlight = new Map<string, Promise<unknown>>();

async function oneAtATime<T>(digest: string, fn: () => Promise<T>): Promise<T> {
  for (let prev = inFlight.get(digest); prev !== undefined; prev = inFlight.get(digest)) await prev.catch(() => undefined);
  const p = fn();
  inFlight.set(digest, p);
  try {
    return await p;
  } finally {
    if (inFlight.get(digest) === p) inFlight.delete(digest);
  }
}

/** Downloads and extracts one layer into a staged directory; checks its diff id. */
async function fetchLayer(d: RegistryDeps, c: RegistryClient, repo: string, job: LayerJob, progress: ProgressReporter, signal?: AbortSignal): Promise<StagedLayer & { tarSize: number }> {
  const partial = d.dist.downloadPath(job.desc.digest);
  const sink = new PassThrough({ highWaterMark: 1 << 20 });
  const dec = decompressor(job.codec, `blob ${job.desc.digest}`);
  let tarSize = 0;
  const tar = streamPipeline(sink, dec, countingStream({ add: (n) => (tarSize += n), done: () => undefined }), () => undefined);
  const staging = d.layers.stage({ kind: 'tar', input: tar });
  let downloadErr: unknown;
  try {
    await download(c, repo, job.desc, partial, sink, progress, signal);
    sink.end();
  } catch (err) {
    downloadErr = err;
    sink.destroy(err as Error);
  }
  let staged: StagedLayer | undefined;
  let stageErr: unknown;
  try {
    staged = await staging;
  } catch (err) {
    stageErr = err;
  }
  if (downloadErr !== undefined) {
    if (staged) d.layers.discard(staged);
    throw downloadErr;
  }
  if (stageErr !== undefined || staged === undefined) {
    fs.rmSync(partial, { force: true });
    const msg = stageErr instanceof Error ? stageErr.message : String(stageErr);
    throw new RegistryError(`layer ${job.index + 1} (blob ${job.desc.digest}) is not a valid ${job.codec === 'none' ? '' : job.codec + ' '}layer tar: ${msg}`, 'upstream');
  }
  if (staged.diffId !== job.diffId) {
    d.layers.discard(staged);
    fs.rmSync(partial, { force: true });
    throw new DigestMismatchError(`layer ${job.index + 1} (blob ${job.desc.digest}) has diff id ${staged.diffId}, the image config says ${job.diffId}; nothing was stored`);
  }
  return { ...staged, tarSize };
}

/** Runs `fn` over `items` with at most `n` at a time; the first failure stops starting new ones. */
export async function pool<T, R>(items: T[], n: number, fn: (t: T) => Promise<R>, onQueued?: (t: T) => void): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  let failed = false;
  items.slice(n).forEach((t) => onQueued?.(t));
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const results = await Promise.allSettled(Array.from({ length: Math.min(n, items.length) }, worker));
  const bad = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (bad) throw bad.reason;
  return out;
}

function parseConfig(config: Buffer, what: string): OciConfigDoc {
  let doc: unknown;
  try {
    doc = JSON.parse(config.toString('utf8'));
  } catch (err) {
    throw new ManifestError(`${what}: the config is not valid JSON: ${(err as Error).message}`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new ManifestError(`${what}: the config is not a JSON object`);
  return doc as OciConfigDoc;
}

/** Resolves the reference to an image manifest (through an index for `platform`). */
async function resolveManifest(c: RegistryClient, r: Reference, platform: Platform, explicit: boolean, progress: ProgressReporter, signal?: AbortSignal): Promise<{ top: FetchedManifest; manifest: ImageManifest; fetched: FetchedManifest }> {
  const top = await fetchManifest(c, r.path, r.digest ?? r.tag!, signal);
  const parsed = parseManifest(top.body, top.contentType);
  if (parsed.kind === 'manifest') return { top, manifest: parsed, fetched: top };
  const entry = selectPlatform(parsed, platform);
  if (entry === undefined) {
    const have = parsed.manifests.filter((m) => m.platform).map((m) => platformString(m.platform!));
    throw new RegistryError(`no manifest for ${platformString(platform)} in the image index of ${shown(r)}${explicit ? '' : ' (the host platform; choose another with --platform)'}: it has ${have.join(', ') || 'no platforms'}`, 'not-found', 404);
  }
  progress.step(`Resolved ${platformString(platform)} to manifest ${entry.digest}`);
  const fetched = await fetchManifest(c, r.path, entry.digest, signal);
  const m = parseManifest(fetched.body, fetched.contentType ?? entry.mediaType);
  if (m.kind !== 'manifest') throw new ManifestError(`the index entry ${entry.digest} of ${shown(r)} is itself an index`);
  return { top, manifest: m, fetched };
}

export async function pullImage(d: RegistryDeps, req: PullRequest, progress: ProgressReporter = noProgress, signal?: AbortSignal): Promise<PullResponse> {
  const r = parseReference(req.ref);
  const platform = req.platform ? parsePlatform(req.platform) : hostPlatform();
  if (platform.os !== 'linux') throw invalid(`platform ${platformString(platform)}: strata runs linux images only`);
  d.dist.ensureDirs();
  d.dist.sweep(d.store);
  const c = registryClient(d, r, req.tlsVerify, req.auth);
  const repo = r.path;
  const createdLayers: string[] = [];
  const staged: StagedLayer[] = [];
  const written: string[] = [];
  /** Blobs fetched and verified; they stay in downloads/ (the next pull reads them from disk) until the pull succeeds. */
  const downloaded: string[] = [];
  try {
    progress.step(`${r.tag ?? r.digest}: Pulling from ${repo}`);
    const { top, manifest, fetched } = await resolveManifest(c, r, platform, req.platform !== undefined, progress, signal);
    const config = await fetchSmallBlob(c, repo, manifest.config, signal);
    const doc = parseConfig(config, shown(r));
    if (doc.os !== undefined && doc.os !== 'linux') throw invalid(`${shown(r)} is an image for ${String(doc.os)}, not linux`);
    if (req.platform !== undefined && doc.architecture !== undefined && doc.architecture !== platform.architecture) {
      throw new RegistryError(`${shown(r)} is a single-platform image for ${String(doc.os ?? 'linux')}/${String(doc.architecture)}, not ${platformString(platform)}`, 'not-found');
    }
    const diffIds = Array.isArray(doc.rootfs?.diff_ids) ? (doc.rootfs!.diff_ids as unknown[]) : null;
    if (diffIds === null || diffIds.some((x) => typeof x !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(x))) throw new ManifestError(`${shown(r)}: the config has no valid rootfs.diff_ids`);
    if (diffIds.length !== manifest.layers.length) {
      throw new ManifestError(`${shown(r)}: the config lists ${diffIds.length} layer(s), the manifest ${manifest.layers.length}`);
    }
    const jobs: LayerJob[] = manifest.layers.map((desc, index) => {
      const comp = compressionOf(desc.mediaType);
      if (comp === 'unknown') throw new ManifestError(`layer ${index + 1} (${desc.digest}) has unsupported media type ${desc.mediaType || '(none)'}`);
      if (desc.urls?.length) throw new ManifestError(`layer ${index + 1} (${desc.digest}) is a foreign layer (${desc.urls[0]}); strata does not fetch foreign layers`);
      return { index, desc, diffId: diffIds[index] as string, codec: comp };
    });

    // Which layers the store already has (by chain id).
    const chain: string[] = [];
    let parent: string | null = null;
    for (const j of jobs) {
      parent = chainId(parent, j.diffId);
      chain.push(parent);
    }
    const need: LayerJob[] = [];
    const seen = new Set<string>();
    for (const j of jobs) {
      const have = d.store.layers.get(chain[j.index]);
      const id = shortBlob(j.desc.digest);
      if (have !== undefined && have.state === 'ready') progress.step(`${id}: Already exists`);
      else if (!seen.has(chain[j.index])) {
        seen.add(chain[j.index]);
        need.push(j);
        progress.step(`${id}: Pulling fs layer`);
      }
    }
    const stagedByIndex = new Map<number, StagedLayer & { tarSize: number }>();
    await pool(
      need,
      PULL_CONCURRENCY,
      async (j) => {
        const s = await oneAtATime(j.desc.digest, () => fetchLayer(d, c, repo, j, progress, signal));
        staged.push(s);
        stagedByIndex.set(j.index, s);
        downloaded.push(j.desc.digest);
        return s;
      },
      (j) => progress.step(`${shortBlob(j.desc.digest)}: Waiting`),
    );

    // Everything verified: keep the blobs (for push), commit the layers bottom-up.
    for (const dg of downloaded) {
      // (absent when a concurrent pull of the same blob kept it first)
      if (fs.existsSync(d.dist.downloadPath(dg))) fs.renameSync(d.dist.downloadPath(dg), d.dist.blobPath(dg));
    }
    const rows: LayerRow[] = [];
    parent = null;
    for (const j of jobs) {
      const s = stagedByIndex.get(j.index);
      let row = d.store.layers.get(chain[j.index]);
      if (s !== undefined) {
        staged.splice(staged.indexOf(s), 1);
        const before = row?.state === 'ready';
        row = d.layers.commit(parent, s, '');
        if (!before) createdLayers.push(row.id);
        progress.step(`${shortBlob(j.desc.digest)}: Pull complete`);
      }
      if (row === undefined || row.state !== 'ready') throw new Error(`layer ${chain[j.index]} vanished during the pull`);
      rows.push(row);
      parent = row.id;
    }

    // The image, tagged, in one transaction (its id is the digest of its config).
    const id = imageIdOf(config.toString('utf8'));
    if (id !== manifest.config.digest) throw new DigestMismatchError(`config ${manifest.config.digest} hashes to ${id}`);
    const existed = d.store.images.get(id) !== undefined;
    const imgConfig = toImageConfig(doc);
    const history = toHistory(doc, rows.map((x) => x.size));
    const created = typeof doc.created === 'string' && !Number.isNaN(Date.parse(doc.created)) ? doc.created : new Date(0).toISOString();
    if (!existed && ociConfigJson(imgConfig, diffIds as string[], history, created) !== config.toString('utf8')) {
      const f = rawConfigPath(d.root, id);
      if (!fs.existsSync(f)) {
        writeAtomic(f, config);
        written.push(f);
      }
    }
    const source = `${r.domain}/${repo}`;
    for (const j of jobs) {
      const tarSize = stagedByIndex.get(j.index)?.tarSize;
      d.dist.recordLayerBlob(j.diffId, { digest: j.desc.digest, mediaType: j.desc.mediaType, size: j.desc.size, kept: fs.existsSync(d.dist.blobPath(j.desc.digest)), tarSize }, source);
    }
    d.dist.recordManifest(id, { digest: fetched.digest, mediaType: manifest.mediaType, manifest: fetched.body.toString('utf8'), source });
    const tag = localTagOf(r);
    const before = tag !== undefined ? d.store.images.refTarget(tag) : undefined;
    d.store.transaction(() => {
      if (d.store.images.get(id) === undefined) d.store.images.insert({ id, config: imgConfig, layers: rows.map((x) => x.id), created, parent: null, history });
      if (tag !== undefined) d.store.images.tag(tag, id);
    });
    const name = tag ?? `${familiarName(r)}@${top.digest}`;
    const status = existed && before === id ? `Image is up to date for ${name}` : `Downloaded newer image for ${name}`;
    progress.step(`Digest: ${top.digest}`);
    progress.step(`Status: ${status}`);
    d.log.info({ ref: shown(r), image: id, digest: top.digest, layers: need.length }, 'image pulled');
    return {
      id,
      digest: top.digest,
      name,
      status,
      layers: jobs.map((j) => ({ digest: j.desc.digest, diffId: j.diffId, size: j.desc.size, reused: !stagedByIndex.has(j.index) })),
    };
  } catch (err) {
    for (const s of staged) d.layers.discard(s);
    for (const f of d.layers.removeCreated(createdLayers)) d.log.warn({ layer: f.id, err: f.err }, 'cannot remove a layer of a failed pull');
    for (const f of written) fs.rmSync(f, { force: true });
    if (err instanceof ArchiveError) throw new RegistryError(`cannot pull ${req.ref}: ${err.message}`, 'upstream');
    if (err instanceof Error && !(err instanceof DomainError)) {
      d.log.error({ ref: req.ref, err: err.stack }, 'pull failed');
    }
    throw err;
  } finally {
    c.close();
  }
}

