// The layer stack as the union sees it: index 0 is the upper (when writable),
// then the lowers top-down. Also the mapping from real inodes to stable st_ino.
import * as fs from 'node:fs';
import * as native from '../../native-shims';
import { LayerIndex } from '../layer-index/reader';
import type { UnionConfig } from './config';
import { IndexedView, LiveView, type LayerView } from './layer-view';

export const UPPER = 0;

/** Real paths up to this length are used as they are; callers append a name (<= 255 bytes). */
const SHORT_PATH = 3800;
const O_PATH = 0o10000000;
const MAX_DEEP_HANDLES = 64;

/**
 * Paths in the union may be as long as PATH_MAX, so a layer root plus the path can
 * exceed it. Such a path is reached through an O_PATH handle on a deep ancestor:
 * `/proc/self/fd/N/rest`, which every path-based syscall resolves.
 */
class DeepPaths {
  private readonly handles = new Map<string, number>();

  shorten(full: string): string {
    let prefixEnd = full.lastIndexOf('/', SHORT_PATH);
    while (prefixEnd > 0 && full.length - prefixEnd > SHORT_PATH - 32) {
      prefixEnd = full.lastIndexOf('/', prefixEnd - 1);
    }
    const prefix = full.slice(0, prefixEnd);
    const rest = full.slice(prefixEnd + 1);
    let fd = this.handles.get(prefix);
    if (fd === undefined) {
      if (this.handles.size >= MAX_DEEP_HANDLES) this.clear();
      fd = fs.openSync(prefix, O_PATH | fs.constants.O_DIRECTORY);
      this.handles.set(prefix, fd);
    }
    const short = `/proc/self/fd/${fd}/${rest}`;
    return short.length <= SHORT_PATH ? short : this.shorten(short);
  }

  clear(): void {
    for (const fd of this.handles.values()) fs.closeSync(fd);
    this.handles.clear();
  }
}

export class LayerStack {
  /** Root path of each layer; roots[0] is the upper or '' when read-only. */
  readonly roots: string[];
  readonly writable: boolean;
  readonly workTmp: string;
  private readonly fsIndexByDev = new Map<number, number>();
  /** st_ino of files copied up during this mount, keyed by their upper real key. */
  private readonly originIno = new Map<number, number>();
  private readonly fsIndexOfLayer: number[] = [];
  private readonly deep = new DeepPaths();
  /** How each layer's metadata is read (views[0] is the upper, always live). */
  private readonly views: LayerView[];

  constructor(cfg: UnionConfig) {
    this.writable = cfg.upper !== undefined;
    this.roots = [cfg.upper ?? '', ...cfg.lowers];
    this.workTmp = cfg.work ? cfg.work + '/work' : '';
    const st = native.newStatArray();
    // The upper's filesystem is index 0 so its inode numbers pass through unchanged.
    for (const root of this.roots) {
      if (root === '' || native.lstatInto(root, st) !== 0) {
        this.fsIndexOfLayer.push(0);
        continue;
      }
      const dev = st[native.ST.DEV];
      if (!this.fsIndexByDev.has(dev)) this.fsIndexByDev.set(dev, this.fsIndexByDev.size);
      this.fsIndexOfLayer.push(this.fsIndexByDev.get(dev)!);
    }
    this.views = this.roots.map((root, layer) => {
      const live = new LiveView((rel) => this.realPath(layer, rel));
      const file = layer === UPPER ? undefined : cfg.indexes?.[layer - 1];
      if (!file) return live;
      try {
        return new IndexedView(LayerIndex.openShared(file, root), live);
      } catch {
        return live; // the mounter checked it; one that went bad since is not trusted
      }
    });
  }

  /** Metadata of layer `layer`: from its index when it has a valid one, else live. */
  view(layer: number): LayerView {
    return this.views[layer];
  }

  /** Metadata of layer `layer` read from the layer directory itself. */
  liveView(layer: number): LayerView {
    const v = this.views[layer];
    return v instanceof IndexedView ? v.live : v;
  }

  /** Layer `layer` is a lower read through its metadata index (immutable while mounted). */
  indexed(layer: number): boolean {
    return this.views[layer] instanceof IndexedView;
  }

  /** How many lower layers are served from a metadata index. */
  get indexedLowers(): number {
    return this.views.filter((v) => v instanceof IndexedView).length;
  }

  get lowerCount(): number {
    return this.roots.length - 1;
  }

  realPath(layer: number, rel: string): string {
    const full = rel === '' ? this.roots[layer] : this.roots[layer] + '/' + rel;
    return full.length <= SHORT_PATH ? full : this.deep.shorten(full);
  }

  /** Directory renames and removals make cached deep-path handles stale. */
  forgetDeepPaths(): void {
    this.deep.clear();
  }

  /** A number naming one real inode across all layers. */
  realKey(st: Float64Array): number {
    let idx = this.fsIndexByDev.get(st[native.ST.DEV]);
    if (idx === undefined) {
      idx = this.fsIndexByDev.size;
      this.fsIndexByDev.set(st[native.ST.DEV], idx);
    }
    return st[native.ST.INO] + idx * 2 ** 40;
  }

  /** Which filesystem layer `layer` is on (0: the upper's); layers on one filesystem share it. */
  fsIndex(layer: number): number {
    return this.fsIndexOfLayer[layer] ?? 0;
  }

  /** The real key of inode `ino` of layer `layer` (layers on one filesystem share a key space). */
  realKeyOf(layer: number, ino: number): number {
    return ino + (this.fsIndexOfLayer[layer] ?? 0) * 2 ** 40;
  }

  /** The st_ino the union reports: the real inode (xino-style high bits for a
   *  second filesystem), or the original's inode for what was copied up. */
  unionIno(realKey: number): number {
    return this.originIno.get(realKey) ?? realKey;
  }

  /** Whether the st_ino of upper inode `upperKey` is known to be its origin's. */
  hasOrigin(upperKey: number): boolean {
    return this.originIno.has(upperKey);
  }

  rememberOrigin(upperKey: number, ino: number): void {
    if (upperKey !== ino) this.originIno.set(upperKey, ino);
  }

  /** The upper inode is gone; its number may be reused by an unrelated file. */
  forgetOrigin(upperKey: number): void {
    this.originIno.delete(upperKey);
  }
}
