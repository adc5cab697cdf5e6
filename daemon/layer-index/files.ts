// Where a layer's index lives and how it is kept trustworthy: an index that is
// missing, damaged or stale is rebuilt (written whole, then renamed into place),
// never used as it is.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildIndex } from './build';
import { IndexInvalid, LayerIndex } from './reader';

/** The index file kept beside a layer directory (the layer store's layout). */
export function indexBeside(layerDir: string): string {
  return layerDir.replace(/\/+$/, '') + '.sidx';
}

/** The index file for `layerDir` in a directory of indexes (strata-mount's index_dir=). */
export function indexIn(indexDir: string, layerDir: string): string {
  return path.join(indexDir, createHash('sha256').update(path.resolve(layerDir)).digest('hex').slice(0, 32) + '.sidx');
}

/** Builds the index of `layerDir` into `file` (atomically). Returns its size in bytes. */
export function writeIndex(layerDir: string, file: string): number {
  const bytes = buildIndex(layerDir);
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, bytes, { mode: 0o600 });
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  return bytes.length;
}

/**
 * strata-mount's choice per lower: with an index dir, its index there (built when missing,
 * damaged or stale); without, an index file beside the layer when a valid one is there.
 */
export function mountIndexes(lowers: string[], indexDir: string | undefined): (string | null)[] {
  let build = indexDir !== undefined;
  try {
    if (indexDir !== undefined) fs.mkdirSync(indexDir, { recursive: true, mode: 0o700 });
  } catch {
    build = false; // an index dir that cannot be made: the indexes already there, if any, or none
  }
  return lowers.map((l) => {
    const file = indexDir !== undefined ? indexIn(indexDir, l) : indexBeside(l);
    return ensureIndex(l, file, build).index !== null ? file : null;
  });
}

export interface EnsuredIndex {
  index: LayerIndex | null;
  /** Why an existing file was not used (it was then rebuilt when allowed). */
  rejected?: string;
  built: boolean;
  /** Why no index could be had. */
  error?: string;
}

/**
 * Opens the index of `layerDir` at `file`; when it is missing or invalid and
 * `build` is set, builds it afresh. Never throws: without an index the union
 * reads the layer live.
 */
export function ensureIndex(layerDir: string, file: string, build: boolean): EnsuredIndex {
  let rejected: string | undefined;
  try {
    return { index: LayerIndex.open(file, layerDir), built: false };
  } catch (err) {
    if (!(err instanceof IndexInvalid)) return { index: null, built: false, error: String(err) };
    if (fs.existsSync(file)) rejected = err.message;
  }
  if (!build) return { index: null, rejected, built: false };
  try {
    writeIndex(layerDir, file);
    return { index: LayerIndex.open(file, layerDir), rejected, built: true };
  } catch (err) {
    return { index: null, rejected, built: false, error: (err as Error).message };
  }
}
