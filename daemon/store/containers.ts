// Containers: a writable layer on top of an image, plus their volume attachments.
import type { Database, Statement } from 'better-sqlite3';
import { AmbiguousError, ConflictError, NotFoundError } from '../model/errors';
import { isForeignKeyViolation, isUniqueViolation } from './sqlite-errors';
import type { ContainerMount, ContainerRow, ContainerState, NewContainer } from './types';
import { HEX_RE, nowIso, parseJson } from './util';

interface RawContainer {
  id: string;
  name: string;
  image_id: string;
  image_ref: string;
  state: ContainerState;
  mountpoint: string | null;
  mounts: string;
  created: string;
  started?: string | null;
  finished?: string | null;
  exit_code?: number | null;
}

const INSERT_COLS = 'id, name, image_id, image_ref, state, mountpoint, mounts, created';
const COLS = `${INSERT_COLS}, started, finished, exit_code`;

/** Minimum length of an id prefix accepted by resolve() (docker accepts any non-empty prefix). */
export const MIN_CONTAINER_PREFIX = 1;

function containerFromRaw(r: RawContainer): ContainerRow {
  return {
    id: r.id,
    name: r.name,
    imageId: r.image_id,
    imageRef: r.image_ref,
    state: r.state,
    mountpoint: r.mountpoint,
    mounts: parseJson<ContainerMount[]>(r.mounts, []),
    created: r.created,
    started: r.started ?? null,
    finished: r.finished ?? null,
    exitCode: r.exit_code ?? null,
  };
}

export class ContainerRepo {
  private readonly sInsert: Statement<[RawContainer]>;
  private readonly sAttach: Statement<[string, string]>;
  private readonly sGet: Statement<[string], RawContainer>;
  private readonly sByName: Statement<[string], RawContainer>;
  private readonly sPrefix: Statement<[string], { id: string }>;
  private readonly sListAll: Statement<[], RawContainer>;
  private readonly sListMounted: Statement<[], RawContainer>;
  private readonly sSetState: Statement<[ContainerState, string | null, string]>;
  private readonly sSetRun: Statement<[string | null, string | null, number | null, string]>;
  private readonly sVolumesOf: Statement<[string], { volume_name: string }>;
  private readonly sDelete: Statement<[string]>;
  private readonly sCountByImage: Statement<[string], { n: number }>;
  private readonly sImageExists: Statement<[string], { one: number }>;
  private readonly sVolumeExists: Statement<[string], { one: number }>;
  private readonly sCounts: Statement<[], { n: number; mounted: number | null }>;

  constructor(private readonly db: Database) {
    this.sInsert = db.prepare(
      `INSERT INTO containers (${INSERT_COLS}) VALUES (@id, @name, @image_id, @image_ref, @state, @mountpoint, @mounts, @created)`,
    );
    this.sAttach = db.prepare(`INSERT OR IGNORE INTO container_volumes (container_id, volume_name) VALUES (?, ?)`);
    this.sGet = db.prepare(`SELECT ${COLS} FROM containers WHERE id = ?`);
    this.sByName = db.prepare(`SELECT ${COLS} FROM containers WHERE name = ?`);
    this.sPrefix = db.prepare(`SELECT id FROM containers WHERE id GLOB ? ORDER BY id LIMIT 10`);
    this.sListAll = db.prepare(`SELECT ${COLS} FROM containers ORDER BY created DESC, rowid DESC`);
    this.sListMounted = db.prepare(`SELECT ${COLS} FROM containers WHERE state = 'mounted' ORDER BY created DESC, rowid DESC`);
    this.sSetState = db.prepare(`UPDATE containers SET state = ?, mountpoint = ? WHERE id = ?`);
    this.sSetRun = db.prepare(`UPDATE containers SET started = ?, finished = ?, exit_code = ? WHERE id = ?`);
    this.sVolumesOf = db.prepare(`SELECT volume_name FROM container_volumes WHERE container_id = ? ORDER BY volume_name`);
    this.sDelete = db.prepare(`DELETE FROM containers WHERE id = ?`);
    this.sCountByImage = db.prepare(`SELECT count(*) AS n FROM containers WHERE image_id = ?`);
    this.sImageExists = db.prepare(`SELECT 1 AS one FROM images WHERE id = ?`);
    this.sVolumeExists = db.prepare(`SELECT 1 AS one FROM volumes WHERE name = ?`);
    this.sCounts = db.prepare(`SELECT count(*) AS n, sum(state = 'mounted') AS mounted FROM containers`);
  }

