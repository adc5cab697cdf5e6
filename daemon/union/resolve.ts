// Lookup across layers, exactly as overlayfs does: upper first, then the lowers
// top-down; whiteouts end the search, opaque directories stop the descent, a
// non-directory hides any directory below it, redirects re-aim lower lookups.
import * as os from 'node:os';
import * as native from '../../native-shims';
import { FuseError } from '../fuse/filesystem';
import { UPPER, type LayerStack } from './layers';
import type { LowerRef, Node } from './nodes';
import { XATTR_REDIRECT, hasMarkerWhiteout, isMarkerName, isOpaqueDir, isWhiteout } from './whiteouts';

const E = os.constants.errno;
const { ST } = native;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;

export interface Resolved {
  isDir: boolean;
  upper: boolean;
  lowers: LowerRef[];
  /** Stat of the topmost real entry. */
  st: Float64Array;
  /** Real path of the topmost entry. */
  realPath: string;
}

function absent(errno: number): boolean {
  return errno === E.ENOENT || errno === E.ENOTDIR;
}

function joinRel(dir: string, name: string): string {
  return dir === '' ? name : dir + '/' + name;
}

/** The lower path a redirect names: absolute from the layer root, or a sibling name. */
function applyRedirect(value: string, dirRel: string): { abs: boolean; rel: string } {
  if (value.startsWith('/')) return { abs: true, rel: value.replace(/^\/+/, '').replace(/\/+$/, '') };
  return { abs: false, rel: joinRel(dirRel, value) };
}

export class Resolver {
  /** Probes land here; only an entry that is kept gets its own copy. */
  private readonly probe = native.newStatArray();

  constructor(private readonly layers: LayerStack) {}

  /** Resolves `name` in directory `parent`; null when it does not exist in the union. */
  child(parent: Node, name: string): Resolved | null {
    if (isMarkerName(name)) return null; // OCI markers are never visible names
    const layers = this.layers;
    let found: Resolved | null = null;
    // The lower directories to search, and the child's name within each.
    let refs: LowerRef[] = parent.lowers;
    let redirect: { abs: boolean; rel: string; fromLayer: number } | null = null;

    if (parent.upper) {
      const dir = layers.realPath(UPPER, parent.path);
      const p = dir + '/' + name;
      const err = native.lstatInto(p, this.probe);
      if (err === 0) {
        const st = new Float64Array(this.probe);
        if (isWhiteout(p, st)) return null;
        if ((st[ST.MODE] & S_IFMT) !== S_IFDIR) return { isDir: false, upper: true, lowers: [], st, realPath: p };
        found = { isDir: true, upper: true, lowers: [], st, realPath: p };
        if (isOpaqueDir(p)) return found;
        const r = native.lgetxattr(p, XATTR_REDIRECT);
        if (r !== null) {
          redirect = { ...applyRedirect(r.toString('utf8'), parent.path), fromLayer: UPPER };
          if (redirect.abs) refs = this.allLowers();
        }
      } else if (absent(err)) {
        if (hasMarkerWhiteout(dir, name)) return null;
      } else {
        throw new FuseError(err);
      }
    }

    for (let i = 0; i < refs.length; i++) {
      const ref = refs[i];
      let rel: string;
      if (redirect !== null && redirect.abs) {
        // An absolute redirect searches every layer below the one that set it, where
        // its path leads through real directories (a symlink there is never followed).
        if (ref.layer <= redirect.fromLayer || !this.throughDirs(ref.layer, redirect.rel)) continue;
        rel = redirect.rel;
      } else if (redirect !== null) {
        rel = joinRel(ref.rel, redirect.rel.slice(redirect.rel.lastIndexOf('/') + 1));
      } else {
        rel = joinRel(ref.rel, name);
      }
      const p = layers.realPath(ref.layer, rel);
      const err = native.lstatInto(p, this.probe);
      if (err !== 0) {
        if (!absent(err)) throw new FuseError(err);
        const slash = rel.lastIndexOf('/');
        const dirRel = slash < 0 ? '' : rel.slice(0, slash);
        if (hasMarkerWhiteout(layers.realPath(ref.layer, dirRel), rel.slice(slash + 1))) break;
        continue;
      }
      const st = new Float64Array(this.probe);
      if (isWhiteout(p, st)) break;
      const isDir = (st[ST.MODE] & S_IFMT) === S_IFDIR;
      if (!isDir) {
        if (found === null) return { isDir: false, upper: false, lowers: [{ layer: ref.layer, rel }], st, realPath: p };
        break; // a non-directory below a directory ends the merge
      }
      if (found === null) found = { isDir: true, upper: false, lowers: [], st, realPath: p };
      else if (!found.isDir) break;
      found.lowers.push({ layer: ref.layer, rel });
      if (isOpaqueDir(p)) break;
      const r = native.lgetxattr(p, XATTR_REDIRECT);
      if (r !== null) {
        const dirRel = rel.slice(0, Math.max(0, rel.lastIndexOf('/')));
        redirect = { ...applyRedirect(r.toString('utf8'), dirRel), fromLayer: ref.layer };
        if (redirect.abs) refs = this.allLowers();
      }
    }
    return found;
  }

  /** True when every parent component of `rel` is a real directory in `layer`. */
  private throughDirs(layer: number, rel: string): boolean {
    const st = this.probe;
    for (let i = rel.indexOf('/'); i >= 0; i = rel.indexOf('/', i + 1)) {
      if (native.lstatInto(this.layers.realPath(layer, rel.slice(0, i)), st) !== 0) return false;
      if ((st[ST.MODE] & S_IFMT) !== S_IFDIR) return false;
    }
    return true;
  }

  /** Every lower layer at its root: the search space after an absolute redirect. */
  allLowers(): LowerRef[] {
    const out: LowerRef[] = [];
    for (let l = 1; l <= this.layers.lowerCount; l++) out.push({ layer: l, rel: '' });
    return out;
  }

  /** True when `name` shows in some lower directory of `parent` (so removing or
   *  moving the upper entry needs a whiteout to keep it hidden). */
  lowerPositive(parent: Node, name: string): boolean {
    for (const ref of parent.lowers) {
      const rel = joinRel(ref.rel, name);
      const p = this.layers.realPath(ref.layer, rel);
      const err = native.lstatInto(p, this.probe);
      if (err === 0) return !isWhiteout(p, this.probe);
      if (!absent(err)) throw new FuseError(err);
      if (hasMarkerWhiteout(this.layers.realPath(ref.layer, ref.rel), name)) return false;
    }
    return false;
  }
}
