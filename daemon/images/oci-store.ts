// Side files image save/load keep in the storage root, both content-addressed:
//   image-configs/<image hex>.json  the exact config blob of a loaded image whose config strata's own
//                                   serializer would not reproduce byte for byte (foreign images);
//   layer-tars/<diff hex>.tar       the exact uncompressed tar a layer was loaded from, when packing
//                                   the layer directory again would give other bytes (foreign tars).
// With them `image save` writes back the same digests and image id. Orphans (their image or
// layer deleted) are swept by sweepOrphans().
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Store } from '../store';
import type { StorageRoot } from '../root/storage-root';

const GRACE_MS = 10 * 60 * 1000;

export function configsDir(root: StorageRoot): string {
  return path.join(root.dir, 'image-configs');
}

export function layerTarsDir(root: StorageRoot): string {
  return path.join(root.dir, 'layer-tars');
}

function hexOf(id: string): string {
  return id.startsWith('sha256:') ? id.slice(7) : id;
}

export function rawConfigPath(root: StorageRoot, imageId: string): string {
  return path.join(configsDir(root), `${hexOf(imageId)}.json`);
}

export function originalTarPath(root: StorageRoot, diffId: string): string {
  return path.join(layerTarsDir(root), `${hexOf(diffId)}.tar`);
}

/** The stored config blob of an image, if one was kept and still hashes to its id. */
export function readRawConfig(root: StorageRoot, imageId: string): Buffer | undefined {
  let b: Buffer;
  try {
    b = fs.readFileSync(rawConfigPath(root, imageId));
  } catch {
    return undefined;
  }
  return 'sha256:' + createHash('sha256').update(b).digest('hex') === imageId ? b : undefined;
}

/** Writes a file atomically (temp name in the same directory, then rename). */
export function writeAtomic(file: string, data: Buffer | string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${randomBytes(4).toString('hex')}`;
  try {
    fs.writeFileSync(tmp, data, { mode: 0o600, flag: 'wx' });
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/** Removes side files whose image / layer is gone (older than a grace period, so loads in flight keep theirs). */
export function sweepOrphans(root: StorageRoot, store: Store): void {
  const now = Date.now();
  const old = (p: string): boolean => {
    try {
      return now - fs.statSync(p).mtimeMs > GRACE_MS;
    } catch {
      return false;
    }
  };
  const sweep = (dir: string, keep: (name: string) => boolean): void => {
    let names: string[];
    try {
      names = fs.readdirSync(dir);
    } catch {
      return;
    }
    for (const n of names) {
      const p = path.join(dir, n);
      if (!keep(n) && old(p)) fs.rmSync(p, { force: true });
    }
  };
  const diffIds = new Set(store.layers.all().map((l) => hexOf(l.diffId)));
  sweep(layerTarsDir(root), (n) => n.endsWith('.tar') && diffIds.has(n.slice(0, -4)));
  sweep(configsDir(root), (n) => n.endsWith('.json') && store.images.get('sha256:' + n.slice(0, -5)) !== undefined);
}