  /**
   * Insert a container and attach the named (already existing) volumes, in one transaction.
   * Throws NotFoundError (image or volume missing) or ConflictError (id or name taken).
   */
  insert(c: NewContainer, volumeNames: string[] = []): ContainerRow {
    const row: ContainerRow = {
      id: c.id,
      name: c.name,
      imageId: c.imageId,
      imageRef: c.imageRef,
      state: c.state ?? 'created',
      mountpoint: c.mountpoint ?? null,
      mounts: c.mounts ?? [],
      created: c.created ?? nowIso(),
      started: null,
      finished: null,
      exitCode: null,
    };
    this.db.transaction(() => {
      if (!this.sImageExists.get(row.imageId)) throw new NotFoundError(`no such image: ${row.imageId}`);
      if (this.sByName.get(row.name)) throw new ConflictError(`container name "${row.name}" is already in use`);
      try {
        this.sInsert.run({
          id: row.id,
          name: row.name,
          image_id: row.imageId,
          image_ref: row.imageRef,
          state: row.state,
          mountpoint: row.mountpoint,
          mounts: JSON.stringify(row.mounts),
          created: row.created,
        });
      } catch (err) {
        if (isUniqueViolation(err)) throw new ConflictError(`container ${row.id} already exists`);
        throw err;
      }
      for (const v of volumeNames) {
        if (!this.sVolumeExists.get(v)) throw new NotFoundError(`no such volume: ${v}`);
        this.sAttach.run(row.id, v);
      }
    })();
    return row;
  }

  get(id: string): ContainerRow | undefined {
    const r = this.sGet.get(id);
    return r && containerFromRaw(r);
  }

  /**
   * Find a container by full id, exact name (a leading "/" is ignored, as docker prints names),
   * or unique hex id prefix. Undefined when nothing matches; AmbiguousError for a shared prefix.
   */
  resolve(nameOrIdOrPrefix: string): ContainerRow | undefined {
    const s = nameOrIdOrPrefix.trim();
    if (s === '') return undefined;
    const byId = s.length === 64 ? this.sGet.get(s) : undefined;
    if (byId) return containerFromRaw(byId);
    const byName = this.sByName.get(s.startsWith('/') ? s.slice(1) : s);
    if (byName) return containerFromRaw(byName);
    if (s.length >= MIN_CONTAINER_PREFIX && s.length < 64 && HEX_RE.test(s)) {
      const hits = this.sPrefix.all(`${s}*`);
      if (hits.length > 1) {
        throw new AmbiguousError(`container id prefix "${s}" is ambiguous: it matches ${hits.length > 9 ? 'many' : hits.length} containers`, hits.map((h) => h.id));
      }
      if (hits.length === 1) return this.get(hits[0].id);
    }
    return undefined;
  }

  /** Newest first. all=false: only mounted containers (the API's default listing). */
  list(all: boolean): ContainerRow[] {
    return (all ? this.sListAll : this.sListMounted).all().map(containerFromRaw);
  }

  listMounted(): ContainerRow[] {
    return this.sListMounted.all().map(containerFromRaw);
  }

  /** Record a mount/unmount. Mountpoint is forced to null for 'created'. Throws NotFoundError. */
  setState(id: string, state: ContainerState, mountpoint: string | null = null): void {
    const info = this.sSetState.run(state, state === 'created' ? null : mountpoint, id);
    if (info.changes === 0) throw new NotFoundError(`no such container: ${id}`);
  }

  /** Record the container's last run: started (finished and code null while it runs). Throws NotFoundError. */
  setRun(id: string, started: string | null, finished: string | null, exitCode: number | null): void {
    if (this.sSetRun.run(started, finished, exitCode, id).changes === 0) throw new NotFoundError(`no such container: ${id}`);
  }

  /** Names of the volumes attached to the container. */
  volumesOf(id: string): string[] {
    return this.sVolumesOf.all(id).map((r) => r.volume_name);
  }

  /**
   * Delete the container row (its volume attachments cascade). Returns the volume names it had
   * attached, so the caller can remove its anonymous volumes. Throws NotFoundError.
   */
  delete(id: string): string[] {
    return this.db.transaction(() => {
      const volumes = this.volumesOf(id);
      let changes: number;
      try {
        changes = this.sDelete.run(id).changes;
      } catch (err) {
        if (isForeignKeyViolation(err)) throw new ConflictError(`container ${id} is still referenced`);
        throw err;
      }
      if (changes === 0) throw new NotFoundError(`no such container: ${id}`);
      return volumes;
    })();
  }

  countByImage(imageId: string): number {
    return this.sCountByImage.get(imageId)!.n;
  }

  counts(): { total: number; mounted: number } {
    const r = this.sCounts.get()!;
    return { total: r.n, mounted: r.mounted ?? 0 };
  }
}
