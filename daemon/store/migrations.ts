// Versioned schema migrations, tracked in PRAGMA user_version. Append only: never edit a shipped one.
import type { Database } from 'better-sqlite3';
import { SchemaVersionError } from '../model/errors';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
CREATE TABLE layers (
  id         TEXT PRIMARY KEY NOT NULL,
  parent     TEXT NULL REFERENCES layers(id),
  diff_id    TEXT NOT NULL,
  size       INTEGER NOT NULL DEFAULT 0,
  created    TEXT NOT NULL,
  created_by TEXT NOT NULL DEFAULT '',
  state      TEXT NOT NULL DEFAULT 'incomplete' CHECK (state IN ('ready', 'incomplete'))
);
CREATE INDEX layers_parent_diff ON layers(parent, diff_id);
CREATE INDEX layers_state ON layers(state);

CREATE TABLE images (
  id        TEXT PRIMARY KEY NOT NULL,
  config    TEXT NOT NULL,
  top_layer TEXT NULL REFERENCES layers(id),
  created   TEXT NOT NULL,
  parent    TEXT NULL,
  history   TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX images_top_layer ON images(top_layer);

CREATE TABLE image_layers (
  image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  layer_id TEXT NOT NULL REFERENCES layers(id),
  PRIMARY KEY (image_id, position)
);
CREATE INDEX image_layers_layer ON image_layers(layer_id);

CREATE TABLE image_refs (
  ref      TEXT PRIMARY KEY NOT NULL,
  image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
CREATE INDEX image_refs_image ON image_refs(image_id);

CREATE TABLE containers (
  id         TEXT PRIMARY KEY NOT NULL,
  name       TEXT NOT NULL UNIQUE,
  image_id   TEXT NOT NULL REFERENCES images(id),
  image_ref  TEXT NOT NULL,
  state      TEXT NOT NULL DEFAULT 'created' CHECK (state IN ('created', 'mounted')),
  mountpoint TEXT NULL,
  mounts     TEXT NOT NULL DEFAULT '[]',
  created    TEXT NOT NULL
);
CREATE INDEX containers_image ON containers(image_id);

CREATE TABLE volumes (
  name      TEXT PRIMARY KEY NOT NULL,
  driver    TEXT NOT NULL DEFAULT 'local',
  labels    TEXT NOT NULL DEFAULT '{}',
  options   TEXT NOT NULL DEFAULT '{}',
  anonymous INTEGER NOT NULL DEFAULT 0,
  created   TEXT NOT NULL
);

CREATE TABLE container_volumes (
  container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
  volume_name  TEXT NOT NULL REFERENCES volumes(name),
  PRIMARY KEY (container_id, volume_name)
);
CREATE INDEX container_volumes_volume ON container_volumes(volume_name);

CREATE TABLE build_cache (
  key      TEXT PRIMARY KEY NOT NULL,
  layer_id TEXT NULL REFERENCES layers(id) ON DELETE CASCADE,
  image_id TEXT NULL REFERENCES images(id) ON DELETE SET NULL,
  created  TEXT NOT NULL
);
CREATE INDEX build_cache_layer ON build_cache(layer_id);
CREATE INDEX build_cache_image ON build_cache(image_id);
`,
  },
  {
    version: 2,
    name: 'containers: last run (started, finished, exit code) for ps',
    sql: `
ALTER TABLE containers ADD COLUMN started TEXT NULL;
ALTER TABLE containers ADD COLUMN finished TEXT NULL;
ALTER TABLE containers ADD COLUMN exit_code INTEGER NULL;
`,
  },
];

/** Schema version this code writes. */
export const SCHEMA_VERSION = migrations.reduce((v, m) => Math.max(v, m.version), 0);

export interface MigrationResult {
  from: number;
  to: number;
  applied: string[];
}

function checkMigrationList(list: readonly Migration[]): void {
  list.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration list is broken: entry ${i} has version ${m.version}, expected ${i + 1}`);
  });
}

/**
 * Bring the database up to the newest schema. Each migration runs in its own transaction together
 * with its user_version bump, so a failure leaves the previous version intact.
 * Refuses (SchemaVersionError) a database whose user_version is newer than this code knows.
 */
export function migrate(db: Database, list: readonly Migration[] = migrations, file = db.name): MigrationResult {
  checkMigrationList(list);
  const latest = list.length;
  const from = db.pragma('user_version', { simple: true }) as number;
  if (from > latest) {
    throw new SchemaVersionError(
      `database ${file} has schema version ${from}, but this strata only knows versions up to ${latest}; ` +
        `it was written by a newer strata — upgrade strata (or use another root directory)`,
      from,
      latest,
    );
  }
  const applied: string[] = [];
  for (const m of list) {
    if (m.version <= from) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
    applied.push(`${m.version} ${m.name}`);
  }
  if (applied.length > 0) {
    const problems = db.pragma('foreign_key_check') as unknown[];
    if (problems.length > 0) throw new Error(`foreign key check failed after migrating ${file}: ${JSON.stringify(problems)}`);
  }
  return { from, to: latest, applied };
}
