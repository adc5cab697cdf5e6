// Images: a config plus a chain of layers, named by references (name:tag).
import type { Readable } from 'node:stream';
import { conflict, notFound } from '../model/errors';
import type { HistoryEntry, ImageConfig, ImageConfigView, ImageDeleteResponse, ImageInspect, ImageSummary, SystemDf } from '../model/types';
import { canonicalRef } from '../model/validate';
import type { LayerStore } from '../layers/layer-store';
import type { Logger } from '../log';
import type { Store } from '../store';
import type { HistoryRecord, ImageRow, LayerRow } from '../store/types';
import { emptyConfig, imageIdOf, ociConfigJson } from './oci-config';

export interface NewImageSpec {
  config: ImageConfig;
  /** Layer ids bottom-up. */
  layers: string[];
  history: HistoryRecord[];
  parent?: string | null;
  ref?: string;
}

export class ImageService {
  constructor(
    private readonly store: Store,
    private readonly layers: LayerStore,
    private readonly log: Logger,
  ) {}

  /** Images being read (save) by how many readers: not deleted meanwhile. */
  private readonly readers = new Map<string, number>();

  /** Runs `fn` while image `id` is kept from deletion (its layers are read). */
  async reading<T>(id: string, fn: () => Promise<T>): Promise<T> {
    this.readers.set(id, (this.readers.get(id) ?? 0) + 1);
    try {
      return await fn();
    } finally {
      const n = (this.readers.get(id) ?? 1) - 1;
      if (n > 0) this.readers.set(id, n);
      else this.readers.delete(id);
    }
  }

  resolve(ref: string): ImageRow {
    const img = this.store.images.resolve(ref);
    if (img === undefined) throw notFound(`no such image: ${ref}`);
    return img;
  }

  /** Records an image (its id is the digest of its OCI config) and tags it. */
  commitImage(spec: NewImageSpec): string {
    const created = new Date().toISOString();
    const layerRows = spec.layers.map((id) => this.store.layers.get(id)!);
    const json = ociConfigJson(spec.config, layerRows.map((l) => l.diffId), spec.history, created);
    const id = imageIdOf(json);
    this.store.transaction(() => {
      if (this.store.images.get(id) === undefined) {
        this.store.images.insert({ id, config: spec.config, layers: spec.layers, created, parent: spec.parent ?? null, history: spec.history });
      }
      if (spec.ref !== undefined) this.store.images.tag(spec.ref, id);
    });
    return id;
  }

  /** `strata image import`: a rootfs tarball (plain or gzip), streamed by the client, becomes a one-layer image. */
  async import(input: Readable, ref: string, message: string): Promise<string> {
    const name = canonicalRef(ref);
    const layer = await this.layers.create(null, { kind: 'rootfs-tar', input }, '');
    const history: HistoryRecord[] = [{ created: new Date().toISOString(), createdBy: '', comment: message, emptyLayer: false, size: layer.size }];
    const id = this.commitImage({ config: emptyConfig(), layers: [layer.id], history, ref: name });
    this.log.info({ image: id, ref: name, layer: layer.id }, 'image imported');
    return id;
  }

  list(): ImageSummary[] {
    return this.store.images.list().map((i) => ({ Id: i.id, RepoTags: i.refs, Created: i.created, Size: i.size }));
  }

  chain(imageId: string): LayerRow[] {
    return this.store.images.layersOf(imageId);
  }

  history(ref: string): HistoryEntry[] {
    const img = this.resolve(ref);
    const out = img.history
      .map((h) => ({ Id: '<missing>', Created: h.created, CreatedBy: h.createdBy, Size: h.size, Comment: h.comment, EmptyLayer: h.emptyLayer }))
      .reverse();
    if (out.length > 0) out[0].Id = img.id;
    return out;
  }

