// `image load`: every image of an OCI image layout or docker-archive tar. The outer archive is read
// without extracting it by its own names (archive-reader.ts); every blob digest, the config digest
// and every layer's diff id are verified before anything is created; layers are created through
// LayerStore (whiteouts back to overlay format); the images are inserted in one transaction. On any
// failure the layers this load created are removed again.
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable, Writable, pipeline as streamPipeline } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { ArchiveError, CorruptArchiveError, UnsupportedArchiveError, packLayer } from '../archive';
import { invalid } from '../model/errors';
import type { LoadResponse, LoadedImage } from '../model/types-image-io';
import type { ProgressReporter } from '../model/progress';
import { countingStream, digestShort, noProgress, sizeText } from '../model/progress';
import { chainId } from '../layers/layer-store';
import type { LayerRow } from '../store/types';
import { OuterArchive } from './archive-reader';
import { dockerCandidates } from './docker-archive';
import { imageIdOf, ociConfigJson, toHistory, toImageConfig, type OciConfigDoc } from './oci-config';
import {
  ANN_CONTAINERD_NAME,
  ANN_REF_NAME,
  checkBlob,
  DIGEST_RE,
  isObject,
  MT_DOCKER_LIST,
  MT_DOCKER_MANIFEST,
  MT_INDEX,
  MT_MANIFEST,
  ourArch,
  refFromName,
  sha256,
  strArray,
  type Candidate,
  type ImageIoDeps,
  type LayerRef,
} from './oci-layout';
import { originalTarPath, rawConfigPath, sweepOrphans, writeAtomic } from './oci-store';

interface Prepared {
  c: Candidate;
  config: Buffer;
  doc: OciConfigDoc;
  diffIds: string[];
}

function blobMember(digest: unknown, what: string): string {
  if (typeof digest !== 'string' || !/^[a-z0-9]+:[a-f0-9]+$/.test(digest)) throw new CorruptArchiveError(`${what} has an invalid digest ${JSON.stringify(digest)}`);
  const [alg, hex] = digest.split(':');
  if (alg !== 'sha256') throw new UnsupportedArchiveError(digest, `${what}: only sha256 digests are supported`);
  return `blobs/sha256/${hex}`;
}

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
