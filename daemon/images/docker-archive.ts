// Classic `docker save` archives (manifest.json, <config-hex>.json, <layer-id>/layer.tar,
// repositories): writing one for image save, and finding the images of one for image load.
import { CorruptArchiveError } from '../archive';
import type { ProgressReporter } from '../model/progress';
import { digestShort } from '../model/progress';
import { parseRef } from '../model/validate';
import { chainId } from '../layers/layer-store';
import type { ImageRow } from '../store/types';
import type { OuterArchive } from './archive-reader';
import { checkBlob, hexOf, isObject, refFromName, strArray, type Candidate, type LayerRef } from './oci-layout';
import type { LayerPlan, OuterWriter } from './outer-writer';

/** Writes the members of a docker-archive for one image (the caller finishes the tar). */
export async function writeDockerArchive(ow: OuterWriter, plans: LayerPlan[], img: ImageRow, refs: string[], config: Buffer, configDigest: string, progress: ProgressReporter): Promise<void> {
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

export function dockerCandidates(a: OuterArchive): Candidate[] {
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
