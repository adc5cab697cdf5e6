// Copy-up origins in overlayfs' own format, so that st_ino survives a remount as it does on kernel
// overlayfs, and either of the two reads the other's upper the same way.
//
// On copy-up the kernel stores the source's file handle on the copy as trusted.overlay.origin
// (struct ovl_fb, fs/overlayfs/overlayfs.h: version 0, magic 0xfb, length, flags, handle type, the
// source filesystem's s_uuid, then the handle) and marks the copy's parent trusted.overlay.impure=y.
// An upper non-directory whose origin decodes to a lower file with one link reports that file's
// st_ino (ovl_getattr); in an impure directory, readdir reports the same number as d_ino.
// Decoding takes open_by_handle_at, which needs CAP_DAC_READ_SEARCH: without it, and on
// filesystems without file handles, the upper's own inode is reported, as before.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as native from '../../native-shims';
import { UPPER, type LayerStack } from './layers';
import { S_IFMT } from '../util/file-mode';

const { ST } = native;
const OVL_FH_VERSION = 0;
const OVL_FH_MAGIC = 0xfb;
/** version, magic, len, flags, type, uuid[16] */
const HEADER = 21;
/** The handle is of an upper inode (the kernel's index=on); we never write or follow those. */
const OVL_FH_FLAG_PATH_UPPER = 1 << 2;
const OVL_FH_FLAG_BIG_ENDIAN = 1 << 0;
const OVL_FH_FLAG_ANY_ENDIAN = 1 << 1;
const O_PATH = 0o10000000;
const IMPURE = Buffer.from('y');

export class Origins {
  /** Per filesystem of the lowers: an fd on a layer root there (for open_by_handle_at) and its UUID. */
  private readonly roots = new Map<number, { fd: number; uuid: Buffer } | null>();
  /** open_by_handle_at said EPERM: nothing will decode in this process. */
  private cannotDecode = false;
  private readonly st = native.newStatArray();

  constructor(
    private readonly layers: LayerStack,
    /** The origin and impure xattr names (trusted.overlay.* or, with userxattr, user.overlay.*). */
    private readonly originXattr: string,
    private readonly impureXattr: string,
  ) {}

  /**
   * Marks `copy` (an upper path) as copied up from `src` (a lower path, layer `layer`), and its
   * parent as holding copies. A source without file handles leaves no mark, as in the kernel.
   */
  mark(copy: string, src: string, layer: number, parentDir: string): void {
    const root = this.root(layer);
    if (root === null) return;
    let fd: number;
    try {
      fd = fs.openSync(src, O_PATH | fs.constants.O_NOFOLLOW);
    } catch {
      return;
    }
    let handle: Buffer | null;
    try {
      handle = native.nameToHandle(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (handle === null || handle.length - 4 > 255 - HEADER) return;
    const fb = Buffer.alloc(HEADER + handle.length - 4);
    fb[0] = OVL_FH_VERSION;
    fb[1] = OVL_FH_MAGIC;
    fb[2] = fb.length;
    fb[3] = 0; // little-endian handle, as this host's
    fb[4] = handle.readInt32LE(0) & 0xff;
    root.uuid.copy(fb, 5);
    handle.copy(fb, HEADER, 4);
    native.lsetxattr(copy, this.originXattr, fb, 0);
    this.markImpure(parentDir);
  }

  /** Marks upper directory `dir` as holding copies with origins (trusted.overlay.impure=y). */
  markImpure(dir: string): void {
    if (native.lgetxattr(dir, this.impureXattr) === null) native.lsetxattr(dir, this.impureXattr, IMPURE, 0);
  }

  /** Whether upper directory `dir` may hold copies with origins. */
  impure(dir: string): boolean {
    return native.lgetxattr(dir, this.impureXattr) !== null;
  }

  /**
   * The union st_ino upper non-directory `path` (real key `upperKey`, file type `fmt`) reports:
   * its origin's when it has one that decodes to a lower file of its type with one link;
   * remembered for the mount.
   */
  learn(path: string, upperKey: number, fmt: number): void {
    if (this.cannotDecode || this.layers.hasOrigin(upperKey)) return;
    const fb = native.lgetxattr(path, this.originXattr);
    if (fb === null || fb.length < HEADER || fb[0] !== OVL_FH_VERSION || fb[1] !== OVL_FH_MAGIC || fb[2] !== fb.length) return;
    const flags = fb[3];
    if (flags & OVL_FH_FLAG_PATH_UPPER || (flags & OVL_FH_FLAG_BIG_ENDIAN && !(flags & OVL_FH_FLAG_ANY_ENDIAN))) return;
    const uuid = fb.subarray(5, HEADER);
    const handle = Buffer.alloc(4 + fb.length - HEADER);
    handle.writeInt32LE(fb[4], 0);
    fb.copy(handle, 4, HEADER);
    const tried = new Set<number>();
    for (let layer = 1; layer < this.layers.roots.length; layer++) {
      // A handle names an inode of a filesystem, whichever layer directory holds it there.
      const fsIndex = this.layers.fsIndex(layer);
      if (tried.has(fsIndex)) continue;
      tried.add(fsIndex);
      const root = this.root(layer);
      if (root === null || !root.uuid.equals(uuid)) continue;
      const fd = native.openByHandle(root.fd, handle, O_PATH);
      if (fd === -os.constants.errno.EPERM) {
        this.cannotDecode = true;
        return;
      }
      if (fd < 0) continue; // not on this filesystem, or gone (ESTALE)
      const err = native.fstatInto(fd, this.st);
      fs.closeSync(fd);
      // A lower file with other links may have been copied up under several names: each keeps its own.
      if (err !== 0 || this.st[ST.NLINK] !== 1 || (this.st[ST.MODE] & S_IFMT) !== fmt) return;
      this.layers.rememberOrigin(upperKey, this.layers.realKeyOf(layer, this.st[ST.INO]));
      return;
    }
  }

  close(): void {
    for (const r of this.roots.values()) if (r) fs.closeSync(r.fd);
    this.roots.clear();
  }

  private root(layer: number): { fd: number; uuid: Buffer } | null {
    const fsIndex = this.layers.fsIndex(layer);
    let r = this.roots.get(fsIndex);
    if (r !== undefined) return r;
    r = null;
    if (layer !== UPPER) {
      try {
        // A real open file: open_by_handle_at and FS_IOC_GETFSUUID refuse O_PATH ones (EBADF).
        const fd = fs.openSync(this.layers.roots[layer], fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
        const uuid = native.fsUuid(fd);
        if (uuid !== null) r = { fd, uuid };
        else fs.closeSync(fd);
      } catch {
        r = null;
      }
    }
    this.roots.set(fsIndex, r);
    return r;
  }
}
