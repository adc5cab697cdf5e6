// `docker diff` for an overlay-format upper layer against its lower layers.
import * as fs from 'node:fs';
import type { Change } from '../model/types';
import { NodeStat, isOpaqueDir, isWhiteoutNode, lstatNode } from './fsnode';

interface LowerHit {
  /** The topmost visible node at that path in the merged lower view; null if hidden or absent. */
  st: NodeStat | null;
  /** When it is a directory: its paths in each lower layer that contributes to the merged listing. */
  dirPaths: string[];
}

/**
 * Resolves a path through the lower layers (topmost first) the way overlayfs does, one component at a
 * time: whiteouts hide, opaque directories stop the descent, a non-directory hides whatever is below.
 * Only verified directories are descended into, so symlinks inside layers are never followed.
 */
function lookupLower(lowers: string[], comps: string[]): LowerHit {
  let roots = lowers;
  let rel = '';
  for (let i = 0; i < comps.length; i++) {
    rel = rel === '' ? comps[i] : rel + '/' + comps[i];
    const last = i === comps.length - 1;
    const next: string[] = [];
    let found: NodeStat | null = null;
    for (const root of roots) {
      const p = root + '/' + rel;
      const st = lstatNode(p);
      if (st === null) continue;
      if (isWhiteoutNode(st)) break;
      if (st.type !== 'dir') {
        if (next.length === 0) found = st; // a non-directory on top; below it everything is hidden
        break;
      }
      found ??= st;
      next.push(root);
      if (isOpaqueDir(p)) break;
    }
    if (last) return { st: found, dirPaths: found?.type === 'dir' ? next.map((r) => r + '/' + rel) : [] };
    if (found === null || found.type !== 'dir') return { st: null, dirPaths: [] };
    roots = next;
  }
  return { st: null, dirPaths: [] };
}

/** Names visible in a merged lower directory (whiteouts excluded). */
function lowerChildren(dirPaths: string[]): string[] {
  const seen = new Set<string>();
  const visible: string[] = [];
  for (const d of dirPaths) {
    for (const name of fs.readdirSync(d)) {
      if (seen.has(name)) continue;
      seen.add(name);
      const st = lstatNode(d + '/' + name);
      if (st !== null && !isWhiteoutNode(st)) visible.push(name);
    }
  }
  return visible;
}

/**
 * Changes made by `upperDir` (kernel overlayfs format) on top of `lowerDirs` (topmost first), as
 * `docker diff` reports them, sorted by path:
 * - a whiteout (char 0/0) -> D;
 * - any other entry -> C if the path is visible in the merged lower view, else A (so every directory
 *   holding a change is reported too, as C when it existed below);
 * - an opaque directory additionally yields D for each child visible below that the upper lacks.
 */
export function layerChanges(upperDir: string, lowerDirs: string[]): Change[] {
  const out = new Map<string, Change['kind']>();
  const visit = (comps: string[]): void => {
    const dirAbs = comps.length === 0 ? upperDir : upperDir + '/' + comps.join('/');
    const names = fs.readdirSync(dirAbs);
    for (const name of names) {
      const childComps = [...comps, name];
      const p = '/' + childComps.join('/');
      const st = lstatNode(dirAbs + '/' + name);
      if (st === null) continue;
      if (isWhiteoutNode(st)) {
        out.set(p, 'D');
        continue;
      }
      const lower = lookupLower(lowerDirs, childComps);
      out.set(p, lower.st !== null ? 'C' : 'A');
      if (st.type !== 'dir') continue;
      if (lower.dirPaths.length > 0 && isOpaqueDir(dirAbs + '/' + name)) {
        const inUpper = new Set(fs.readdirSync(dirAbs + '/' + name));
        for (const child of lowerChildren(lower.dirPaths)) {
          if (!inUpper.has(child)) out.set(p + '/' + child, 'D');
        }
      }
      visit(childComps);
    }
  };
  visit([]);
  const keys = [...out.keys()].map((k) => [k, Buffer.from(k)] as const);
  keys.sort((a, b) => Buffer.compare(a[1], b[1]));
  return keys.map(([path]) => ({ kind: out.get(path) as Change['kind'], path }));
}

/**
 * What creating mountpoints for volumes and binds left in `upperDir`, to be left out of diff, commit
 * and export (as docker does): for each mount target and each of its parents (relative paths), the
 * entry is left out when, in the upper layer, it is
 * - the target itself as an empty regular file (the mountpoint of a file bind) that the image lacks, or
 * - a directory holding nothing but entries left out, and either absent from the image or, not
 *   opaque, with the image's mode and owner (a parent copied up only to hold a mountpoint).
 * Returns relative paths ('data', 'a/b'). With `merged` (for a view of the whole root, as export
 * packs it) only the entries the image lacks are returned.
 */
export function mountpointLeftovers(upperDir: string, lowerDirs: string[], targets: string[], merged = false): Set<string> {
  const candidates = new Set<string>();
  const isTarget = new Set<string>();
  for (const t of targets) {
    const comps = t.split('/').filter(Boolean);
    if (comps.length === 0) continue;
    isTarget.add(comps.join('/'));
    for (let i = 1; i <= comps.length; i++) candidates.add(comps.slice(0, i).join('/'));
  }
  const out = new Set<string>();
  const byDepth = [...candidates].sort((a, b) => b.split('/').length - a.split('/').length);
  for (const rel of byDepth) {
    const abs = upperDir + '/' + rel;
    const st = lstatNode(abs);
    if (st === null) continue;
    const lower = lookupLower(lowerDirs, rel.split('/')).st;
    if (st.type === 'file') {
      if (isTarget.has(rel) && st.size === 0 && lower === null) out.add(rel);
      continue;
    }
    if (st.type !== 'dir') continue;
    if (!fs.readdirSync(abs).every((n) => out.has(rel + '/' + n))) continue;
    // (opaque only matters over something below: new directories may carry the mark regardless)
    if (lower !== null && (merged || isOpaqueDir(abs) || lower.type !== 'dir' || lower.mode !== st.mode || lower.uid !== st.uid || lower.gid !== st.gid)) continue;
    out.add(rel);
  }
  return out;
}
