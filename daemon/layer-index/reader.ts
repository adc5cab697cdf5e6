// A layer's metadata index, read whole into one Buffer and probed in place:
// path lookups walk sorted child ranges by binary search; nothing is parsed up front.
import * as fs from 'node:fs';
import * as native from '../../native-shims';
import { F, H, HEADER_SIZE, MAGIC, R, RECORD_SIZE, VERSION, checksum } from './format';
import { S_IFMT, S_IFDIR, S_IFCHR, S_IFBLK, S_IFLNK } from '../util/file-mode';

const { ST } = native;
/** Directory paths whose record is remembered (a cold walk touches every directory once). */
const DIR_CACHE_MAX = 65536;
/** Directories whose children's names are kept decoded (see child()). */
const CHILD_MAPS_MAX = 4096;

const shared = new Map<string, { key: string; ref: WeakRef<LayerIndex> }>();

/** The layer root (lstat'ed into `st`) is the one the index was built from. */
function rootMatches(buf: Buffer, st: Float64Array): boolean {
  return st[ST.INO] === buf.readDoubleLE(H.ROOT_INO) && st[ST.CTIME] === buf.readDoubleLE(H.ROOT_CTIME) && st[ST.CTIME_NS] === buf.readUInt32LE(H.ROOT_CTIME_NS);
}

/** Why an index file cannot be used. */
export class IndexInvalid extends Error {}

export class LayerIndex {
  private readonly count: number;
  private readonly dirs = new Map<string, number>();
  private readonly childMaps = new Map<number, Map<string, number>>();
  private lastRel = '';
  private lastRec = 0;

  private constructor(
    private readonly buf: Buffer,
    /** st_dev of the layer's filesystem now (it may differ from build time across boots). */
    private readonly dev: number,
  ) {
    this.count = buf.readUInt32LE(H.COUNT);
  }

  /**
   * Opens the index of `layerDir` from `file`, checking its format, checksum and
   * that it describes the layer as it is now (same root inode and ctime).
   * Throws IndexInvalid when it must not be trusted.
   */
  static open(file: string, layerDir: string): LayerIndex {
    let buf: Buffer;
    try {
      buf = fs.readFileSync(file);
    } catch (err) {
      throw new IndexInvalid(`cannot read ${file}: ${(err as Error).message}`);
    }
    if (buf.length < HEADER_SIZE || buf.toString('latin1', 0, 8) !== MAGIC) throw new IndexInvalid(`${file} is not a layer index`);
    if (buf.readUInt32LE(H.VERSION) !== VERSION || buf.readUInt32LE(H.RECORD_SIZE) !== RECORD_SIZE) {
      throw new IndexInvalid(`${file}: index version ${buf.readUInt32LE(H.VERSION)}, want ${VERSION}`);
    }
    const count = buf.readUInt32LE(H.COUNT);
    if (buf.readUInt32LE(H.LENGTH) !== buf.length || count < 1 || HEADER_SIZE + count * RECORD_SIZE > buf.length) {
      throw new IndexInvalid(`${file} is truncated`);
    }
    if (checksum(buf) !== buf.readUInt32LE(H.CHECKSUM)) throw new IndexInvalid(`${file}: checksum mismatch`);
    const st = native.newStatArray();
    const err = native.lstatInto(layerDir, st);
    if (err !== 0) throw new IndexInvalid(`layer ${layerDir}: errno ${err}`);
    if (!rootMatches(buf, st)) {
      throw new IndexInvalid(`${file} is stale: layer ${layerDir} changed since it was indexed`);
    }
    return new LayerIndex(buf, st[ST.DEV]);
  }

  /**
   * open(), shared: the mounts of one thread over the same layer use one copy of its index
   * (an image's containers all do). A copy is reused while the file is the same one
   * (inode, size, mtime) and still checks out against the layer; it goes once no mount holds it.
   */
  static openShared(file: string, layerDir: string): LayerIndex {
    const st = native.newStatArray();
    const key = native.lstatInto(file, st) === 0 ? `${st[ST.INO]}:${st[ST.SIZE]}:${st[ST.MTIME]}.${st[ST.MTIME_NS]}` : '';
    const known = shared.get(file);
    const idx = known?.key === key ? known.ref.deref() : undefined;
    if (idx !== undefined) {
      idx.checkLayer(file, layerDir);
      return idx;
    }
    const fresh = LayerIndex.open(file, layerDir);
    if (key !== '') shared.set(file, { key, ref: new WeakRef(fresh) });
    return fresh;
  }

