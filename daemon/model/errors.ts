// The one family of domain errors. Services, the store and the registry code throw these; each
// carries a kind (what went wrong, in the domain's words), never an HTTP status: the API edge
// (daemon/api/errors.ts) maps kinds to statuses, once.

export type ErrorKind =
  /** The request itself is wrong (bad name, bad reference, bad option). */
  | 'invalid'
  /** A registry wants (other) credentials. */
  | 'unauthorized'
  /** A registry refuses the operation for these credentials. */
  | 'forbidden'
  /** No such image / container / volume / layer / ref. */
  | 'not-found'
  /** The operation would break a rule of the current state: name in use, still referenced, ambiguous prefix. */
  | 'conflict'
  /** An input is larger than strata accepts. */
  | 'too-large'
  /** The client cancelled the operation. */
  | 'cancelled'
  /** Something strata depends on (a registry, its blobs) answered wrongly. */
  | 'upstream'
  /** strata's own state is not what this code can handle. */
  | 'internal';

export class DomainError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class InvalidError extends DomainError {
  constructor(message: string) {
    super('invalid', message);
  }
}

export class NotFoundError extends DomainError {
  constructor(message: string) {
    super('not-found', message);
  }
}

export class ConflictError extends DomainError {
  constructor(message: string) {
    super('conflict', message);
  }
}

export class TooLargeError extends DomainError {
  constructor(message: string) {
    super('too-large', message);
  }
}

/** An id prefix matches more than one object. */
export class AmbiguousError extends ConflictError {
  constructor(
    message: string,
    readonly candidates: string[] = [],
  ) {
    super(message);
  }
}

/** The database was written by a newer strata (or is otherwise not a schema this code knows). */
export class SchemaVersionError extends DomainError {
  constructor(
    message: string,
    readonly found: number,
    readonly supported: number,
  ) {
    super('internal', message);
  }
}

export const invalid = (msg: string) => new InvalidError(msg);
export const notFound = (msg: string) => new NotFoundError(msg);
export const conflict = (msg: string) => new ConflictError(msg);
export const tooLarge = (msg: string) => new TooLargeError(msg);
