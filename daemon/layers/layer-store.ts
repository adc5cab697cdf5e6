// Layers on disk: one directory per layer under layers/<chain-id hex>, in overlay
// format (whiteouts as char 0/0, opaque dirs by xattr), recorded in the store.
// A layer is identified by its OCI chain id, so identical stacks are stored once.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { PassThrough, Transform, type Readable } from 'node:stream';
import { extractLayer, importDirectory, notUnder, packLayer } from '../archive';
import type { Store } from '../store';
import type { LayerRow } from '../store/types';
import type { StorageRoot } from '../root/storage-root';

/** OCI chain id: the diff id for a base layer, else sha256(parentChain + " " + diffId). */
export function chainId(parent: string | null, diffId: string): string {
  if (parent === null) return diffId;
  return 'sha256:' + createHash('sha256').update(`${parent} ${diffId}`).digest('hex');
}

/**
 * Where a layer's content comes from:
 * - tar: a layer tar from elsewhere; its diff id is the digest of that tar.
 * - rootfs-tar / dir: a root filesystem to import; its diff id is the digest of
 *   our own canonical pack of it, so a later save reproduces it byte for byte.
 * - upper: a container's writable layer (commit), less `exclude` (relative paths).
 */
export type LayerSource =
  | { kind: 'tar'; input: Readable | string }
  | { kind: 'rootfs-tar'; input: Readable | string }
  | { kind: 'dir'; path: string }
  | { kind: 'upper'; path: string; onBytes?: (n: number) => void; exclude?: ReadonlySet<string> };

/** A layer extracted into a temp dir, not yet in the store. */
export interface StagedLayer {
  dir: string;
  diffId: string;
  size: number;
}

export class LayerStore {
  constructor(
    private readonly root: StorageRoot,
    private readonly store: Store,
  ) {}

  /**
   * Creates a layer on top of `parent` from a tar, a rootfs directory, or a
   * container's upper dir. Content lands in a temp dir first, and the layer row
   * is written only once it is complete, so a crash never leaves a half layer.
   */
  async create(parent: string | null, source: LayerSource, createdBy = ''): Promise<LayerRow> {
    return this.commit(parent, await this.stage(source), createdBy);
  }

  /** Extracts a layer into a temp dir without recording it (several can be staged at once). */
  async stage(source: LayerSource): Promise<StagedLayer> {
    const tmp = this.root.tempDir('layer');
    try {
      return { dir: tmp, ...(await this.fill(tmp, source)) };
    } catch (err) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  /** Drops a staged layer that will not be committed. */
  discard(staged: StagedLayer): void {
    fs.rmSync(staged.dir, { recursive: true, force: true });
  }

  /** Records a staged layer on top of `parent` (or reuses an identical ready one). */
  commit(parent: string | null, staged: StagedLayer, createdBy = ''): LayerRow {
    const { dir: tmp, diffId, size } = staged;
    try {
      const id = chainId(parent, diffId);
      const existing = this.store.layers.get(id);
      if (existing !== undefined && existing.state === 'ready') {
        fs.rmSync(tmp, { recursive: true, force: true });
        return existing;
      }
      const dir = this.root.layerDir(id);
      fs.rmSync(dir, { recursive: true, force: true });
      this.store.transaction(() => {
        if (existing !== undefined) this.store.layers.delete(id);
        this.store.layers.insert({ id, parent, diffId, size, createdBy, state: 'incomplete' });
      });
      fs.renameSync(tmp, dir);
      this.store.layers.markReady(id, size);
      return this.store.layers.get(id)!;
    } catch (err) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw err;
    }
  }

  private async fill(dir: string, source: LayerSource): Promise<{ diffId: string; size: number }> {
    switch (source.kind) {
      case 'tar':
        return extractLayer(source.input, dir);
      case 'rootfs-tar':
        await extractLayer(source.input, dir);
        return packLayer(dir, null);
      case 'dir':
        return importDirectory(source.path, dir);
      case 'upper': {
        // Through the OCI tar and back: the diff id is that tar's, and opaque
        // dirs and whiteouts survive as markers.
        const onBytes = source.onBytes;
        const pipe = onBytes
          ? new Transform({
              transform(chunk: Buffer, _enc, cb) {
                onBytes(chunk.length);
                cb(null, chunk);
              },
            })
          : new PassThrough();
        const [packed] = await Promise.all([packLayer(source.path, pipe, { keep: source.exclude ? notUnder(source.exclude) : undefined }), extractLayer(pipe, dir)]);
        return packed;
      }
    }
  }

  path(id: string): string {
    return this.root.layerDir(id);
  }

  /** Lower dirs for a chain given bottom-up, as lowerdir wants them: topmost first. */
  lowerDirs(chain: string[]): string[] {
    return chain.map((id) => this.path(id)).reverse();
  }

  /** Removes a layer no image, child layer or cache entry still needs. */
  removeIfUnused(id: string): boolean {
    if (this.store.layers.isReferenced(id)) return false;
    this.store.layers.delete(id);
    fs.rmSync(this.path(id), { recursive: true, force: true });
    return true;
  }

  /**
   * Undoes the layers a failed import made, newest first (a layer may be the parent of the next);
   * returns those that could not be removed, with why, for the caller to log.
   */
  removeCreated(ids: string[]): Array<{ id: string; err: string }> {
    const failed: Array<{ id: string; err: string }> = [];
    for (const id of [...ids].reverse()) {
      try {
        this.removeIfUnused(id);
      } catch (e) {
        failed.push({ id, err: String(e) });
      }
    }
    return failed;
  }

  /** Start-up: drop layers that were being written when the daemon died. */
  sweepIncomplete(): string[] {
    const gone: string[] = [];
    for (const l of this.store.layers.listIncomplete()) {
      fs.rmSync(this.path(l.id), { recursive: true, force: true });
      try {
        this.store.layers.delete(l.id);
        gone.push(l.id);
      } catch {
        // referenced by something: leave the row, the directory is gone either way
      }
    }
    return gone;
  }
}
