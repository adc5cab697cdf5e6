// The one place where errors become HTTP statuses. Services throw domain errors
// (daemon/model/errors.ts); every request's error boundary maps them here (toApiError).
import { ArchiveError, PackError } from '../archive';
import { DomainError, type ErrorKind } from '../model/errors';

/** An error of the HTTP exchange itself (no such endpoint, body timeout): it has a status of its own. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export const NO_SPACE_MESSAGE = 'no space left on the storage root';

const STATUS: Record<ErrorKind, number> = {
  invalid: 400,
  unauthorized: 401,
  forbidden: 403,
  'not-found': 404,
  conflict: 409,
  'too-large': 413,
  cancelled: 499,
  upstream: 502,
  internal: 500,
};

function errnoOf(err: unknown): string | undefined {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

/**
 * The HTTP status an error maps to: a domain error by its kind; an archive the client sent that
 * cannot be read (corrupt, unsafe, unsupported) is the client's fault (400); a full disk is 507;
 * everything else is a 500.
 */
export function statusOf(err: unknown): number {
  if (err instanceof HttpError) return err.status;
  if (err instanceof DomainError) return STATUS[err.kind];
  if (errnoOf(err) === 'ENOSPC' || errnoOf(err) === 'SQLITE_FULL') return 507;
  if (err instanceof ArchiveError && !(err instanceof PackError)) return 400;
  return 500;
}

/** Status and message of an error as the client sees them. */
export function toApiError(err: unknown): { status: number; message: string } {
  const status = statusOf(err);
  if (status === 507) return { status, message: NO_SPACE_MESSAGE };
  return { status, message: err instanceof Error ? err.message : String(err) };
}
