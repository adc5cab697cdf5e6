// What strata keeps of the registries images came from, so a push gives back the same digests:
//   distribution/blobs/<digest hex>        a pulled layer blob as the registry served it (compressed)
//   distribution/layers/<diff id hex>.json  the blobs known for a diff id: digest, media type, size,
//                                          whether the blob is kept (then `image save` and push use it),
//                                          its tar's size, and the repositories that have it
//   distribution/manifests/<image hex>.json the manifest an image was pulled with (exact bytes)
//   distribution/downloads/<digest hex>     a blob download in progress or interrupted (resumed with
//                                          a Range request by the next pull)
// Side files of deleted layers and images are swept by sweepDistribution().
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Codec } from '../archive/decompress';
import { compressionOf } from '../registry/manifest';
import type { Store } from '../store';
import type { StorageRoot } from '../root/storage-root';
import { writeAtomic } from './oci-store';

/** A compressed (or plain) blob that holds a layer. */
export interface LayerBlob {
  digest: string;
  mediaType: string;
  size: number;
  /** The blob's bytes are kept under distribution/blobs. */
  kept: boolean;
  /** registry/repository names known to have it (for HEAD checks and cross-repository mounts). */
  sources: string[];
  /** Bytes of the uncompressed tar (known for pulled blobs: `image save` streams them decompressed). */
  tarSize?: number;
}

/** How a layer blob of this media type is compressed. */
export function codecOf(mediaType: string): Codec {
  const c = compressionOf(mediaType);
  return c === 'unknown' ? 'none' : c;
}

export interface PulledManifest {
  digest: string;
  mediaType: string;
  /** The exact bytes (utf8). */
  manifest: string;
  source: string;
}

const GRACE_MS = 10 * 60 * 1000;
const MAX_SOURCES = 16;

function hexOf(id: string): string {
  return id.startsWith('sha256:') ? id.slice(7) : id;
}

export class DistributionStore {
  readonly dir: string;

  constructor(root: StorageRoot) {
    this.dir = path.join(root.dir, 'distribution');
  }

  blobPath(digest: string): string {
    return path.join(this.dir, 'blobs', hexOf(digest));
  }

  downloadPath(digest: string): string {
    return path.join(this.dir, 'downloads', hexOf(digest));
  }

  private layerFile(diffId: string): string {
    return path.join(this.dir, 'layers', `${hexOf(diffId)}.json`);
  }

  private manifestFile(imageId: string): string {
    return path.join(this.dir, 'manifests', `${hexOf(imageId)}.json`);
  }

  ensureDirs(): void {
    for (const d of ['blobs', 'layers', 'manifests', 'downloads']) fs.mkdirSync(path.join(this.dir, d), { recursive: true, mode: 0o700 });
  }

  /** Blobs recorded for a diff id, kept ones whose file is missing marked not kept. */
  layerBlobs(diffId: string): LayerBlob[] {
    let list: LayerBlob[];
    try {
      list = JSON.parse(fs.readFileSync(this.layerFile(diffId), 'utf8')) as LayerBlob[];
    } catch {
      return [];
    }
    if (!Array.isArray(list)) return [];
    return list.map((b) => ({ ...b, kept: b.kept && fs.existsSync(this.blobPath(b.digest)) }));
  }

  /** Records (or updates) a blob of a diff id, adding `source` to where it can be found. */
  recordLayerBlob(diffId: string, blob: Omit<LayerBlob, 'sources'>, source?: string): void {
    const list = this.layerBlobs(diffId);
    let e = list.find((b) => b.digest === blob.digest);
    if (e === undefined) {
      e = { ...blob, sources: [] };
      list.push(e);
    } else {
      e.kept = e.kept || blob.kept;
      e.mediaType = blob.mediaType;
      e.size = blob.size;
      if (blob.tarSize !== undefined) e.tarSize = blob.tarSize;
    }
    if (source !== undefined) e.sources = [source, ...e.sources.filter((s) => s !== source)].slice(0, MAX_SOURCES);
    writeAtomic(this.layerFile(diffId), JSON.stringify(list));
  }

  pulledManifest(imageId: string): PulledManifest | undefined {
    try {
      return JSON.parse(fs.readFileSync(this.manifestFile(imageId), 'utf8')) as PulledManifest;
    } catch {
      return undefined;
    }
  }

  recordManifest(imageId: string, m: PulledManifest): void {
    writeAtomic(this.manifestFile(imageId), JSON.stringify(m));
  }

  /** Removes side files of layers and images that are gone (older than a grace period) and stale downloads. */
  sweep(store: Store, downloadMaxAgeMs = 24 * 3600 * 1000): void {
    const now = Date.now();
    const age = (p: string): number => {
      try {
        return now - fs.statSync(p).mtimeMs;
      } catch {
        return 0;
      }
    };
    const list = (d: string): string[] => {
      try {
        return fs.readdirSync(path.join(this.dir, d));
      } catch {
        return [];
      }
    };
    const diffIds = new Set(store.layers.all().map((l) => hexOf(l.diffId)));
    const keptBlobs = new Set<string>();
    for (const n of list('layers')) {
      const p = path.join(this.dir, 'layers', n);
      const hex = n.replace(/\.json$/, '');
      if (!diffIds.has(hex)) {
        if (age(p) > GRACE_MS) fs.rmSync(p, { force: true });
        else for (const b of this.layerBlobs('sha256:' + hex)) keptBlobs.add(hexOf(b.digest));
        continue;
      }
      for (const b of this.layerBlobs('sha256:' + hex)) keptBlobs.add(hexOf(b.digest));
    }
    for (const n of list('blobs')) {
      const p = path.join(this.dir, 'blobs', n);
      if (!keptBlobs.has(n) && age(p) > GRACE_MS) fs.rmSync(p, { force: true });
    }
    for (const n of list('manifests')) {
      const p = path.join(this.dir, 'manifests', n);
      if (store.images.get('sha256:' + n.replace(/\.json$/, '')) === undefined && age(p) > GRACE_MS) fs.rmSync(p, { force: true });
    }
    for (const n of list('downloads')) {
      const p = path.join(this.dir, 'downloads', n);
      if (age(p) > downloadMaxAgeMs) fs.rmSync(p, { force: true });
    }
  }
}
