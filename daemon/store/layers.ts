// Layers: rows describing layer directories on disk, linked by parent.
import type { Database, Statement } from 'better-sqlite3';
import { ConflictError, NotFoundError } from '../model/errors';
import { isForeignKeyViolation, isUniqueViolation } from './sqlite-errors';
import type { LayerReferences, LayerRow, LayerState, NewLayer } from './types';
import { nowIso } from './util';

interface RawLayer {
  id: string;
  parent: string | null;
  diff_id: string;
  size: number;
  created: string;
  created_by: string;
  state: LayerState;
}

const COLS = 'id, parent, diff_id, size, created, created_by, state';

export function layerFromRaw(r: RawLayer): LayerRow {
  return { id: r.id, parent: r.parent, diffId: r.diff_id, size: r.size, created: r.created, createdBy: r.created_by, state: r.state };
}

export class LayerRepo {
  private readonly sInsert: Statement<[RawLayer]>;
  private readonly sGet: Statement<[string], RawLayer>;
  private readonly sMarkReady: Statement<[string]>;
  private readonly sMarkReadySize: Statement<[number, string]>;
  private readonly sIncomplete: Statement<[], RawLayer>;
  private readonly sDelete: Statement<[string]>;
  private readonly sAll: Statement<[], RawLayer>;
  private readonly sRefs: Statement<[string, string, string], LayerReferences>;
  private readonly sByParentDiff: Statement<[string | null, string], RawLayer>;
  private readonly sCount: Statement<[], { n: number; size: number | null }>;

  constructor(private readonly db: Database) {
    this.sInsert = db.prepare(
      `INSERT INTO layers (${COLS}) VALUES (@id, @parent, @diff_id, @size, @created, @created_by, @state)`,
    );
    this.sGet = db.prepare(`SELECT ${COLS} FROM layers WHERE id = ?`);
    this.sMarkReady = db.prepare(`UPDATE layers SET state = 'ready' WHERE id = ?`);
    this.sMarkReadySize = db.prepare(`UPDATE layers SET state = 'ready', size = ? WHERE id = ?`);
    // Children before parents (rowid grows with insertion), so they can be deleted in this order.
    this.sIncomplete = db.prepare(`SELECT ${COLS} FROM layers WHERE state = 'incomplete' ORDER BY rowid DESC`);
    this.sDelete = db.prepare(`DELETE FROM layers WHERE id = ?`);
    this.sAll = db.prepare(`SELECT ${COLS} FROM layers ORDER BY rowid`);
    this.sRefs = db.prepare(
      `SELECT (SELECT count(DISTINCT image_id) FROM image_layers WHERE layer_id = ?) AS images,
              (SELECT count(*) FROM layers WHERE parent = ?) AS children,
              (SELECT count(*) FROM build_cache WHERE layer_id = ?) AS buildCache`,
    );
    this.sByParentDiff = db.prepare(
      `SELECT ${COLS} FROM layers WHERE parent IS ? AND diff_id = ? AND state = 'ready' ORDER BY rowid LIMIT 1`,
    );
    this.sCount = db.prepare(`SELECT count(*) AS n, sum(size) AS size FROM layers WHERE state = 'ready'`);
  }

  /** Insert a layer row (state defaults to 'incomplete': call markReady once its files are in place). */
  insert(l: NewLayer): LayerRow {
    const raw: RawLayer = {
      id: l.id,
      parent: l.parent,
      diff_id: l.diffId,
      size: l.size ?? 0,
      created: l.created ?? nowIso(),
      created_by: l.createdBy ?? '',
      state: l.state ?? 'incomplete',
    };
    try {
      this.sInsert.run(raw);
    } catch (err) {
      if (isUniqueViolation(err)) throw new ConflictError(`layer ${l.id} already exists`);
      if (isForeignKeyViolation(err)) throw new NotFoundError(`parent layer ${l.parent} of layer ${l.id} does not exist`);
      throw err;
    }
    return layerFromRaw(raw);
  }

  get(id: string): LayerRow | undefined {
    const r = this.sGet.get(id);
    return r && layerFromRaw(r);
  }

  /** Flip to 'ready' (optionally recording the final size). Throws NotFoundError. */
  markReady(id: string, size?: number): void {
    const info = size === undefined ? this.sMarkReady.run(id) : this.sMarkReadySize.run(size, id);
    if (info.changes === 0) throw new NotFoundError(`layer ${id} does not exist`);
  }

  /** Layers left half-written (e.g. by a crash), newest first: delete them in this order at start-up. */
  listIncomplete(): LayerRow[] {
    return this.sIncomplete.all().map(layerFromRaw);
  }

  /**
   * Delete a layer row (its build-cache entries go with it). Throws NotFoundError, or ConflictError
   * while an image chain uses it or another layer has it as parent.
   */
  delete(id: string): void {
    let changes: number;
    try {
      changes = this.sDelete.run(id).changes;
    } catch (err) {
      if (isForeignKeyViolation(err)) throw new ConflictError(`layer ${id} is still in use`);
      throw err;
    }
    if (changes === 0) throw new NotFoundError(`layer ${id} does not exist`);
  }

  /** Every layer, oldest first. */
  all(): LayerRow[] {
    return this.sAll.all().map(layerFromRaw);
  }

  /** How many images' chains, child layers and build-cache entries point at the layer. */
  references(id: string): LayerReferences {
    return this.sRefs.get(id, id, id)!;
  }

  /** True while any image chain, child layer or build-cache entry points at the layer. */
  isReferenced(id: string): boolean {
    const r = this.references(id);
    return r.images + r.children + r.buildCache > 0;
  }

  /** An existing ready layer with this parent (null = base layer) and diff id, so identical layers are stored once. */
  findByParentAndDiffId(parent: string | null, diffId: string): LayerRow | undefined {
    const r = this.sByParentDiff.get(parent, diffId);
    return r && layerFromRaw(r);
  }

  /** Number and total size of ready layers. */
  stats(): { count: number; size: number } {
    const r = this.sCount.get()!;
    return { count: r.n, size: r.size ?? 0 };
  }
}
