// Copy-up: bring a lower entry into the upper layer before it changes, parents
// first. Each object is built in the work directory with its mode, owner,
// xattrs and nanosecond times, then renamed into place, so a crash never leaves
// a partial file visible. Data is reflinked where possible, else copied with
// copy_file_range, hole by hole.
import * as fs from 'node:fs';
import * as native from '../../native-shims';
import { UPPER, type LayerStack } from './layers';
import type { Logger } from '../log';
import type { Node, NodeTable } from './nodes';
import type { LayerXattrs } from './layer-xattrs';
import type { Origins } from './origin';
import { formatOverride, overridable, readOverride, type StatOverride } from './override-stat';
import { isPrivateXattr } from './whiteouts';
import { S_IFMT, S_IFDIR, S_IFREG, S_IFLNK } from '../util/file-mode';

const { ST } = native;
const CHUNK = 1 << 30;
const PLAIN_CHUNK = 1 << 20;

export class CopyUp {
  private seq = 0;
  private readonly tmpPrefix: string;

  constructor(
    private readonly layers: LayerStack,
    private readonly nodes: NodeTable,
    private readonly log?: Logger,
    /** Unprivileged: an owner we may not give (EPERM, or EINVAL for an id our namespace lacks) is left as ours, as fuse-overlayfs does. */
    private readonly lenientOwner = false,
    /** Override xattrs and renamed names per layer (none: xattrs are copied as they are). */
    private readonly xattrs?: LayerXattrs,
    /** Where copies record their origin (none: an unprivileged union, which cannot decode one). */
    private readonly origins?: Origins,
  ) {
    this.tmpPrefix = `${layers.workTmp}/#${process.pid.toString(16)}_`;
  }

  /** A fresh name in the work directory. */
  tmpName(): string {
    return this.tmpPrefix + (this.seq++).toString(16);
  }

  /** Makes sure a directory node exists in upper, copying up its ancestors first. */
  ensureUpperDir(dir: Node): void {
    if (dir.upper) return;
    if (dir.parent !== null) this.ensureUpperDir(dir.parent);
    this.copyUp(dir, true);
  }

  /** Copies `node` up (with its data unless `withData` is false, as for O_TRUNC). */
  copyUp(node: Node, withData: boolean): void {
    if (node.upper) return;
    if (node.parent !== null) this.ensureUpperDir(node.parent);
    const ref = node.lowers[0];
    const src = this.layers.realPath(ref.layer, ref.rel);
    const dst = this.layers.realPath(UPPER, node.path);
    const st = native.newStatArray();
    const err = native.lstatInto(src, st);
    if (err !== 0) throw Object.assign(new Error(`copy-up source ${src} vanished`), { errno: -err });
    const override = this.override(ref.layer, src, st);
    const tmp = this.tmpName();
    // A copy-up is not a change anyone made: the parent keeps its times (as overlayfs does).
    const parentDir = dst.slice(0, dst.lastIndexOf('/'));
    const pst = native.newStatArray();
    native.lstatInto(parentDir, pst);
    try {
      this.build(src, tmp, st, withData, (name) => this.copiedName(ref.layer, name));
      if (override !== null) native.lsetxattr(tmp, this.xattrs!.override(UPPER)!, Buffer.from(formatOverride(override)), 0);
      this.origins?.mark(tmp, src, ref.layer, parentDir);
      native.renameat2(tmp, dst, native.RENAME_NOREPLACE);
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      this.log?.error({ path: node.path, source: src, err: String(e) }, 'copy-up failed');
      throw e;
    }
    native.utimensat(parentDir, pst[ST.ATIME], pst[ST.ATIME_NS], pst[ST.MTIME], pst[ST.MTIME_NS], 0);
    const up = native.newStatArray();
    native.lstatInto(dst, up);
    node.upper = true;
    this.nodes.rekey(node, this.layers.realKey(up));
  }

  /** The name an xattr of layer `from` gets in the upper; null: not copied. */
  private copiedName(from: number, name: string): string | null {
    if (this.xattrs === undefined) return isPrivateXattr(name) ? null : name;
    return this.xattrs.copied(from, name);
  }

  /**
   * The owner and mode a copy keeps, as fuse-overlayfs keeps them: with an override xattr in the
   * upper, written there (the source's override, else its real ones); without one, the source's
   * override (if any) becomes the real owner and mode (`st` is changed, its type kept).
   */
  private override(from: number, src: string, st: Float64Array): StatOverride | null {
    if (this.xattrs === undefined || !overridable(st)) return null;
    const name = this.xattrs.override(from);
    const o = name === null ? null : readOverride(src, name);
    if (this.xattrs.override(UPPER) !== null) return o ?? { uid: st[ST.UID], gid: st[ST.GID], mode: st[ST.MODE] & 0o7777 };
    if (o !== null) {
      st[ST.UID] = o.uid;
      st[ST.GID] = o.gid;
      st[ST.MODE] = (st[ST.MODE] & S_IFMT) | o.mode;
    }
    return null;
  }

