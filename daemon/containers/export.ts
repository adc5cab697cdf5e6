// `container export`: the container's merged root filesystem as one plain tar (docker export).
// The root is assembled by a private read-only union of the container's writable layer over its
// image's layers, mounted in a temp dir just for the export: the container's own mount (and the
// volumes and binds inside it) is left alone, and volumes are not part of the export (as in docker).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Writable } from 'node:stream';
import { notUnder, packTree } from '../archive';
import type { ContainerService } from './containers';
import type { ContainerRow } from '../store/types';
import { startUnionMount } from '../mounts/union-mount';
import { resolveConfig } from '../union/config';
import type { ImageIoDeps } from '../images/oci-layout';

/** Mounts a private read-only view of the container's root for `fn`, and always takes it down. */
async function withExportView<T>(d: ImageIoDeps, c: ContainerRow, fn: (root: string) => Promise<T>): Promise<T> {
  const upper = path.join(d.root.containerDir(c.id), 'upper');
  const layerDirs = d.layers.lowerDirs(d.images.chain(c.imageId).map((l) => l.id));
  // The image's layers are read through their metadata indexes, as every mount of them is; the
  // container's upper is read live (it changes).
  const config = resolveConfig({ lowers: [upper, ...layerDirs], indexes: [null, ...d.layers.indexes(layerDirs)] });
  const mnt = d.root.tempDir('export');
  let m;
  try {
    m = await startUnionMount(config, mnt, { fsname: `strata-export-${c.id.slice(0, 12)}`, readOnly: true });
  } catch (err) {
    fs.rmdirSync(mnt);
    throw err;
  }
  try {
    return await fn(mnt);
  } finally {
    await m.unmount().catch((err) => d.log.warn({ container: c.id, err: String(err) }, 'export mount: unmount failed'));
    try {
      fs.rmdirSync(mnt); // never recursive: were the unmount to fail, this must not reach through it
    } catch (err) {
      d.log.warn({ container: c.id, mnt, err: String(err) }, 'export mount: cannot remove mountpoint');
    }
  }
}

/**
 * `container export`: checks the container exists (before any byte is sent) and returns the writer
 * of its tar (an error midway aborts the output). The empty mountpoints of volumes and binds are
 * left out (as docker does).
 */
export function exportContainer(d: ImageIoDeps & { containers: ContainerService }, ref: string): (res: Writable) => Promise<void> {
  d.containers.resolve(ref);
  return async (res) => {
    // the container is not unmounted, removed or committed meanwhile
    const { c, size } = await d.containers.exclusive(ref, async (c) => {
      const keep = notUnder(d.containers.mountpointLeftovers(c, true));
      return { c, ...(await withExportView(d, c, (root) => packTree(root, res, { keep }))) };
    });
    d.log.info({ container: c.id, bytes: size }, 'container exported to the client');
  };
}
