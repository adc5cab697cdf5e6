// The on-disk markers of a union, in every format real layer stores contain:
// overlayfs char 0/0 devices, xattr whiteouts (zero-size file with
// trusted.overlay.whiteout, parent marked opaque=x), opaque=y directories, and
// the OCI/AUFS markers `.wh.<name>` and `.wh..wh..opq`.
import * as fs from 'node:fs';
import * as native from '../../native-shims';

const { ST } = native;
const S_IFMT = 0o170000;
const S_IFCHR = 0o020000;
const S_IFREG = 0o100000;

export const XATTR_PREFIX = 'trusted.overlay.';
export const XATTR_OPAQUE = 'trusted.overlay.opaque';
export const XATTR_WHITEOUT = 'trusted.overlay.whiteout';
export const XATTR_REDIRECT = 'trusted.overlay.redirect';
export const WH_PREFIX = '.wh.';
export const WH_OPAQUE = '.wh..wh..opq';

/** overlayfs never shows its own xattrs through the merged view. */
export function isPrivateXattr(name: string): boolean {
  return name.startsWith(XATTR_PREFIX);
}

export function isCharWhiteout(st: Float64Array): boolean {
  return (st[ST.MODE] & S_IFMT) === S_IFCHR && st[ST.RDEV_MAJOR] === 0 && st[ST.RDEV_MINOR] === 0;
}

/** A zero-size regular file carrying trusted.overlay.whiteout. */
export function isXattrWhiteout(path: string, st: Float64Array): boolean {
  return (st[ST.MODE] & S_IFMT) === S_IFREG && st[ST.SIZE] === 0 && native.lgetxattr(path, XATTR_WHITEOUT) !== null;
}

export function isWhiteout(path: string, st: Float64Array): boolean {
  return isCharWhiteout(st) || isXattrWhiteout(path, st);
}

/** Directory opacity: 'y' hides everything below; 'x' only says it holds xattr whiteouts. */
export function opaqueValue(dirPath: string): string | null {
  const v = native.lgetxattr(dirPath, XATTR_OPAQUE);
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
 * when linking is not possible (EMLINK, a filesystem without hard links).
 */
export class WhiteoutMaker {
  private shared: string | null = null;

  constructor(private readonly workTmp: string) {}

  make(path: string): void {
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
}
