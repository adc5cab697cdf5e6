// Build cache: key (hash of parent layer id + instruction + content checksum) -> resulting layer / image.
import type { Database, Statement } from 'better-sqlite3';
import { NotFoundError } from '../model/errors';
import { isForeignKeyViolation } from './sqlite-errors';
import type { BuildCacheRow } from './types';
import { nowIso } from './util';

interface RawEntry {
  key: string;
  layer_id: string | null;
  image_id: string | null;
  created: string;
}

function entryFromRaw(r: RawEntry): BuildCacheRow {
  return { key: r.key, layerId: r.layer_id, imageId: r.image_id, created: r.created };
}

export class BuildCacheRepo {
  private readonly sGet: Statement<[string], RawEntry>;
  private readonly sPut: Statement<[RawEntry]>;
  private readonly sDelete: Statement<[string]>;
  private readonly sClear: Statement<[]>;
  private readonly sAll: Statement<[], RawEntry>;
  private readonly sSize: Statement<[], { n: number; size: number | null }>;

  constructor(db: Database) {
    this.sGet = db.prepare(`SELECT key, layer_id, image_id, created FROM build_cache WHERE key = ?`);
    this.sPut = db.prepare(
      `INSERT INTO build_cache (key, layer_id, image_id, created) VALUES (@key, @layer_id, @image_id, @created)
       ON CONFLICT(key) DO UPDATE SET layer_id = excluded.layer_id, image_id = excluded.image_id, created = excluded.created`,
    );
    this.sDelete = db.prepare(`DELETE FROM build_cache WHERE key = ?`);
    this.sClear = db.prepare(`DELETE FROM build_cache`);
    this.sAll = db.prepare(`SELECT key, layer_id, image_id, created FROM build_cache ORDER BY created, key`);
    // Size of layers kept alive only by the build cache (no image chain uses them).
    this.sSize = db.prepare(
      `SELECT count(*) AS n, sum(size) AS size FROM layers WHERE id IN (SELECT layer_id FROM build_cache)
         AND id NOT IN (SELECT layer_id FROM image_layers)`,
    );
  }

  get(key: string): BuildCacheRow | undefined {
    const r = this.sGet.get(key);
    return r && entryFromRaw(r);
  }

  /** Insert or replace an entry. Throws NotFoundError if the layer or image does not exist. */
  put(key: string, layerId: string | null, imageId: string | null = null): BuildCacheRow {
    const raw: RawEntry = { key, layer_id: layerId, image_id: imageId, created: nowIso() };
    try {
      this.sPut.run(raw);
    } catch (err) {
      if (isForeignKeyViolation(err)) throw new NotFoundError(`build cache entry ${key}: layer ${layerId} or image ${imageId} does not exist`);
      throw err;
    }
    return entryFromRaw(raw);
  }

  delete(key: string): boolean {
    return this.sDelete.run(key).changes > 0;
  }

  /** Drop every entry; returns how many there were. */
  clear(): number {
    return this.sClear.run().changes;
  }

  all(): BuildCacheRow[] {
    return this.sAll.all().map(entryFromRaw);
  }

  /** Bytes of layers referenced only by build-cache entries (df's buildCacheSize). */
  size(): number {
    return this.sSize.get()!.size ?? 0;
  }

  /** How many layers make up size(): df's Build Cache TOTAL. */
  count(): number {
    return this.sSize.get()!.n ?? 0;
  }
}
