// Typed store errors. Each carries an HTTP-ish status the API layer can send as-is.

export class StoreError extends Error {
  readonly status: number;
  constructor(message: string, status = 500) {
    super(message);
    this.name = new.target.name;
    this.status = status;
  }
}

/** No such image / container / volume / layer / ref. */
export class NotFoundError extends StoreError {
  constructor(message: string) {
    super(message, 404);
  }
}

/** The write would break a constraint: name in use, object still referenced, duplicate id. */
export class ConflictError extends StoreError {
  constructor(message: string) {
    super(message, 409);
  }
}

/** An id prefix matches more than one object. */
export class AmbiguousError extends StoreError {
  readonly candidates: string[];
  constructor(message: string, candidates: string[] = []) {
    super(message, 409);
    this.candidates = candidates;
  }
}

/** The database was written by a newer strata (or is otherwise not a schema this code knows). */
export class SchemaVersionError extends StoreError {
  readonly found: number;
  readonly supported: number;
  constructor(message: string, found: number, supported: number) {
    super(message, 500);
    this.found = found;
    this.supported = supported;
  }
}

/** SQLite extended result code of a better-sqlite3 error, if it is one. */
export function sqliteCode(err: unknown): string | undefined {
  const code = err instanceof Error ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : undefined;
}

export function isUniqueViolation(err: unknown): boolean {
  const c = sqliteCode(err);
  return c === 'SQLITE_CONSTRAINT_PRIMARYKEY' || c === 'SQLITE_CONSTRAINT_UNIQUE';
}

export function isForeignKeyViolation(err: unknown): boolean {
  return sqliteCode(err) === 'SQLITE_CONSTRAINT_FOREIGNKEY';
}
