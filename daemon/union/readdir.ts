// Merged directory listings: upper first, then the lowers top-down, each name
// once, whiteouts and marker files hidden, `.` and `..` first. d_ino equals the
// st_ino a lookup of the same name reports.
import * as os from 'node:os';
import * as native from '../../native-shims';
import type { DirEntry } from '../fuse/filesystem';
import { FuseError } from '../fuse/filesystem';
import { UPPER, type LayerStack } from './layers';
import type { LowerRef, Node } from './nodes';
import type { Origins } from './origin';
import { WH_OPAQUE, WH_PREFIX, isCharWhiteout } from './whiteouts';

const E = os.constants.errno;
const { ST, DT_CHR, DT_REG, DT_DIR } = native;

export function mergedListing(layers: LayerStack, dir: Node, opts: { xattrWhiteouts?: boolean; origins?: Origins } = {}): DirEntry[] {
  const out: DirEntry[] = [
    { name: '.', ino: dir.ino, type: DT_DIR },
    { name: '..', ino: dir.parent?.ino ?? dir.ino, type: DT_DIR },
  ];
  // Names decided by an upper layer: shown, or hidden by a whiteout.
  const seen = new Set<string>(['.', '..']);
  const st = native.newStatArray();
  const sources: LowerRef[] = [];
  if (dir.upper) sources.push({ layer: UPPER, rel: dir.path });
  sources.push(...dir.lowers);
  const firstLower = dir.upper ? 1 : 0;
  // Merged from immutable lowers: remember where each name first shows in them (nodes.ts LowerNames).
  const first = dir.lowers.length > 1 && dir.lowers.every((r) => layers.indexed(r.layer)) ? new Map<string, number>() : null;
  // Upper directories that may merge with a lower one (name -> position in `out`): a merged
  // directory reports the st_ino of the first lower directory under its name, as overlayfs does.
  const upperDirs = dir.upper && dir.lowers.length > 0 ? new Map<string, number>() : null;

  for (let s = 0; s < sources.length; s++) {
    const src = sources[s];
    const view = layers.view(src.layer);
    let list;
    try {
      list = view.readdir(src.rel);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') continue;
      throw new FuseError(E.EIO, `readdir ${layers.realPath(src.layer, src.rel)}: ${(err as Error).message}`);
    }
    // Zero-size files are whiteouts only in directories marked opaque=x.
    const xattrWhiteouts = opts.xattrWhiteouts !== false && view.overlayXattr(src.rel, 'opaque')?.toString('latin1') === 'x';
    const { names, types, inos } = list;
    // An impure upper directory holds copies that report their origin's st_ino: so must d_ino.
    const origins = src.layer === UPPER && opts.origins?.impure(layers.realPath(UPPER, src.rel)) ? opts.origins : undefined;
    if (first !== null && s >= firstLower) noteFirst(first, names, s - firstLower);
    for (let i = 0; i < names.length; i++) {
      const name = names[i];
      if (seen.has(name)) {
        if (upperDirs !== null && src.layer !== UPPER) mergeUpperDir(upperDirs, name, types[i] === DT_DIR ? layers.realKeyOf(src.layer, inos[i]) : -1);
        continue;
      }
      if (name.startsWith(WH_PREFIX)) {
        if (name !== WH_OPAQUE) seen.add(name.slice(WH_PREFIX.length));
        if (upperDirs !== null && src.layer !== UPPER) upperDirs.delete(name.slice(WH_PREFIX.length)); // hidden below here
        continue;
      }
      let type = types[i];
      const rel = src.rel === '' ? name : src.rel + '/' + name;
      // Only a char device, a zero-size file in an opaque=x directory, or an unknown
      // type can be a whiteout: the rest need no stat (a cold listing then reads no inodes).
      if (type === DT_CHR || type === 0 || (type === DT_REG && xattrWhiteouts)) {
        if (view.lstat(rel, st) !== 0) continue;
        if (isCharWhiteout(st)) {
          seen.add(name);
          continue;
        }
        if (xattrWhiteouts && st[ST.SIZE] === 0 && view.overlayXattr(rel, 'whiteout') !== null) {
          seen.add(name);
          continue;
        }
        if (type === 0) type = modeToDt(st[ST.MODE]);
      }
      seen.add(name);
      const key = layers.realKeyOf(src.layer, inos[i]);
      if (origins !== undefined && type !== DT_DIR) origins.learn(layers.realPath(UPPER, rel), key, type << 12); // DT_* is S_IF* >> 12
      if (upperDirs !== null && src.layer === UPPER && type === DT_DIR) upperDirs.set(name, out.length);
      out.push({ name, ino: layers.unionIno(key), type });
    }
  }
  if (first !== null) dir.lowerNames = { lowers: dir.lowers, first };
  return out;

  /** Upper directory `name` meets a lower entry of that name (`lowerKey` a directory's real key, -1 for anything else). */
  function mergeUpperDir(dirs: Map<string, number>, name: string, lowerKey: number): void {
    const at = dirs.get(name);
    if (at === undefined) return;
    dirs.delete(name);
    // Read the upper directory's markers only for a name a lower directory shares.
    if (lowerKey >= 0 && !mergesNot(layers, dir.path === '' ? name : dir.path + '/' + name)) out[at].ino = layers.unionIno(lowerKey);
  }
}

/** An upper directory that hides the lowers under its name (opaque), or takes them from elsewhere (redirect). */
function mergesNot(layers: LayerStack, rel: string): boolean {
  const view = layers.view(UPPER);
  return view.overlayXattr(rel, 'opaque') !== null || view.overlayXattr(rel, 'redirect') !== null;
}

/** Records, for each name a lower directory's listing holds or hides (a `.wh.` marker), the first lower position seen. */
function noteFirst(first: Map<string, number>, names: string[], position: number): void {
  for (const name of names) {
    const key = name.startsWith(WH_PREFIX) ? name.slice(WH_PREFIX.length) : name;
    if (!first.has(key)) first.set(key, position);
  }
}

function modeToDt(mode: number): number {
  return (mode >>> 12) & 0xf;
}
