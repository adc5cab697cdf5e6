// Images, their layer chains (image_layers) and their name:tag refs (image_refs).
import type { Database, Statement } from 'better-sqlite3';
import { AmbiguousError, ConflictError, NotFoundError } from '../model/errors';
import { isForeignKeyViolation, isUniqueViolation } from './sqlite-errors';
import { layerFromRaw } from './layers';
import type { HistoryRecord, ImageConfig, ImageListEntry, ImageRow, LayerRow, NewImage } from './types';
import { normalizeRef } from '../model/validate';
import { HEX_RE, nowIso, parseJson } from './util';

interface RawImage {
  id: string;
  config: string;
  top_layer: string | null;
  created: string;
  parent: string | null;
  history: string;
}

const COLS = 'id, config, top_layer, created, parent, history';
const LAYER_COLS = 'l.id, l.parent, l.diff_id, l.size, l.created, l.created_by, l.state';

/** Minimum length of a bare hex id prefix accepted by resolve(). */
export const MIN_IMAGE_PREFIX = 4;

function imageFromRaw(r: RawImage): ImageRow {
  return {
    id: r.id,
    config: parseJson<ImageConfig>(r.config, { env: [], cmd: null, entrypoint: null, workingDir: '', user: '', labels: {} }),
    topLayer: r.top_layer,
    created: r.created,
    parent: r.parent,
    history: parseJson<HistoryRecord[]>(r.history, []),
  };
}

export class ImageRepo {
  private readonly sInsert: Statement<[RawImage]>;
  private readonly sInsertLayer: Statement<[string, number, string]>;
  private readonly sGet: Statement<[string], RawImage>;
  private readonly sPrefix: Statement<[string], { id: string }>;
  private readonly sRefGet: Statement<[string], { image_id: string }>;
  private readonly sList: Statement<[], RawImage>;
  private readonly sAllRefs: Statement<[], { ref: string; image_id: string }>;
  private readonly sSizes: Statement<[], { image_id: string; size: number }>;
  private readonly sRefsOf: Statement<[string], { ref: string }>;
  private readonly sTag: Statement<[string, string]>;
  private readonly sUntag: Statement<[string]>;
  private readonly sDelete: Statement<[string]>;
  private readonly sLayersOf: Statement<[string], Parameters<typeof layerFromRaw>[0]>;
  private readonly sUsingLayer: Statement<[string], { image_id: string }>;
  private readonly sAllChains: Statement<[], Parameters<typeof layerFromRaw>[0] & { image_id: string }>;
  private readonly sSize: Statement<[string], { size: number | null }>;
  private readonly sCount: Statement<[], { n: number }>;
  private readonly sContainers: Statement<[string], { n: number }>;

  constructor(private readonly db: Database) {
    this.sInsert = db.prepare(`INSERT INTO images (${COLS}) VALUES (@id, @config, @top_layer, @created, @parent, @history)`);
    this.sInsertLayer = db.prepare(`INSERT INTO image_layers (image_id, position, layer_id) VALUES (?, ?, ?)`);
    this.sGet = db.prepare(`SELECT ${COLS} FROM images WHERE id = ?`);
    // The pattern is 'sha256:' + validated hex + '*': no glob metacharacters from the user.
    this.sPrefix = db.prepare(`SELECT id FROM images WHERE id GLOB ? ORDER BY id LIMIT 10`);
    this.sRefGet = db.prepare(`SELECT image_id FROM image_refs WHERE ref = ?`);
    this.sList = db.prepare(`SELECT ${COLS} FROM images ORDER BY created DESC, id`);
    this.sAllRefs = db.prepare(`SELECT ref, image_id FROM image_refs ORDER BY ref`);
    this.sSizes = db.prepare(
      `SELECT il.image_id, sum(l.size) AS size FROM image_layers il JOIN layers l ON l.id = il.layer_id GROUP BY il.image_id`,
    );
    this.sRefsOf = db.prepare(`SELECT ref FROM image_refs WHERE image_id = ? ORDER BY ref`);
    this.sTag = db.prepare(
      `INSERT INTO image_refs (ref, image_id) VALUES (?, ?) ON CONFLICT(ref) DO UPDATE SET image_id = excluded.image_id`,
    );
    this.sUntag = db.prepare(`DELETE FROM image_refs WHERE ref = ?`);
    this.sDelete = db.prepare(`DELETE FROM images WHERE id = ?`);
    this.sLayersOf = db.prepare(
      `SELECT ${LAYER_COLS} FROM image_layers il JOIN layers l ON l.id = il.layer_id WHERE il.image_id = ? ORDER BY il.position`,
    );
    this.sUsingLayer = db.prepare(`SELECT DISTINCT image_id FROM image_layers WHERE layer_id = ? ORDER BY image_id`);
    this.sAllChains = db.prepare(
      `SELECT il.image_id, ${LAYER_COLS} FROM image_layers il JOIN layers l ON l.id = il.layer_id ORDER BY il.image_id, il.position`,
    );
    this.sSize = db.prepare(
      `SELECT sum(l.size) AS size FROM image_layers il JOIN layers l ON l.id = il.layer_id WHERE il.image_id = ?`,
    );
    this.sCount = db.prepare(`SELECT count(*) AS n FROM images`);
    this.sContainers = db.prepare(`SELECT count(*) AS n FROM containers WHERE image_id = ?`);
  }

