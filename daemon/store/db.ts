// Opening the SQLite database: pragmas, then migrations.
import * as fs from 'node:fs';
import * as path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { migrate } from './migrations';

export type Database = BetterSqlite3.Database;

/**
 * Open (creating if needed) the store database at `file` with WAL, foreign keys, a 5 s busy
 * timeout and synchronous=NORMAL, then apply pending migrations.
 * Throws SchemaVersionError for a database written by a newer strata.
 */
export function openDatabase(file: string): Database {
  if (file !== ':memory:') fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const db = new BetterSqlite3(file);
  try {
    db.pragma('busy_timeout = 5000');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    migrate(db, undefined, file);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}
