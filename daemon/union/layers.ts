// The layer stack as the union sees it: index 0 is the upper (when writable),
// then the lowers top-down. Also the mapping from real inodes to stable st_ino.
import * as native from '../../native-shims';
import type { UnionConfig } from './config';

export const UPPER = 0;

export class LayerStack {
  /** Root path of each layer; roots[0] is the upper or '' when read-only. */
  readonly roots: string[];
  readonly writable: boolean;
  readonly workTmp: string;
  private readonly fsIndexByDev = new Map<number, number>();
  /** st_ino of files copied up during this mount, keyed by their upper real key. */
  private readonly originIno = new Map<number, number>();
  private readonly fsIndexOfLayer: number[] = [];

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
  }

  get lowerCount(): number {
    return this.roots.length - 1;
  }

  realPath(layer: number, rel: string): string {
    return rel === '' ? this.roots[layer] : this.roots[layer] + '/' + rel;
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

  /** The real key of inode `ino` of layer `layer` (layers on one filesystem share a key space). */
  realKeyOf(layer: number, ino: number): number {
    return ino + (this.fsIndexOfLayer[layer] ?? 0) * 2 ** 40;
  }

  /** The st_ino the union reports: the real inode (xino-style high bits for a
   *  second filesystem), or the original's inode for what was copied up. */
  unionIno(realKey: number): number {
    return this.originIno.get(realKey) ?? realKey;
  }

  rememberOrigin(upperKey: number, ino: number): void {
    if (upperKey !== ino) this.originIno.set(upperKey, ino);
  }

  /** The upper inode is gone; its number may be reused by an unrelated file. */
  forgetOrigin(upperKey: number): void {
    this.originIno.delete(upperKey);
  }
}
