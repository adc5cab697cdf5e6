// `image save`: an image as an OCI image layout tar (oci-layout, index.json, blobs/sha256/...) or a
// classic docker-archive (docker-archive.ts). Layer blobs are uncompressed OCI layer tars
// (application/vnd.oci.image.layer.v1.tar), so a blob's digest is its diff id. A layer's tar is the
// byte-exact one it was loaded from when strata kept it (foreign layers), else packLayer of its
// directory. The config blob is the stored one (foreign images) or ociConfigJson as commitImage
// computed it, so the archive carries the image id.
import * as fs from 'node:fs';
import { Writable } from 'node:stream';
import { ArchiveError, packLayer } from '../archive';
import { DomainError, invalid } from '../model/errors';
import type { SaveFormat, SaveResponse, SavedLayer } from '../model/types-image-io';
import type { ProgressReporter } from '../model/progress';
import { digestShort, noProgress } from '../model/progress';
import { parseRef } from '../model/validate';
import type { LayerRow } from '../store/types';
import { writeDockerArchive } from './docker-archive';
import { codecOf, DistributionStore } from './dist-store';
import { imageIdOf, rewrittenConfigBlob, storedConfigBlob } from './oci-config';
import { ANN_CONTAINERD_NAME, ANN_REF_NAME, hexOf, MT_CONFIG, MT_INDEX, MT_LAYER, MT_MANIFEST, sha256, type ImageIoDeps } from './oci-layout';
import { originalTarPath, sweepOrphans } from './oci-store';
import { OuterWriter, type LayerPlan } from './outer-writer';

/** Discards what is written and counts it. */
class Counter extends Writable {
  bytes = 0;
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.bytes += chunk.length;
    cb();
  }
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
      await writeDockerArchive(ow, plans, img, refs, config, configDigest, progress);
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