  /** Insert an image and its layer chain in one transaction. Throws ConflictError / NotFoundError (missing layer). */
  insert(img: NewImage): ImageRow {
    const top = img.layers.length > 0 ? img.layers[img.layers.length - 1] : null;
    if (img.topLayer !== undefined && img.topLayer !== top) {
      throw new Error(`image ${img.id}: topLayer ${img.topLayer} is not the last of its layers (${top})`);
    }
    const row: ImageRow = {
      id: img.id,
      config: img.config,
      topLayer: top,
      created: img.created ?? nowIso(),
      parent: img.parent ?? null,
      history: img.history ?? [],
    };
    const raw: RawImage = {
      id: row.id,
      config: JSON.stringify(row.config),
      top_layer: row.topLayer,
      created: row.created,
      parent: row.parent,
      history: JSON.stringify(row.history),
    };
    try {
      this.db.transaction(() => {
        this.sInsert.run(raw);
        img.layers.forEach((layerId, i) => this.sInsertLayer.run(img.id, i, layerId));
      })();
    } catch (err) {
      if (isUniqueViolation(err)) throw new ConflictError(`image ${img.id} already exists`);
      if (isForeignKeyViolation(err)) throw new NotFoundError(`image ${img.id} refers to a layer that does not exist`);
      throw err;
    }
    return row;
  }

  get(id: string): ImageRow | undefined {
    const r = this.sGet.get(id);
    return r && imageFromRaw(r);
  }

  /**
   * Find an image by `name[:tag]` (tag defaults to latest), full "sha256:<hex>" id, bare 64-hex id,
   * or a unique hex prefix (>= 4 chars, with or without "sha256:"). A ref wins over a prefix.
   * Returns undefined when nothing matches; throws AmbiguousError when a prefix matches several.
   */
  resolve(refOrId: string): ImageRow | undefined {
    const s = refOrId.trim();
    if (s === '') return undefined;
    if (s.startsWith('sha256:')) {
      const hex = s.slice('sha256:'.length);
      if (!HEX_RE.test(hex)) return undefined;
      return hex.length === 64 ? this.get(s) : this.byPrefix(hex);
    }
    if (s.length === 64 && HEX_RE.test(s)) {
      const byId = this.get(`sha256:${s}`);
      if (byId) return byId;
    }
    const ref = this.sRefGet.get(normalizeRef(s));
    if (ref) return this.get(ref.image_id);
    if (s.length >= MIN_IMAGE_PREFIX && HEX_RE.test(s)) return this.byPrefix(s);
    return undefined;
  }

