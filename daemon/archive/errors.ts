// Typed errors of the archive module. Every error names the archive member (or file) involved.

/** Base class: anything that went wrong reading, writing or applying a layer archive. */
export class ArchiveError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The archive tries to write outside its destination (`..`, symlink in a parent position, bad hard link...). */
export class UnsafeArchiveError extends ArchiveError {
  constructor(
    readonly member: string,
    readonly reason: string,
  ) {
    super(`unsafe archive member '${member}': ${reason}`);
  }
}

/** The archive is not a valid tar (bad checksum, bad field, truncated, bad gzip data...). */
export class CorruptArchiveError extends ArchiveError {
  constructor(
    message: string,
    /** Offset in the uncompressed tar stream where the problem was seen, when known. */
    readonly offset?: number,
  ) {
    super(offset === undefined ? `corrupt archive: ${message}` : `corrupt archive at byte ${offset}: ${message}`);
  }
}

/** A valid tar using something strata does not handle (sparse files, non-UTF-8 names, sockets...). */
export class UnsupportedArchiveError extends ArchiveError {
  constructor(
    readonly member: string,
    readonly reason: string,
  ) {
    super(`unsupported archive member '${member}': ${reason}`);
  }
}

/** A source file could not be archived (changed while being read, unreadable...). */
export class PackError extends ArchiveError {
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super(`cannot archive '${file}': ${reason}`);
  }
}
