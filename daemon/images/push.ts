// `strata push`: an image from the store into a registry repository.
//
// Each layer goes up as the blob strata knows for its diff id when there is one (the compressed blob
// a pull kept, or one an earlier push made): HEAD tells whether the repository has it, a
// cross-repository mount (?mount=&from=) brings it from another repository of the same registry,
// else the kept bytes are uploaded monolithically. A layer with no known blob is packed (its
// original tar when strata kept it), gzip-compressed and streamed up in a chunked upload, its digest
// computed on the way. The config follows, then the manifest last: the exact manifest the image was
// pulled with when every blob is the same, so an image pulled from elsewhere keeps its digests.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { PassThrough, Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { packLayer } from '../archive';
import { invalid } from '../model/errors';
import { noProgress } from '../model/progress';
import type { ProgressReporter } from '../model/progress';
import type { PushedBlob, PushRequest, PushResponse } from '../model/types-registry';
import { repoScope } from '../registry/auth';
import { readBody, RegistryError, type RegistryClient } from '../registry/client';
import { MT, parseManifest, sha256Digest } from '../registry/manifest';
import { familiarName, parseReference, type Reference } from '../registry/reference';
import type { LayerRow } from '../store/types';
import type { LayerBlob } from './dist-store';
import { rewrittenConfigBlob, storedConfigBlob } from './oci-config';
import { originalTarPath } from './oci-store';
import { pool, registryClient, shortBlob, type RegistryDeps } from './pull';

/** Layer uploads at once. */
const PUSH_CONCURRENCY = 3;

interface Target {
  c: RegistryClient;
  r: Reference;
  repo: string;
  scopes: string[];
  signal?: AbortSignal;
}

function uploadUrl(location: string | string[] | undefined, digest?: string): string {
  if (typeof location !== 'string' || location === '') throw new RegistryError('the registry started an upload without a Location', 'upstream');
  if (digest === undefined) return location;
  return `${location}${location.includes('?') ? '&' : '?'}digest=${encodeURIComponent(digest)}`;
}

async function blobExists(t: Target, digest: string): Promise<boolean> {
  const res = await t.c.request('HEAD', `/v2/${t.repo}/blobs/${digest}`, { scopes: t.scopes, ok: [200, 404], signal: t.signal });
  res.resume();
  return res.statusCode === 200;
}

/** Starts an upload session; with `mount`, asks for a cross-repository mount first (201: mounted). */
async function startUpload(t: Target, mount?: { digest: string; from: string }): Promise<{ mounted: boolean; location: string }> {
  const q = mount ? `?mount=${encodeURIComponent(mount.digest)}&from=${encodeURIComponent(mount.from)}` : '';
  const scopes = mount ? [...t.scopes, repoScope(mount.from, ['pull'])] : t.scopes;
  const res = await t.c.request('POST', `/v2/${t.repo}/blobs/uploads/${q}`, { scopes, ok: [201, 202], signal: t.signal, headers: { 'Content-Length': 0 } });
  res.resume();
  return { mounted: res.statusCode === 201, location: uploadUrl(res.headers.location) };
}

/** Counts bytes through to a progress bar. */
function counter(add: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _e, cb) {
      add(chunk.length);
      cb(null, chunk);
    },
  });
}

/** Monolithic upload: the whole blob in one PUT (its digest known). */
async function putBlob(t: Target, location: string, digest: string, size: number, body: Buffer | (() => Readable)): Promise<void> {
  const res = await t.c.request('PUT', uploadUrl(location, digest), {
    scopes: t.scopes,
    signal: t.signal,
    headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': size },
    body,
    ok: [201, 204],
  });
  res.resume();
}

interface LayerPlan {
  row: LayerRow;
  /** The blob the original manifest lists for this layer, if any. */
  wanted?: string;
}

interface LayerResult extends PushedBlob {
  mediaType: string;
  diffId: string;
}

/** Known blobs of a layer, the one the pulled manifest names first. */
function candidates(d: RegistryDeps, p: LayerPlan): LayerBlob[] {
  const all = d.dist.layerBlobs(p.row.diffId);
  return all.sort((a, b) => Number(b.digest === p.wanted) - Number(a.digest === p.wanted) || Number(b.kept) - Number(a.kept));
}

