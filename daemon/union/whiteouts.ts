// The on-disk markers of a union, in every format real layer stores contain:
// overlayfs char 0/0 devices, xattr whiteouts (zero-size file with
// trusted.overlay.whiteout, parent marked opaque=x), opaque=y directories, and
// the OCI/AUFS markers `.wh.<name>` and `.wh..wh..opq`. The overlay xattrs are
// read under trusted.overlay.* and user.overlay.* (what kernel overlayfs writes
// with `userxattr` in a user namespace, and fuse-overlayfs when unprivileged);
// a union writes the one its privileges allow (MarkerXattrs).
import * as fs from 'node:fs';
import * as native from '../../native-shims';
import { S_IFMT, S_IFCHR, S_IFREG } from '../util/file-mode';

const { ST } = native;

export const XATTR_PREFIX = 'trusted.overlay.';
export const USER_XATTR_PREFIX = 'user.overlay.';
export const XATTR_OPAQUE = 'trusted.overlay.opaque';
export const XATTR_WHITEOUT = 'trusted.overlay.whiteout';
export const XATTR_REDIRECT = 'trusted.overlay.redirect';
export const XATTR_ORIGIN = 'trusted.overlay.origin';
export const XATTR_IMPURE = 'trusted.overlay.impure';
export const WH_PREFIX = '.wh.';
export const WH_OPAQUE = '.wh..wh..opq';
/** fuse-overlayfs' own metadata (origin, opaque, override_stat). */
const FUSE_OVERLAYFS_PREFIX = 'user.fuseoverlayfs.';

/** The overlay xattrs' names under one prefix. */
export class MarkerXattrs {
  readonly opaque: string;
  readonly whiteout: string;
  readonly redirect: string;
  constructor(readonly prefix: string) {
    this.opaque = prefix + 'opaque';
    this.whiteout = prefix + 'whiteout';
    this.redirect = prefix + 'redirect';
  }
}

export const TRUSTED_MARKERS = new MarkerXattrs(XATTR_PREFIX);
export const USER_MARKERS = new MarkerXattrs(USER_XATTR_PREFIX);

/**
 * lgetxattr, with EACCES read as "not set": reading a user.* xattr needs read permission on the
 * entry, which an unprivileged union lacks on others' private files and directories (fuse-overlayfs
 * likewise takes such an entry as unmarked).
 */
export function readableXattr(path: string, name: string): Buffer | null {
  try {
    return native.lgetxattr(path, name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EACCES') return null;
    throw err;
  }
}

/** An overlay xattr (`opaque`, `whiteout`, `redirect`) in either namespace; trusted.* first, as overlayfs. */
export function overlayXattr(path: string, key: 'opaque' | 'whiteout' | 'redirect'): Buffer | null {
  return native.lgetxattr(path, TRUSTED_MARKERS[key]) ?? readableXattr(path, USER_MARKERS[key]);
}

/** Overlay metadata is never shown through the merged view, nor copied up (as fuse-overlayfs hides it). */
export function isPrivateXattr(name: string): boolean {
  return name.startsWith(XATTR_PREFIX) || name.startsWith(USER_XATTR_PREFIX) || name.startsWith(FUSE_OVERLAYFS_PREFIX);
}

export function isCharWhiteout(st: Float64Array): boolean {
  return (st[ST.MODE] & S_IFMT) === S_IFCHR && st[ST.RDEV_MAJOR] === 0 && st[ST.RDEV_MINOR] === 0;
}

/** A zero-size regular file carrying the overlay whiteout xattr. */
export function isXattrWhiteout(path: string, st: Float64Array): boolean {
  return (st[ST.MODE] & S_IFMT) === S_IFREG && st[ST.SIZE] === 0 && overlayXattr(path, 'whiteout') !== null;
}

export function isWhiteout(path: string, st: Float64Array): boolean {
  return isCharWhiteout(st) || isXattrWhiteout(path, st);
}

/** Directory opacity: 'y' hides everything below; 'x' only says it holds xattr whiteouts. */
export function opaqueValue(dirPath: string): string | null {
  const v = overlayXattr(dirPath, 'opaque');
  return v === null ? null : v.toString('latin1');
}

export function isMarkerName(name: string): boolean {
  return name.startsWith(WH_PREFIX);
}

const scratch = native.newStatArray();

/** True when `dirPath` is opaque in any format. */
export function isOpaqueDir(dirPath: string): boolean {
  return opaqueValue(dirPath) === 'y' || native.lstatInto(dirPath + '/' + WH_OPAQUE, scratch) === 0;
}

/** True when an OCI marker `.wh.<name>` in `dirPath` hides `name`. */
export function hasMarkerWhiteout(dirPath: string, name: string): boolean {
  return native.lstatInto(dirPath + '/' + WH_PREFIX + name, scratch) === 0;
}

/** Creates an overlayfs whiteout (char 0/0, mode 0) at `path`. */
export function makeWhiteout(path: string): void {
  native.mknod(path, S_IFCHR, 0, 0);
}

/**
 * Whiteouts as the kernel makes them: hard links of one shared whiteout inode in
 * the work dir (one inode for all of them), falling back to a fresh device node
 * when linking is not possible (EMLINK, a filesystem without hard links). Where
 * even a 0/0 device cannot be made (EPERM: a filesystem mounted nodev in a user
 * namespace), an xattr whiteout as overlayfs accepts it: a zero-size file with
 * the whiteout xattr in a directory marked opaque=x.
 */
export class WhiteoutMaker {
  private shared: string | null = null;

  constructor(
    private readonly workTmp: string,
    private readonly markers: MarkerXattrs = TRUSTED_MARKERS,
  ) {}

  /** Makes a whiteout at `path`; true when it is an xattr whiteout (see markParent). */
  make(path: string): boolean {
    try {
      this.makeDevice(path);
      return false;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
      this.makeXattrWhiteout(path);
      return true;
    }
  }

  private makeDevice(path: string): void {
    if (this.shared === null) {
      const p = `${this.workTmp}/#whiteout`;
      try {
        fs.rmSync(p, { force: true });
        makeWhiteout(p);
        this.shared = p;
      } catch {
        return makeWhiteout(path);
      }
    }
    try {
      fs.linkSync(this.shared, path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') throw err;
      if (code === 'EMLINK') this.shared = null;
      makeWhiteout(path);
    }
  }

  /** `path` may be a work-dir temporary that is renamed into place: its final parent is marked later (markParent). */
  private makeXattrWhiteout(path: string): void {
    fs.closeSync(fs.openSync(path, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY, 0));
    native.lsetxattr(path, this.markers.whiteout, Buffer.from('y'), 0);
    this.markParent(path);
  }

  /** A directory that holds an xattr whiteout is marked opaque=x (unless it is opaque already). */
  markParent(path: string): void {
    const dir = path.slice(0, path.lastIndexOf('/'));
    if (dir === this.workTmp) return;
    if (opaqueValue(dir) === null) native.lsetxattr(dir, this.markers.opaque, Buffer.from('x'), 0);
  }
}
