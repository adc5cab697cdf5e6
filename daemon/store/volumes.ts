// Named and anonymous volumes, and which containers use them.
import type { Database, Statement } from 'better-sqlite3';
import { ConflictError, NotFoundError } from '../model/errors';
import { isForeignKeyViolation, isUniqueViolation } from './sqlite-errors';
import type { NewVolume, VolumeListEntry, VolumeRow } from './types';
import { nowIso, parseJson } from './util';

interface RawVolume {
  name: string;
  driver: string;
  labels: string;
  options: string;
  anonymous: number;
  created: string;
}

const COLS = 'name, driver, labels, options, anonymous, created';

function volumeFromRaw(r: RawVolume): VolumeRow {
  return {
    name: r.name,
    driver: 'local',
    labels: parseJson<Record<string, string>>(r.labels, {}),
    options: parseJson<Record<string, string>>(r.options, {}),
    anonymous: r.anonymous !== 0,
    created: r.created,
  };
}

export class VolumeRepo {
  private readonly sInsert: Statement<[RawVolume]>;
  private readonly sGet: Statement<[string], RawVolume>;
  private readonly sList: Statement<[], RawVolume>;
  private readonly sAllUsers: Statement<[], { volume_name: string; container_id: string }>;
  private readonly sUsedBy: Statement<[string], { container_id: string }>;
  private readonly sDelete: Statement<[string]>;
  private readonly sAttach: Statement<[string, string]>;
  private readonly sDetachAll: Statement<[string]>;
  private readonly sOfContainer: Statement<[string], { volume_name: string }>;
  private readonly sContainerExists: Statement<[string], { one: number }>;
  private readonly sCount: Statement<[], { n: number }>;

  constructor(private readonly db: Database) {
    this.sInsert = db.prepare(`INSERT INTO volumes (${COLS}) VALUES (@name, @driver, @labels, @options, @anonymous, @created)`);
    this.sGet = db.prepare(`SELECT ${COLS} FROM volumes WHERE name = ?`);
    this.sList = db.prepare(`SELECT ${COLS} FROM volumes ORDER BY name`);
    this.sAllUsers = db.prepare(`SELECT volume_name, container_id FROM container_volumes ORDER BY volume_name, container_id`);
    this.sUsedBy = db.prepare(`SELECT container_id FROM container_volumes WHERE volume_name = ? ORDER BY container_id`);
    this.sDelete = db.prepare(`DELETE FROM volumes WHERE name = ?`);
    this.sAttach = db.prepare(`INSERT OR IGNORE INTO container_volumes (container_id, volume_name) VALUES (?, ?)`);
    this.sDetachAll = db.prepare(`DELETE FROM container_volumes WHERE container_id = ?`);
    this.sOfContainer = db.prepare(`SELECT volume_name FROM container_volumes WHERE container_id = ? ORDER BY volume_name`);
    this.sContainerExists = db.prepare(`SELECT 1 AS one FROM containers WHERE id = ?`);
    this.sCount = db.prepare(`SELECT count(*) AS n FROM volumes`);
  }

  /** Throws ConflictError if the name is taken. */
  insert(v: NewVolume): VolumeRow {
    const row: VolumeRow = {
      name: v.name,
      driver: 'local',
      labels: v.labels ?? {},
      options: v.options ?? {},
      anonymous: v.anonymous ?? false,
      created: v.created ?? nowIso(),
    };
    try {
      this.sInsert.run({
        name: row.name,
        driver: row.driver,
        labels: JSON.stringify(row.labels),
        options: JSON.stringify(row.options),
        anonymous: row.anonymous ? 1 : 0,
        created: row.created,
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new ConflictError(`volume "${row.name}" already exists`);
      throw err;
    }
    return row;
  }

  get(name: string): VolumeRow | undefined {
    const r = this.sGet.get(name);
    return r && volumeFromRaw(r);
  }

  /** All volumes by name, each with the ids of the containers using it. */
  list(): VolumeListEntry[] {
    const users = new Map<string, string[]>();
    for (const r of this.sAllUsers.all()) {
      const l = users.get(r.volume_name);
      if (l) l.push(r.container_id);
      else users.set(r.volume_name, [r.container_id]);
    }
    return this.sList.all().map((r) => ({ ...volumeFromRaw(r), usedBy: users.get(r.name) ?? [] }));
  }

  /** Ids of containers using the volume. */
  usedBy(name: string): string[] {
    return this.sUsedBy.all(name).map((r) => r.container_id);
  }

  /** Throws NotFoundError, or ConflictError while containers use it (detach them first). */
  delete(name: string): void {
    this.db.transaction(() => {
      const users = this.usedBy(name);
      if (users.length > 0) {
        throw new ConflictError(`volume "${name}" is in use by container${users.length === 1 ? '' : 's'} ${users.map((u) => u.slice(0, 12)).join(', ')}`);
      }
      let changes: number;
      try {
        changes = this.sDelete.run(name).changes;
      } catch (err) {
        if (isForeignKeyViolation(err)) throw new ConflictError(`volume "${name}" is in use`);
        throw err;
      }
      if (changes === 0) throw new NotFoundError(`no such volume: ${name}`);
    })();
  }

  /** Record that a container uses a volume (idempotent). Throws NotFoundError for either side missing. */
  attach(containerId: string, name: string): void {
    this.db.transaction(() => {
      if (!this.sContainerExists.get(containerId)) throw new NotFoundError(`no such container: ${containerId}`);
      if (!this.sGet.get(name)) throw new NotFoundError(`no such volume: ${name}`);
      this.sAttach.run(containerId, name);
    })();
  }

  /** Drop all of a container's volume attachments; returns the volume names. */
  detachAll(containerId: string): string[] {
    return this.db.transaction(() => {
      const names = this.sOfContainer.all(containerId).map((r) => r.volume_name);
      this.sDetachAll.run(containerId);
      return names;
    })();
  }

  count(): number {
    return this.sCount.get()!.n;
  }
}