  /** Throws IndexInvalid unless the layer root is still the one indexed. */
  private checkLayer(file: string, layerDir: string): void {
    const st = native.newStatArray();
    if (native.lstatInto(layerDir, st) !== 0 || !rootMatches(this.buf, st)) {
      throw new IndexInvalid(`${file} is stale: layer ${layerDir} changed since it was indexed`);
    }
  }

  get entries(): number {
    return this.count;
  }

  get bytes(): number {
    return this.buf.length;
  }

  private off(rec: number): number {
    return HEADER_SIZE + rec * RECORD_SIZE;
  }

  private isDirRec(rec: number): boolean {
    return (this.buf.readUInt16LE(this.off(rec) + R.MODE) & S_IFMT) === S_IFDIR;
  }

  /** Offset of the record's extra area (see R.EXTRA), 0 when it has none. */
  private extra(rec: number): number {
    return this.buf.readUInt32LE(this.off(rec) + R.EXTRA);
  }

  /**
   * The record of `name` among directory `dir`'s children, or -1. A directory probed once is
   * probed again for each of its entries (a listing is followed by a lookup per entry), so its
   * children's names are decoded once into a map: one hash probe per lookup after that.
   */
  child(dir: number, name: string): number {
    return (this.childMaps.get(dir) ?? this.listed(dir).map).get(name) ?? -1;
  }