  private byPrefix(hex: string): ImageRow | undefined {
    if (hex.length < MIN_IMAGE_PREFIX) return undefined;
    const hits = this.sPrefix.all(`sha256:${hex}*`);
    if (hits.length > 1) {
      throw new AmbiguousError(`image id prefix "${hex}" is ambiguous: it matches ${hits.length > 9 ? 'many' : hits.length} images`, hits.map((h) => h.id));
    }
    return hits.length === 1 ? this.get(hits[0].id) : undefined;
  }

  /** All images, newest first, with their refs and sizes. */
  list(): ImageListEntry[] {
    const refs = new Map<string, string[]>();
    for (const r of this.sAllRefs.all()) {
      const l = refs.get(r.image_id);
      if (l) l.push(r.ref);
      else refs.set(r.image_id, [r.ref]);
    }
    const sizes = new Map(this.sSizes.all().map((r) => [r.image_id, r.size]));
    return this.sList.all().map((r) => ({ ...imageFromRaw(r), refs: refs.get(r.id) ?? [], size: sizes.get(r.id) ?? 0 }));
  }

  /** The "name:tag" refs of an image, sorted. */
  refsOf(id: string): string[] {
    return this.sRefsOf.all(id).map((r) => r.ref);
  }

  /** The image a ref points at (tag defaults to latest). */
  refTarget(ref: string): string | undefined {
    return this.sRefGet.get(normalizeRef(ref))?.image_id;
  }

  /**
   * Point `ref` (tag defaults to latest) at image `id`, moving it if it already exists.
   * Returns the image it pointed at before, if any and different. Throws NotFoundError for an unknown image.
   */
  tag(ref: string, id: string): string | undefined {
    const name = normalizeRef(ref);
    return this.db.transaction(() => {
      if (!this.sGet.get(id)) throw new NotFoundError(`no such image: ${id}`);
      const before = this.sRefGet.get(name)?.image_id;
      this.sTag.run(name, id);
      return before !== undefined && before !== id ? before : undefined;
    })();
  }

  /** Remove a ref (tag defaults to latest); returns the image id it pointed at. Throws NotFoundError. */
  untag(ref: string): string {
    const name = normalizeRef(ref);
    return this.db.transaction(() => {
      const target = this.sRefGet.get(name);
      if (!target) throw new NotFoundError(`no such image reference: ${name}`);
      this.sUntag.run(name);
      return target.image_id;
    })();
  }

  /**
   * Delete an image row; its refs and image_layers rows cascade (the layers themselves stay: check
   * layers.isReferenced() for each of layersOf(id), top-down, and delete the free ones).
   * Throws NotFoundError, or ConflictError while containers use it.
   */
  delete(id: string): void {
    this.db.transaction(() => {
      const n = this.sContainers.get(id)!.n;
      if (n > 0) throw new ConflictError(`image ${id} is in use by ${n} container${n === 1 ? '' : 's'}`);
      let changes: number;
      try {
        changes = this.sDelete.run(id).changes;
      } catch (err) {
        if (isForeignKeyViolation(err)) throw new ConflictError(`image ${id} is still in use`);
        throw err;
      }
      if (changes === 0) throw new NotFoundError(`no such image: ${id}`);
    })();
  }

  /** The image's layers, bottom-up. */
  layersOf(id: string): LayerRow[] {
    return this.sLayersOf.all(id).map(layerFromRaw);
  }

  /** Ids of images whose chain contains the layer. */
  imagesUsingLayer(layerId: string): string[] {
    return this.sUsingLayer.all(layerId).map((r) => r.image_id);
  }

  /** Every image's layer chain (bottom-up), for df's shared/unique sizes. Images without layers are absent. */
  layerSets(): Map<string, LayerRow[]> {
    const out = new Map<string, LayerRow[]>();
    for (const r of this.sAllChains.all()) {
      const l = out.get(r.image_id);
      const layer = layerFromRaw(r);
      if (l) l.push(layer);
      else out.set(r.image_id, [layer]);
    }
    return out;
  }

  /** Sum of the image's layer sizes. */
  size(id: string): number {
    return this.sSize.get(id)!.size ?? 0;
  }

  count(): number {
    return this.sCount.get()!.n;
  }
}