  inspect(ref: string): ImageInspect {
    const img = this.resolve(ref);
    const chain = this.chain(img.id);
    return {
      Id: img.id,
      RepoTags: this.store.images.refsOf(img.id),
      Created: img.created,
      Size: chain.reduce((a, l) => a + l.size, 0),
      Parent: img.parent ?? '',
      Config: configView(img.config),
      RootFS: { Type: 'layers', Layers: chain.map((l) => l.diffId) },
      GraphDriver: { Name: 'strata-fuse', Data: { LowerDir: this.layers.lowerDirs(chain.map((l) => l.id)).join(':') } },
      Layers: chain.map((l) => ({ Id: l.id, DiffId: l.diffId, Size: l.size })),
      History: this.history(img.id),
    };
  }

  tag(source: string, target: string): void {
    const img = this.resolve(source);
    this.store.images.tag(canonicalRef(target), img.id);
  }

  /** `image rm`: untags; deletes the image once no reference or container needs it, and then its unshared layers. */
  remove(ref: string, force: boolean): ImageDeleteResponse {
    const img = this.resolve(ref);
    const refs = this.store.images.refsOf(img.id);
    const out: ImageDeleteResponse = { untagged: [], deleted: [] };
    const byName = refs.includes(normalize(ref));
    if (byName && refs.length > 1) {
      // One of several names: just that name goes.
      this.store.images.untag(normalize(ref));
      out.untagged.push(normalize(ref));
      return out;
    }
    if (!byName && refs.length > 1 && !force) {
      throw conflict(`image ${short(img.id)} is referenced in multiple repositories (${refs.join(', ')}); use -f or remove by name`);
    }
    const users = this.store.containers.countByImage(img.id);
    if (users > 0) {
      const names = this.store.containers.list(true).filter((c) => c.imageId === img.id).map((c) => c.name);
      if (!force) throw conflict(`image ${ref} is in use by container(s) ${names.join(', ')}; remove them first or use -f to untag`);
      for (const r of refs) {
        this.store.images.untag(r);
        out.untagged.push(r);
      }
      return out;
    }
    if (this.readers.has(img.id)) throw conflict(`image ${ref} is being saved; remove it once that is done`);
    const chain = this.chain(img.id);
    for (const r of refs) out.untagged.push(r);
    this.store.images.delete(img.id);
    out.deleted.push(img.id);
    for (const l of [...chain].reverse()) {
      if (this.layers.removeIfUnused(l.id)) out.deleted.push(l.id);
    }
    this.log.info({ image: img.id, deleted: out.deleted.length }, 'image removed');
    return out;
  }

  /** Per-image sizes for `system df`: a layer shared by several images is counted once overall. */
  df(): Pick<SystemDf, 'Images' | 'LayersSize'> {
    const sets = this.store.images.layerSets();
    const users = new Map<string, number>();
    for (const layers of sets.values()) for (const l of layers) users.set(l.id, (users.get(l.id) ?? 0) + 1);
    const list = this.store.images.list();
    const images = list.map((i) => {
      const layers = sets.get(i.id) ?? [];
      const size = layers.reduce((a, l) => a + l.size, 0);
      const shared = layers.filter((l) => (users.get(l.id) ?? 0) > 1).reduce((a, l) => a + l.size, 0);
      return { Id: i.id, RepoTags: i.refs, Created: i.created, Size: size, SharedSize: shared, UniqueSize: size - shared, Containers: this.store.containers.countByImage(i.id) };
    });
    const layersSize = this.store.layers.all().reduce((a, l) => a + l.size, 0);
    return { Images: images, LayersSize: layersSize };
  }
}

/** The config as docker image inspect shows it. */
function configView(c: ImageConfig): ImageConfigView {
  const set = (xs: string[] | undefined) => (xs === undefined ? undefined : Object.fromEntries(xs.map((x) => [x, {}])));
  return {
    Env: c.env,
    Cmd: c.cmd,
    Entrypoint: c.entrypoint,
    WorkingDir: c.workingDir,
    User: c.user,
    Labels: c.labels,
    ExposedPorts: set(c.exposedPorts),
    Volumes: set(c.volumes),
    Shell: c.shell,
  };
}

function normalize(ref: string): string {
  try {
    return canonicalRef(ref);
  } catch {
    return ref;
  }
}

function short(id: string): string {
  return id.replace(/^sha256:/, '').slice(0, 12);
}