  /** Decodes directory record `dir`'s children once: their names in order, and by name (see child()). */
  private listed(dir: number): { names: string[]; start: number; map: Map<string, number> } {
    const x = this.extra(dir);
    const start = this.buf.readUInt32LE(x);
    const n = this.buf.readUInt32LE(x + 4);
    const names: string[] = new Array(n);
    const map = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const entry = this.name(start + i);
      names[i] = entry;
      // A name that is not valid UTF-8 is not the string it decodes to: as on disk, that string finds nothing.
      if (!entry.includes('\uFFFD') || this.nameBytesAre(start + i, entry)) map.set(entry, start + i);
    }
    if (this.childMaps.size >= CHILD_MAPS_MAX) this.childMaps.clear();
    this.childMaps.set(dir, map);
    return { names, start, map };
  }

  private nameBytesAre(rec: number, name: string): boolean {
    const o = this.off(rec);
    const at = this.buf.readUInt32LE(o + R.NAME);
    return Buffer.from(name).equals(this.buf.subarray(at, at + this.buf.readUInt8(o + R.NAME_LEN)));
  }

  /** The record at layer-relative path `rel` ('' is the root), or -1 (absent, or a non-directory on the way). */
  find(rel: string): number {
    if (rel === '') return 0;
    // One lookup asks about the same entry several times (stat, whiteout, opaque, redirect).
    if (rel === this.lastRel) return this.lastRec;
    const slash = rel.lastIndexOf('/');
    const dir = slash < 0 ? 0 : this.dirRecord(rel.slice(0, slash));
    const rec = dir < 0 ? -1 : this.child(dir, slash < 0 ? rel : rel.slice(slash + 1));
    this.lastRel = rel;
    this.lastRec = rec;
    return rec;
  }

  private dirRecord(rel: string): number {
    let rec = this.dirs.get(rel);
    if (rec !== undefined) return rec;
    rec = this.find(rel);
    if (rec >= 0 && !this.isDirRec(rec)) rec = -1;
    if (this.dirs.size >= DIR_CACHE_MAX) this.dirs.clear();
    this.dirs.set(rel, rec);
    return rec;
  }

  flags(rec: number): number {
    return this.buf.readUInt8(this.off(rec) + R.FLAGS);
  }

  mode(rec: number): number {
    return this.buf.readUInt16LE(this.off(rec) + R.MODE);
  }

  ino(rec: number): number {
    return this.buf.readUIntLE(this.off(rec) + R.INO, 6);
  }

  name(rec: number): string {
    const o = this.off(rec);
    const at = this.buf.readUInt32LE(o + R.NAME);
    return this.buf.toString('utf8', at, at + this.buf.readUInt8(o + R.NAME_LEN));
  }

  /** Fills a StatArray as lstat would. */
  statInto(rec: number, st: Float64Array): void {
    const b = this.buf;
    const o = this.off(rec);
    const mode = b.readUInt16LE(o + R.MODE);
    st[ST.DEV] = this.dev;
    st[ST.INO] = b.readUIntLE(o + R.INO, 6);
    st[ST.MODE] = mode;
    st[ST.NLINK] = b.readUInt32LE(o + R.NLINK);
    const owner = b.readUInt32LE(H.OWNERS) + b.readUInt16LE(o + R.OWNER) * 8;
    st[ST.UID] = b.readUInt32LE(owner);
    st[ST.GID] = b.readUInt32LE(owner + 4);
    st[ST.SIZE] = b.readUIntLE(o + R.SIZE, 6);
    st[ST.BLKSIZE] = b.readUInt32LE(H.BLKSIZE);
    st[ST.BLOCKS] = b.readUIntLE(o + R.BLOCKS, 6);
    st[ST.ATIME] = b.readIntLE(o + R.ATIME, 6);
    st[ST.ATIME_NS] = b.readUInt32LE(o + R.ATIME + 6);
    st[ST.MTIME] = b.readIntLE(o + R.MTIME, 6);
    st[ST.MTIME_NS] = b.readUInt32LE(o + R.MTIME + 6);
    st[ST.CTIME] = b.readIntLE(o + R.CTIME, 6);
    st[ST.CTIME_NS] = b.readUInt32LE(o + R.CTIME + 6);
    const type = mode & S_IFMT;
    const device = type === S_IFCHR || type === S_IFBLK;
    const x = device ? this.extra(rec) : 0;
    const major = device ? b.readUInt32LE(x) : 0;
    const minor = device ? b.readUInt32LE(x + 4) : 0;
    st[ST.RDEV_MAJOR] = major;
    st[ST.RDEV_MINOR] = minor;
    // glibc's makedev
    st[ST.RDEV] = (minor & 0xff) + (major & 0xfff) * 0x100 + (minor & ~0xff) * 0x1000 + Math.floor(major / 0x1000) * 2 ** 44;
  }

  /** The children of directory record `dir`: names, DT_* types and inode numbers (no `.`/`..`). */
  list(dir: number): { names: string[]; types: Uint8Array; inos: Float64Array; recs: number[] } {
    // Listed, a directory's entries are looked up next: decoded once for both.
    const { names, start } = this.listed(dir);
    const n = names.length;
    const types = new Uint8Array(n);
    const inos = new Float64Array(n);
    const recs: number[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const rec = start + i;
      types[i] = this.mode(rec) >>> 12;
      inos[i] = this.ino(rec);
      recs[i] = rec;
    }
    return { names, types, inos, recs };
  }

  readlink(rec: number): Buffer {
    const x = this.extra(rec);
    return Buffer.from(this.buf.subarray(x + 4, x + 4 + this.buf.readUInt32LE(x)));
  }

  /** Calls `fn` for each xattr of the record until it returns true. */
  private eachXattr(rec: number, fn: (name: string, at: number, len: number) => boolean): void {
    const b = this.buf;
    if ((this.flags(rec) & F.XATTRS) === 0) return;
    const mode = this.mode(rec) & S_IFMT;
    let p = this.extra(rec);
    // The xattrs follow the type's part of the extra area.
    if (mode === S_IFDIR || mode === S_IFCHR || mode === S_IFBLK) p += 8;
    else if (mode === S_IFLNK) p += 4 + b.readUInt32LE(p);
    const n = b.readUInt16LE(p);
    p += 2;
    for (let i = 0; i < n; i++) {
      const nl = b.readUInt8(p);
      const name = b.toString('utf8', p + 1, p + 1 + nl);
      p += 1 + nl;
      const vl = b.readUInt32LE(p);
      p += 4;
      if (fn(name, p, vl)) return;
      p += vl;
    }
  }

  getxattr(rec: number, name: string): Buffer | null {
    let value: Buffer | null = null;
    this.eachXattr(rec, (n, at, len) => {
      if (n !== name) return false;
      value = Buffer.from(this.buf.subarray(at, at + len));
      return true;
    });
    return value;
  }

  listxattr(rec: number): string[] {
    const out: string[] = [];
    this.eachXattr(rec, (n) => {
      out.push(n);
      return false;
    });
    return out;
  }
}
