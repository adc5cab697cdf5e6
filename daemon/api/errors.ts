// Errors the API reports: an HTTP status and a message naming what was wrong. Every error a
// service throws is mapped to a status here, once, at the edge (toApiError).
import { ArchiveError, PackError } from '../archive';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export const badRequest = (msg: string) => new ApiError(400, msg);
export const notFound = (msg: string) => new ApiError(404, msg);
export const conflict = (msg: string) => new ApiError(409, msg);
export const tooLarge = (msg: string) => new ApiError(413, msg);

export const NO_SPACE_MESSAGE = 'no space left on the storage root';

function errnoOf(err: unknown): string | undefined {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

/**
 * The HTTP status an error maps to: typed errors carry one; an archive the client sent that cannot
 * be read (corrupt, unsafe, unsupported) is the client's fault (400); a full disk is 507;
 * everything else is a 500.
 */
export function statusOf(err: unknown): number {
  const s = (err as { status?: unknown } | null)?.status;
  if (typeof s === 'number' && s >= 400 && s < 600) return s;
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