  private chown(give: () => void): void {
    try {
      give();
    } catch (err) {
      if (!this.lenientOwner || !['EPERM', 'EINVAL'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
    }
  }

  private build(src: string, tmp: string, st: Float64Array, withData: boolean, rename: (name: string) => string | null): void {
    const type = st[ST.MODE] & S_IFMT;
    const perm = st[ST.MODE] & 0o7777;
    if (type === S_IFREG) {
      const out = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
      try {
        if (withData && st[ST.SIZE] > 0) {
          const inp = fs.openSync(src, fs.constants.O_RDONLY);
          try {
            copyData(inp, out, st[ST.SIZE]);
          } finally {
            fs.closeSync(inp);
          }
        }
        for (const name of native.llistxattr(src)) {
          const to = rename(name);
          if (to === null) continue;
          const v = native.lgetxattr(src, name);
          if (v !== null) native.fsetxattr(out, to, v, 0);
        }
        this.chown(() => fs.fchownSync(out, st[ST.UID], st[ST.GID]));
        fs.fchmodSync(out, perm); // after chown, which clears set-id bits
        native.futimens(out, st[ST.ATIME], st[ST.ATIME_NS], st[ST.MTIME], st[ST.MTIME_NS]);
      } finally {
        fs.closeSync(out);
      }
      return;
    }
    if (type === S_IFDIR) fs.mkdirSync(tmp, 0o700);
    else if (type === S_IFLNK) fs.symlinkSync(fs.readlinkSync(src, 'buffer') as unknown as string, tmp);
    else native.mknod(tmp, st[ST.MODE], st[ST.RDEV_MAJOR], st[ST.RDEV_MINOR]);
    copyXattrs(src, tmp, rename);
    this.chown(() => fs.lchownSync(tmp, st[ST.UID], st[ST.GID]));
    if (type !== S_IFLNK) fs.chmodSync(tmp, perm);
    native.utimensat(tmp, st[ST.ATIME], st[ST.ATIME_NS], st[ST.MTIME], st[ST.MTIME_NS], native.AT_SYMLINK_NOFOLLOW);
  }
}

/** Copies the xattrs `rename` names (null: skipped) from one path to another (no symlink follow). */
export function copyXattrs(src: string, dst: string, rename: (name: string) => string | null): void {
  for (const name of native.llistxattr(src)) {
    const to = rename(name);
    if (to === null) continue;
    const v = native.lgetxattr(src, name);
    if (v === null) continue;
    try {
      native.lsetxattr(dst, to, v, 0);
    } catch (err) {
      // user.* xattrs are not allowed on symlinks and special files of some filesystems.
      if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
    }
  }
}

/** Errors that only say "this way of copying is not possible here": the next way is tried. */
const NOT_POSSIBLE = new Set(['EXDEV', 'EOPNOTSUPP', 'ENOTSUP', 'EINVAL', 'ENOSYS', 'ENOTTY']);

function notPossible(err: unknown): boolean {
  return NOT_POSSIBLE.has((err as NodeJS.ErrnoException).code ?? '');
}

/** The buffer of the plain copy, made on first use (one per thread). */
let plainBuf: Buffer | null = null;

/** Copies [pos, end) with pread/pwrite: works between any two filesystems. */
function plainCopy(inp: number, out: number, pos: number, end: number): void {
  plainBuf ??= Buffer.allocUnsafe(PLAIN_CHUNK);
  while (pos < end) {
    const n = fs.readSync(inp, plainBuf, 0, Math.min(end - pos, PLAIN_CHUNK), pos);
    if (n === 0) return; // the source shrank under us: the size is fixed by ftruncate after
    for (let w = 0; w < n; ) w += fs.writeSync(out, plainBuf, w, n - w, pos + w);
    pos += n;
  }
}

/**
 * Copies `size` bytes, keeping holes: a reflink where the filesystem shares
 * extents, else the data extents one by one with copy_file_range, else (across
 * filesystems, where copy_file_range says EXDEV) with pread/pwrite. Only "not
 * possible here" errors fall through to the next way; EIO or ENOSPC fail the copy.
 */
export function copyData(inp: number, out: number, size: number): void {
  try {
    native.ficlone(out, inp);
    return;
  } catch (err) {
    if (!notPossible(err)) throw err;
  }
  let kernelCopy = true;
  let off = 0;
  while (off < size) {
    const data = native.lseek(inp, off, native.SEEK_DATA);
    if (data < 0) break; // only a hole remains
    let hole = native.lseek(inp, data, native.SEEK_HOLE);
    if (hole < 0 || hole > size) hole = size;
    let pos = data;
    while (kernelCopy && pos < hole) {
      let n: number;
      try {
        n = native.copyFileRange(inp, pos, out, pos, Math.min(hole - pos, CHUNK));
      } catch (err) {
        if (!notPossible(err)) throw err;
        kernelCopy = false;
        break;
      }
      if (n === 0) break;
      pos += n;
    }
    if (!kernelCopy) plainCopy(inp, out, pos, hole);
    off = hole;
  }
  fs.ftruncateSync(out, size);
}
