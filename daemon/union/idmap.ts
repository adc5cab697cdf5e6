// uidmapping= / gidmapping= as fuse-overlayfs applies them. Each triplet is
// `disk:shown:count` (containers-storage passes container:host:count, so the ids
// stored in the layers show as the ids of the namespace the mount serves): ids
// read from the layers are mapped disk -> shown, ids that come with a request
// (the caller's, chown's) shown -> disk. An id outside every range shows as the
// overflow id; chown to one fails with EINVAL, as the kernel refuses an id
// unmapped in a user namespace.
import * as fs from 'node:fs';

export interface IdRange {
  /** First id as stored in the layers. */
  disk: number;
  /** First id as the mount shows it. */
  shown: number;
  count: number;
}

export class IdMappingError extends Error {}

const MAX_ID = 0xffffffff;

/** Parses `d:s:n[:d:s:n...]` (a leading colon and empty items are allowed, as containers-storage writes them). */
export function parseIdMapping(value: string): IdRange[] {
  const parts = value.split(':').filter((p) => p !== '');
  if (parts.length === 0 || parts.length % 3 !== 0) throw new IdMappingError(`invalid mapping '${value}': expected disk:shown:count triplets`);
  const ranges: IdRange[] = [];
  for (let i = 0; i < parts.length; i += 3) {
    const [disk, shown, count] = parts.slice(i, i + 3).map((p) => {
      if (!/^\d+$/.test(p) || Number(p) > MAX_ID) throw new IdMappingError(`invalid mapping '${value}': '${p}' is not an id`);
      return Number(p);
    });
    if (count === 0) throw new IdMappingError(`invalid mapping '${value}': a range of 0 ids`);
    if (disk + count - 1 > MAX_ID || shown + count - 1 > MAX_ID) throw new IdMappingError(`invalid mapping '${value}': range passes id ${MAX_ID}`);
    ranges.push({ disk, shown, count });
  }
  return ranges;
}

function readOverflow(file: string): number {
  try {
    const n = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) ? n : 65534;
  } catch {
    return 65534;
  }
}

/** The kernel's overflow ids (/proc/sys/kernel/overflow{u,g}id): what an unmapped id shows as. */
export function overflowIds(): { uid: number; gid: number } {
  return { uid: readOverflow('/proc/sys/kernel/overflowuid'), gid: readOverflow('/proc/sys/kernel/overflowgid') };
}

/** One direction-aware id table (uids or gids). Without ranges every id maps to itself. */
export class IdMap {
  constructor(
    private readonly ranges: IdRange[],
    readonly overflow: number,
  ) {}

  get identity(): boolean {
    return this.ranges.length === 0;
  }

  /** A stored id as the mount shows it; the overflow id when no range holds it. */
  toShown(id: number): number {
    if (this.ranges.length === 0) return id;
    for (const r of this.ranges) if (id >= r.disk && id - r.disk < r.count) return r.shown + (id - r.disk);
    return this.overflow;
  }

  /** A shown id as stored; null when no range holds it. */
  toDisk(id: number): number | null {
    if (this.ranges.length === 0) return id;
    for (const r of this.ranges) if (id >= r.shown && id - r.shown < r.count) return r.disk + (id - r.shown);
    return null;
  }
}
