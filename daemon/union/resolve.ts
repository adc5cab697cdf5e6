// Lookup across layers, exactly as overlayfs does: upper first, then the lowers
// top-down; whiteouts end the search, opaque directories stop the descent, a
// non-directory hides any directory below it, redirects re-aim lower lookups.
import * as os from 'node:os';
import * as native from '../../native-shims';
import { FuseError } from '../fuse/filesystem';
import { UPPER, type LayerStack } from './layers';
import type { LowerRef, Node } from './nodes';
import { isMarkerName } from './whiteouts';
import { S_IFMT, S_IFDIR } from '../util/file-mode';

const E = os.constants.errno;
const { ST } = native;

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

/**
 * What one lookup carries from layer to layer, as overlayfs' ovl_lookup_data:
 * the name sought (a name in the parent's lower dirs, or after an absolute
 * redirect a path from every layer's root), and whether the search stops.
 */
interface Search {
  name: string;
  abs: boolean;
  isDir: boolean;
  stop: boolean;
}

export class Resolver {
  /** Probes land here; only an entry that is kept gets its own copy. */
  private readonly probe = native.newStatArray();

  constructor(
    private readonly layers: LayerStack,
    private readonly followRedirects = true,
  ) {}

  /** Resolves `name` in directory `parent`; null when it does not exist in the union. */
  child(parent: Node, name: string): Resolved | null {
    if (isMarkerName(name)) return null; // OCI markers are never visible names
    const layers = this.layers;
    const d: Search = { name, abs: false, isDir: false, stop: false };
    let found: Resolved | null = null;

    if (parent.upper) {
      const e = this.lookupIn(UPPER, parent.path, d, false);
      if (e !== null) {
        if (!d.isDir) return { isDir: false, upper: true, lowers: [], st: e.st, realPath: e.path };
        found = { isDir: true, upper: true, lowers: [], st: e.st, realPath: e.path };
      }
      if (d.stop) return found;
    }

    // The lower directories to search: the parent's, or every layer's root once a redirect is absolute.
    let refs: LowerRef[] = d.abs ? this.allLowers() : parent.lowers;
    let i = 0;
    const hint = parent.lowerNames;
    if (hint !== null && hint.lowers === parent.lowers && !d.abs && d.name === name && name !== '.' && name !== '..') {
      // The parent's listing says which of its lower directories first holds anything about the name.
      const at = hint.first.get(name);
      if (at === undefined) return found;
      i = at;
    }
    for (; i < refs.length && !d.stop; i++) {
      const ref = refs[i];
      const wasAbs = d.abs;
      // Below the last layer searched nothing is left to re-aim (without following, the parent's last).
      const last = this.followRedirects ? ref.layer === this.layers.lowerCount : i === refs.length - 1;
      const e = this.lookupIn(ref.layer, ref.rel, d, last);
      if (e !== null) {
        if (found === null) {
          if (!d.isDir) return { isDir: false, upper: false, lowers: [{ layer: ref.layer, rel: e.rel }], st: e.st, realPath: e.path };
          found = { isDir: true, upper: false, lowers: [], st: e.st, realPath: e.path };
        }
        found.lowers.push({ layer: ref.layer, rel: e.rel });
      }
      if (d.abs && !wasAbs) {
        // Continue below this layer, from the roots (ovl_lookup switches to the root's stack).
        refs = this.allLowers().slice(ref.layer);
        i = -1;
      }
    }
    return found;
  }

  /**
   * Looks `d.name` up in one layer below the directory `baseRel` (or from the
   * layer root along the whole path when the name is absolute), applying the
   * rules of ovl_lookup_layer: whiteouts and non-directories on the way stop the
   * search, opaque directories stop it below this layer, redirects re-aim it.
   */
  private lookupIn(layer: number, baseRel: string, d: Search, lastLayer: boolean): { st: Float64Array; path: string; rel: string } | null {
    if (!d.abs) return this.lookupOne(layer, joinRel(baseRel, d.name), d, '', '', true, lastLayer);
    const comps = d.name.split('/');
    let rel = '';
    for (let k = 0; k < comps.length; k++) {
      const last = k === comps.length - 1;
      const prefix = comps.slice(0, k).join('/');
      const post = last ? '' : '/' + comps.slice(k + 1).join('/');
      rel = joinRel(rel, comps[k]);
      const e = this.lookupOne(layer, rel, d, prefix, post, last, lastLayer);
      if (e === null || last) return e;
    }
    return null;
  }

  /** One path element of a lookup (ovl_lookup_single). `prefix` and `post` frame it within an absolute name. */
  private lookupOne(
    layer: number,
    rel: string,
    d: Search,
    prefix: string,
    post: string,
    last: boolean,
    lastLayer: boolean,
  ): { st: Float64Array; path: string; rel: string } | null {
    const view = this.layers.view(layer);
    const err = view.lstat(rel, this.probe);
    if (err !== 0) {
      if (!absent(err)) throw new FuseError(err);
      const slash = rel.lastIndexOf('/');
      if (view.hasMarkerWhiteout(slash < 0 ? '' : rel.slice(0, slash), rel.slice(slash + 1))) d.stop = true;
      return null;
    }
    const p = this.layers.realPath(layer, rel);
    if (view.isWhiteout(rel, this.probe)) {
      d.stop = true;
      return null;
    }
    if ((this.probe[ST.MODE] & S_IFMT) !== S_IFDIR) {
      d.stop = true; // a non-directory ends the search; below a directory, or on the way, it is not part of it
      if (d.isDir || !last) return null;
      return { st: new Float64Array(this.probe), path: p, rel };
    }
    const st = new Float64Array(this.probe);
    if (last) d.isDir = true;
    if (view.isOpaqueDir(rel)) {
      d.stop = true;
      return { st, path: p, rel };
    }
    if (lastLayer) return { st, path: p, rel };
    const r = view.overlayXattr(rel, 'redirect');
    // As overlayfs with redirect_dir=nofollow: a redirect is refused, not silently ignored.
    if (r !== null && !this.followRedirects) throw new FuseError(E.EPERM);
    if (r !== null) {
      const value = r.toString('utf8');
      if (value.startsWith('/')) {
        d.abs = true;
        d.stop = false; // an absolute redirect below an opaque ancestor still leads on
        d.name = value.replace(/^\/+/, '').replace(/\/+$/, '') + post;
      } else {
        d.name = joinRel(prefix, value) + post;
      }
    }
    return { st, path: p, rel };
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
      const view = this.layers.view(ref.layer);
      const err = view.lstat(rel, this.probe);
      if (err === 0) return !view.isWhiteout(rel, this.probe);
      if (!absent(err)) throw new FuseError(err);
      if (view.hasMarkerWhiteout(ref.rel, name)) return false;
    }
    return false;
  }
}