async function pushLayer(d: RegistryDeps, t: Target, p: LayerPlan, progress: ProgressReporter): Promise<LayerResult> {
  const here = `${t.r.domain}/${t.repo}`;
  for (const b of candidates(d, p)) {
    const id = shortBlob(b.digest);
    if (await blobExists(t, b.digest)) {
      progress.step(`${id}: Layer already exists`);
      d.dist.recordLayerBlob(p.row.diffId, b, here);
      return { digest: b.digest, size: b.size, how: 'exists', mediaType: b.mediaType, diffId: p.row.diffId };
    }
    const from = b.sources.find((s) => s.startsWith(`${t.r.domain}/`) && s !== here)?.slice(t.r.domain.length + 1);
    let session: { mounted: boolean; location: string } | undefined;
    if (from !== undefined) {
      session = await startUpload(t, { digest: b.digest, from });
      if (session.mounted) {
        progress.step(`${id}: Mounted from ${from}`);
        d.dist.recordLayerBlob(p.row.diffId, b, here);
        return { digest: b.digest, size: b.size, how: 'mounted', mediaType: b.mediaType, diffId: p.row.diffId };
      }
    }
    if (!b.kept) {
      if (session) await t.c.request('DELETE', session.location, { scopes: t.scopes, ok: [200, 204, 404], signal: t.signal }).then((r) => r.resume(), () => undefined);
      continue;
    }
    session ??= await startUpload(t);
    const file = d.dist.blobPath(b.digest);
    const bar = progress.bytes(id, 'Pushing', b.size);
    await putBlob(t, session.location, b.digest, b.size, () => fs.createReadStream(file).pipe(counter((n) => bar.add(n))));
    bar.done();
    progress.step(`${id}: Pushed`);
    d.dist.recordLayerBlob(p.row.diffId, b, here);
    return { digest: b.digest, size: b.size, how: 'pushed', mediaType: b.mediaType, diffId: p.row.diffId };
  }
  return pushFresh(d, t, p.row, progress);
}

/** Packs (or reads the kept tar of) a layer, gzips it and streams it up in a chunked upload. */
async function pushFresh(d: RegistryDeps, t: Target, row: LayerRow, progress: ProgressReporter): Promise<LayerResult> {
  const label = row.diffId.replace(/^sha256:/, '').slice(0, 12);
  const session = await startUpload(t);
  const bar = progress.bytes(label, 'Pushing', null);
  const diffHash = createHash('sha256');
  const blobHash = createHash('sha256');
  let size = 0;
  const tarTap = new Transform({
    transform(chunk: Buffer, _e, cb) {
      diffHash.update(chunk);
      cb(null, chunk);
    },
  });
  const blobTap = new Transform({
    transform(chunk: Buffer, _e, cb) {
      blobHash.update(chunk);
      size += chunk.length;
      bar.add(chunk.length);
      cb(null, chunk);
    },
  });
  const gz = zlib.createGzip({ level: zlib.constants.Z_BEST_SPEED });
  const body = new PassThrough();
  const orig = originalTarPath(d.root, row.diffId);
  const producing = (async () => {
    if (fs.existsSync(orig)) await pipeline(fs.createReadStream(orig), tarTap, gz, blobTap, body);
    else {
      const tar = new PassThrough();
      await Promise.all([packLayer(d.layers.path(row.id), tar), pipeline(tar, tarTap, gz, blobTap, body)]);
    }
  })();
  let res;
  try {
    res = await t.c.request('PATCH', session.location, {
      scopes: t.scopes,
      signal: t.signal,
      headers: { 'Content-Type': 'application/octet-stream', 'Transfer-Encoding': 'chunked' },
      body: () => body,
      ok: [202, 204],
    });
    res.resume();
    await producing;
  } catch (err) {
    body.destroy();
    await producing.catch(() => undefined);
    throw err;
  }
  const digest = 'sha256:' + blobHash.digest('hex');
  const diffId = 'sha256:' + diffHash.digest('hex');
  const fin = await t.c.request('PUT', uploadUrl(res.headers.location ?? session.location, digest), {
    scopes: t.scopes,
    signal: t.signal,
    headers: { 'Content-Length': 0 },
    ok: [201, 204],
  });
  fin.resume();
  bar.done();
  progress.step(`${shortBlob(digest)}: Pushed`);
  if (diffId === row.diffId) d.dist.recordLayerBlob(row.diffId, { digest, mediaType: MT.ociLayerGzip, size, kept: false }, `${t.r.domain}/${t.repo}`);
  return { digest, size, how: 'pushed', mediaType: MT.ociLayerGzip, diffId };
}

