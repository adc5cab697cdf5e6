// `container export`: the container's merged root filesystem as one plain tar (docker export).
// The root is assembled by a private read-only union of the container's writable layer over its
// image's layers, mounted in a temp dir just for the export: the container's own mount (and the
// volumes and binds inside it) is left alone, and volumes are not part of the export (as in docker).
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArchiveError, packTree } from '../archive';
import { ApiError, badRequest } from '../api/errors';
import type { ExportResponse } from '../api/types-image-io';
import { Streamed } from '../api/server';
import type { ContainerService } from '../containers/containers';
import type { ContainerRow } from '../store/types';
import { startUnionMount } from '../mounts/union-mount';
import { resolveConfig } from '../union/config';
import type { ImageIoDeps } from './oci-layout';

/** Mounts a private read-only view of the container's root for `fn`, and always takes it down. */
async function withExportView<T>(d: ImageIoDeps, c: ContainerRow, fn: (root: string) => Promise<T>): Promise<T> {
  const upper = path.join(d.root.containerDir(c.id), 'upper');
  const lowers = [upper, ...d.layers.lowerDirs(d.images.chain(c.imageId).map((l) => l.id))];
  const mnt = d.root.tempDir('export');
  const m = await startUnionMount(resolveConfig({ lowers }), mnt, { fsname: `strata-export-${c.id.slice(0, 12)}`, readOnly: true });
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

/** `container export -o FILE`: written to a temp file beside FILE, renamed when complete. */
export async function exportContainer(d: ImageIoDeps & { containers: ContainerService }, ref: string, output: string): Promise<ExportResponse> {
  if (!path.isAbsolute(output)) throw badRequest(`output "${output}" must be an absolute path`);
  const dir = path.dirname(output);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw badRequest(`cannot write ${output}: directory ${dir} does not exist`);
  if (fs.existsSync(output) && fs.statSync(output).isDirectory()) throw badRequest(`cannot write ${output}: it is a directory`);
  const c = d.containers.resolve(ref);
  const tmp = path.join(dir, `.${path.basename(output)}.strata-${randomBytes(4).toString('hex')}`);
  await withExportView(d, c, async (root) => {
    const out = fs.createWriteStream(tmp, { flags: 'wx', mode: 0o644 });
    try {
      await new Promise<void>((resolve, reject) => {
        out.once('open', () => resolve());
        out.once('error', reject);
      });
      await packTree(root, out);
      fs.renameSync(tmp, output);
    } catch (err) {
      out.destroy();
      fs.rmSync(tmp, { force: true });
      if (err instanceof ArchiveError) throw new ApiError(500, `cannot export ${c.name}: ${err.message}`);
      throw err;
    }
  });
  const size = fs.statSync(output).size;
  d.log.info({ container: c.id, output, bytes: size }, 'container exported');
  return { output, size };
}

/** `container export` to stdout: the tar is the response body (an error midway aborts it). */
export function exportContainerStream(d: ImageIoDeps & { containers: ContainerService }, ref: string): Streamed {
  const c = d.containers.resolve(ref); // unknown containers fail before any byte is sent
  return new Streamed(async (res) => {
    const { size } = await withExportView(d, c, (root) => packTree(root, res));
    d.log.info({ container: c.id, bytes: size }, 'container exported to the client');
  }, 'application/x-tar');
}
