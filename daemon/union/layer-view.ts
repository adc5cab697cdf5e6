// How the union reads one layer's metadata: live from the layer directory, or,
// for an immutable lower layer with a metadata index, from the index (no inode
// of the layer is touched). Both answer exactly as the live filesystem would.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as native from '../../native-shims';
import { F } from '../layer-index/format';
import type { LayerIndex } from '../layer-index/reader';
import { hasMarkerWhiteout, isOpaqueDir, isWhiteout, overlayXattr, TRUSTED_MARKERS, USER_MARKERS, WH_PREFIX } from './whiteouts';
import { S_IFMT, S_IFDIR, S_IFLNK } from '../util/file-mode';

const E = os.constants.errno;

export type OverlayKey = 'opaque' | 'whiteout' | 'redirect';

export interface LayerView {
  /** lstat into `st`; 0 or a positive errno. */
  lstat(rel: string, st: Float64Array): number;
  /** `rel` (just lstat'ed into `st`) is a whiteout in any format. */
  isWhiteout(rel: string, st: Float64Array): boolean;
  isOpaqueDir(rel: string): boolean;
  overlayXattr(rel: string, key: OverlayKey): Buffer | null;
  /** An OCI marker `.wh.<name>` in directory `dirRel` hides `name`. */
  hasMarkerWhiteout(dirRel: string, name: string): boolean;
  /** Directory entries (with `.` and `..` for a live directory); throws an errno error. */
  readdir(rel: string): native.DirEntries;
  readlink(rel: string): Buffer;
  getxattr(rel: string, name: string): Buffer | null;
  listxattr(rel: string): string[];
}

function errnoError(errno: number, syscall: string): Error {
  const code = Object.entries(E).find(([, v]) => v === errno)?.[0] ?? 'EIO';
  return Object.assign(new Error(`${code}: ${syscall}`), { code, errno: -errno, syscall });
}

/** The layer directory itself. */
export class LiveView implements LayerView {
  constructor(private readonly realPath: (rel: string) => string) {}

  lstat(rel: string, st: Float64Array): number {
    return native.lstatInto(this.realPath(rel), st);
  }
  isWhiteout(rel: string, st: Float64Array): boolean {
    return isWhiteout(this.realPath(rel), st);
  }
  isOpaqueDir(rel: string): boolean {
    return isOpaqueDir(this.realPath(rel));
  }
  overlayXattr(rel: string, key: OverlayKey): Buffer | null {
    return overlayXattr(this.realPath(rel), key);
  }
  hasMarkerWhiteout(dirRel: string, name: string): boolean {
    return hasMarkerWhiteout(this.realPath(dirRel), name);
  }
  readdir(rel: string): native.DirEntries {
    return native.readdirIno(this.realPath(rel));
  }
  readlink(rel: string): Buffer {
    return fs.readlinkSync(this.realPath(rel), 'buffer') as Buffer;
  }
  getxattr(rel: string, name: string): Buffer | null {
    return native.lgetxattr(this.realPath(rel), name);
  }
  listxattr(rel: string): string[] {
    return native.llistxattr(this.realPath(rel));
  }
}

/** A lower layer answered from its metadata index; xattrs it could not read at build time come from disk. */
export class IndexedView implements LayerView {
  constructor(
    private readonly index: LayerIndex,
    readonly live: LiveView,
  ) {}

  lstat(rel: string, st: Float64Array): number {
    const rec = this.index.find(rel);
    if (rec < 0) return E.ENOENT;
    this.index.statInto(rec, st);
    return 0;
  }
  isWhiteout(rel: string): boolean {
    const rec = this.index.find(rel);
    return rec >= 0 && (this.index.flags(rec) & (F.WH_CHR | F.WH_XATTR)) !== 0;
  }
  isOpaqueDir(rel: string): boolean {
    const rec = this.index.find(rel);
    return rec >= 0 && (this.index.flags(rec) & F.OPAQUE) !== 0;
  }
  overlayXattr(rel: string, key: OverlayKey): Buffer | null {
    const rec = this.index.find(rel);
    if (rec < 0) return null;
    if (this.index.flags(rec) & F.XATTR_LIVE) return this.live.overlayXattr(rel, key);
    return this.index.getxattr(rec, TRUSTED_MARKERS[key]) ?? this.index.getxattr(rec, USER_MARKERS[key]);
  }
  hasMarkerWhiteout(dirRel: string, name: string): boolean {
    return this.index.find(dirRel === '' ? WH_PREFIX + name : dirRel + '/' + WH_PREFIX + name) >= 0;
  }
  readdir(rel: string): native.DirEntries {
    const rec = this.index.find(rel);
    if (rec < 0) throw errnoError(E.ENOENT, 'scandir');
    if ((this.index.mode(rec) & S_IFMT) !== S_IFDIR) throw errnoError(E.ENOTDIR, 'scandir');
    return this.index.list(rec);
  }
  readlink(rel: string): Buffer {
    const rec = this.index.find(rel);
    if (rec < 0) throw errnoError(E.ENOENT, 'readlink');
    if ((this.index.mode(rec) & S_IFMT) !== S_IFLNK) throw errnoError(E.EINVAL, 'readlink');
    return this.index.readlink(rec);
  }
  getxattr(rel: string, name: string): Buffer | null {
    const rec = this.index.find(rel);
    if (rec < 0) throw errnoError(E.ENOENT, 'lgetxattr');
    if (this.index.flags(rec) & F.XATTR_LIVE) return this.live.getxattr(rel, name);
    return this.index.getxattr(rec, name);
  }
  listxattr(rel: string): string[] {
    const rec = this.index.find(rel);
    if (rec < 0) throw errnoError(E.ENOENT, 'llistxattr');
    if (this.index.flags(rec) & F.XATTR_LIVE) return this.live.listxattr(rel);
    return this.index.listxattr(rec);
  }
}