export async function pushImage(d: RegistryDeps, ref: string, req: PushRequest, progress: ProgressReporter = noProgress, signal?: AbortSignal): Promise<PushResponse> {
  const img = d.images.resolve(ref);
  const r = parseReference(req.target ?? ref);
  if (r.digest !== undefined) throw invalid(`cannot push to "${req.target ?? ref}": push to a name:tag, not a digest`);
  const tag = r.tag ?? 'latest';
  d.dist.ensureDirs();
  const c = registryClient(d, r, req.tlsVerify, req.auth);
  const t: Target = { c, r, repo: r.path, scopes: [repoScope(r.path, ['pull', 'push'])], signal };
  const warnings: string[] = [];
  try {
    progress.step(`The push refers to repository [${familiarName(r)}]`);
    const chain = d.images.chain(img.id);
    const pulled = d.dist.pulledManifest(img.id);
    let pulledDoc: ReturnType<typeof parseManifest> | undefined;
    try {
      pulledDoc = pulled ? parseManifest(Buffer.from(pulled.manifest), pulled.mediaType) : undefined;
    } catch {
      pulledDoc = undefined;
    }
    const pulledLayers = pulledDoc?.kind === 'manifest' && pulledDoc.layers.length === chain.length ? pulledDoc.layers : undefined;
    const plans: LayerPlan[] = chain.map((row, i) => ({ row, wanted: pulledLayers?.[i].digest }));
    for (const p of plans) progress.step(`${shortBlob(p.wanted ?? p.row.diffId)}: Preparing`);
    // One upload per distinct diff id (an image may repeat a layer).
    const firsts = new Map<string, LayerPlan>();
    for (const p of plans) if (!firsts.has(p.row.diffId)) firsts.set(p.row.diffId, p);
    const done = new Map<string, LayerResult>();
    await pool([...firsts.values()], PUSH_CONCURRENCY, async (p) => {
      done.set(p.row.diffId, await pushLayer(d, t, p, progress));
    });
    const results = plans.map((p) => done.get(p.row.diffId)!);

    // The config: the stored one, unless a layer's tar could not be reproduced.
    const diffIds = results.map((x) => x.diffId);
    let config: Buffer;
    if (diffIds.every((x, i) => x === chain[i].diffId)) config = storedConfigBlob(d, img, chain);
    else {
      config = rewrittenConfigBlob(d, img, diffIds);
      warnings.push(`some layers were created from tars strata did not keep; they were packed again, so the pushed image has id ${sha256Digest(config)} instead of ${img.id}`);
    }
    const configDigest = sha256Digest(config);
    if (!(await blobExists(t, configDigest))) {
      const s = await startUpload(t);
      await putBlob(t, s.location, configDigest, config.length, config);
    }

    // The manifest, last.
    let manifest: Buffer;
    let mediaType: string;
    const same =
      pulled !== undefined &&
      pulledDoc?.kind === 'manifest' &&
      pulledDoc.config.digest === configDigest &&
      pulledLayers !== undefined &&
      results.every((x, i) => x.digest === pulledLayers[i].digest);
    if (same) {
      manifest = Buffer.from(pulled!.manifest, 'utf8');
      mediaType = pulled!.mediaType;
    } else {
      if (pulled !== undefined) warnings.push(`not every layer blob of ${pulled.source}@${pulled.digest} was available, so a new manifest was made`);
      const layerType = (mt: string): string => (mt === MT.dockerLayerGzip ? MT.ociLayerGzip : mt);
      mediaType = MT.ociManifest;
      manifest = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType,
          config: { mediaType: MT.ociConfig, digest: configDigest, size: config.length },
          layers: results.map((x) => ({ mediaType: layerType(x.mediaType), digest: x.digest, size: x.size })),
        }),
      );
    }
    const digest = sha256Digest(manifest);
    const res = await c.request('PUT', `/v2/${t.repo}/manifests/${tag}`, {
      scopes: t.scopes,
      signal,
      headers: { 'Content-Type': mediaType, 'Content-Length': manifest.length },
      body: manifest,
      ok: [201, 200],
    });
    await readBody(res);
    const named = res.headers['docker-content-digest'];
    if (typeof named === 'string' && named !== digest) warnings.push(`the registry recorded the manifest as ${named}, strata computed ${digest}`);
    progress.step(`${tag}: digest: ${digest} size: ${manifest.length}`);
    d.log.info({ image: img.id, repository: `${r.domain}/${r.path}`, tag, digest }, 'image pushed');
    return {
      repository: familiarName(r),
      tag,
      digest,
      size: manifest.length,
      layers: results.map(({ digest: dg, size, how }) => ({ digest: dg, size, how })),
      warnings,
    };
  } finally {
    c.close();
  }
}
