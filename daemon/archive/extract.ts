// Applying a layer tar (OCI format, optionally gzip) to a directory in kernel overlayfs format, and
// importing a plain rootfs directory as a layer.
import * as fs from 'node:fs';
import type { Readable } from 'node:stream';
import * as native from '../../native-shims';
import { ArchiveError, CorruptArchiveError, UnsafeArchiveError } from './errors';
import {
  Meta,
  WH_META_PREFIX,
  WH_OPAQUE,
  WH_PREFIX,
  XATTR_OPAQUE,
  applyMeta,
  lstatNode,
  makeSpecial,
  readXattrs,
  setTimes,
  walkTree,
} from './fsnode';
import { PackResult, packLayer } from './pack';
import { DestTree, normalizeMember } from './safe-path';
import { TarEntry, TarReader } from './tar-reader';

// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface ExtractOptions {}

export type ExtractResult = PackResult;

type Times = [number, number];

class Extraction {
  readonly tree: DestTree;
  /** Directory mtimes, applied once everything is written (their contents change them). */
  readonly dirTimes = new Map<string, Times>();
  size = 0;

  constructor(readonly dest: string) {
    this.tree = new DestTree(dest);
  }

  /** Removes whatever is at rel unless it is a directory and keepDir; returns true if a directory was kept. */
  private clear(rel: string, keepDir: boolean): boolean {
    const abs = this.tree.abs(rel);
    const st = lstatNode(abs);
    if (st === null) return false;
    if (st.type === 'dir') {
      if (keepDir) return true;
      fs.rmSync(abs, { recursive: true, force: true });
      this.tree.forget(rel);
      const prefix = rel + '/';
      for (const k of [...this.dirTimes.keys()]) if (k === rel || k.startsWith(prefix)) this.dirTimes.delete(k);
    } else {
      fs.unlinkSync(abs);
    }
    return false;
  }

  async apply(e: TarEntry, reader: TarReader): Promise<void> {
    const comps = normalizeMember(e.name);
    if (comps.length === 0) {
      if (e.type !== 'dir') throw new UnsafeArchiveError(e.name, 'a non-directory member names the archive root');
      applyMeta(this.dest, e.name, this.meta(e), true);
      this.dirTimes.set('', [e.mtimeSec, e.mtimeNsec]);
      return;
    }
    const base = comps[comps.length - 1];
    const parentComps = comps.slice(0, -1);
    // Skip AUFS metadata (.wh..wh.plnk, .wh..wh.aufs...) anywhere in the path, except the opaque marker.
    if (parentComps.some((c) => c.startsWith(WH_META_PREFIX))) return;
    if (base === WH_OPAQUE) {
      this.tree.ensureDirs(parentComps, parentComps.length, e.name);
      try {
        native.lsetxattr(this.tree.abs(parentComps.join('/')), XATTR_OPAQUE, Buffer.from('y'), 0);
      } catch (err) {
        throw new ArchiveError(`cannot mark '${parentComps.join('/') || '/'}' opaque: ${(err as Error).message}`);
      }
      return;
    }
    if (base.startsWith(WH_META_PREFIX)) return;
    if (base.startsWith(WH_PREFIX)) {
      const hidden = base.slice(WH_PREFIX.length);
      if (hidden === '' || hidden === '.' || hidden === '..') {
        throw new UnsafeArchiveError(e.name, 'whiteout names an invalid entry');
      }
      const rel = [...parentComps, hidden].join('/');
      this.tree.ensureDirs(parentComps, parentComps.length, e.name);
      this.clear(rel, false);
      const abs = this.tree.abs(rel);
      makeSpecial(abs, 'char', 0, 0, 0);
      applyMeta(abs, e.name, { ...this.meta(e), type: 'char', mode: 0, xattrs: [] }, false);
      return;
    }

    const rel = comps.join('/');
    const abs = this.tree.abs(rel);
    this.tree.ensureDirs(comps, comps.length - 1, e.name);
    switch (e.type) {
      case 'dir': {
        if (!this.clear(rel, true)) fs.mkdirSync(abs, 0o700);
        this.tree.markDir(rel);
        applyMeta(abs, e.name, this.meta(e), true);
        this.dirTimes.set(rel, [e.mtimeSec, e.mtimeNsec]);
        return;
      }
      case 'file': {
        this.clear(rel, false);
        await this.writeFile(abs, e, reader);
        this.size += e.size;
        break;
      }
      case 'symlink':
        this.clear(rel, false);
        fs.symlinkSync(e.linkname, abs);
        break;
      case 'link': {
        const target = e.linkname.toString('utf8');
        const tcomps = normalizeMember(target, e.name);
        if (tcomps.length === 0) throw new UnsafeArchiveError(e.name, 'hard link to the archive root');
        const trel = tcomps.join('/');
        if (trel === rel) return; // a link to itself: nothing to do
        const parentsExist = this.tree.ensureDirs(tcomps, tcomps.length - 1, e.name, false);
        const tst = parentsExist ? lstatNode(this.tree.abs(trel)) : null;
        if (tst === null) {
          throw new CorruptArchiveError(`hard link '${e.name}' points to '${target}', which is not earlier in the archive`, e.offset);
        }
        if (tst.type === 'dir') throw new UnsafeArchiveError(e.name, `hard link to directory '${target}'`);
        this.clear(rel, false);
        fs.linkSync(this.tree.abs(trel), abs);
        return; // a hard link shares the target's metadata
      }
      case 'char':
      case 'block':
      case 'fifo':
        this.clear(rel, false);
        makeSpecial(abs, e.type, 0, e.devmajor, e.devminor);
        break;
    }
    applyMeta(abs, e.name, this.meta(e), false);
  }

  private meta(e: TarEntry): Meta {
    return { type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, mtimeSec: e.mtimeSec, mtimeNsec: e.mtimeNsec, xattrs: e.xattrs };
  }

  private async writeFile(abs: string, e: TarEntry, reader: TarReader): Promise<void> {
    const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;
    const fh = await fs.promises.open(abs, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
    try {
      for await (const chunk of reader.content()) {
        let off = 0;
        while (off < chunk.length) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
      }
    } finally {
      await fh.close();
    }
  }

  finishDirs(): void {
    for (const [rel, [sec, nsec]] of this.dirTimes) setTimes(this.tree.abs(rel), rel || '/', sec, nsec);
  }
}

/**
 * Applies a layer tar to `destDir` (created if missing) in kernel overlayfs format.
 *
 * - input: a path or a stream; gzip is detected by its magic bytes (1f 8b).
 * - diffId: "sha256:" + sha256 of the whole uncompressed tar stream (trailing blocks included);
 *   size: bytes of regular-file content written.
 * - OCI whiteouts become overlay whiteouts: `.wh.<name>` -> char 0/0 node, `.wh..wh..opq` -> xattr
 *   trusted.overlay.opaque=y on its directory. Other `.wh..wh.*` (AUFS metadata) are skipped.
 *   trusted.overlay.* xattrs carried by the archive itself are ignored.
 * - Safety: names are normalized lexically, '..' refuses the archive (UnsafeArchiveError), parents are
 *   verified to be real directories (never symlinks), hard links must point to an earlier non-directory
 *   member. Symlinks are created verbatim and never followed.
 * - Errors: CorruptArchiveError (bad/truncated tar or gzip, including a missing end-of-archive
 *   marker), UnsafeArchiveError, UnsupportedArchiveError, ArchiveError (I/O while applying).
 *   extractLayer does NOT clean up: on error destDir holds a partial layer and the caller must delete it.
 */
export async function extractLayer(input: Readable | string, destDir: string, _opts: ExtractOptions = {}): Promise<ExtractResult> {
  fs.mkdirSync(destDir, { recursive: true });
  const reader = await TarReader.open(input);
  try {
    const x = new Extraction(destDir);
    for (;;) {
      const e = await reader.next();
      if (e === null) break;
      await x.apply(e, reader);
    }
    x.finishDirs();
    const { sha256 } = reader.digest();
    return { diffId: 'sha256:' + sha256, size: x.size };
  } finally {
    await reader.close();
  }
}

/**
 * Copies a rootfs directory into `destDir` (created if missing) preserving types, modes, owners,
 * ns mtimes, xattrs (except trusted.overlay.*), hard links, devices and fifos; sockets are skipped. The
 * root's own metadata is copied onto destDir. No whiteout conversion. Returns the {diffId, size}
 * packLayer computes for the result. Does not clean up destDir on error.
 */
export async function importDirectory(srcDir: string, destDir: string): Promise<ExtractResult> {
  const rootSt = lstatNode(srcDir);
  if (rootSt === null || rootSt.type !== 'dir') throw new ArchiveError(`cannot import '${srcDir}': not a directory`);
  fs.mkdirSync(destDir, { recursive: true });
  const firstPath = new Map<string, string>();
  const dirTimes: Array<[string, number, number]> = [];
  for (const node of walkTree(srcDir)) {
    const st = node.st;
    if (st.type === 'socket') continue;
    const dst = destDir + '/' + node.rel;
    if (st.type !== 'dir' && st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      const first = firstPath.get(key);
      if (first !== undefined) {
        fs.linkSync(first, dst);
        continue;
      }
      firstPath.set(key, dst);
    }
    switch (st.type) {
      case 'dir':
        fs.mkdirSync(dst, 0o700);
        dirTimes.push([dst, st.mtimeSec, st.mtimeNsec]);
        break;
      case 'file':
        await fs.promises.copyFile(node.abs, dst, fs.constants.COPYFILE_EXCL);
        break;
      case 'symlink':
        fs.symlinkSync(fs.readlinkSync(node.abs, { encoding: 'buffer' }), dst);
        break;
      case 'char':
      case 'block':
      case 'fifo':
        makeSpecial(dst, st.type, 0, st.rdevMajor, st.rdevMinor);
        break;
      default:
        throw new ArchiveError(`cannot import '${node.abs}': unexpected file type ${st.type}`);
    }
    applyMeta(dst, node.rel, { ...st, type: st.type, xattrs: readXattrs(node.abs) }, st.type === 'dir');
  }
  applyMeta(destDir, '/', { ...rootSt, type: 'dir', xattrs: readXattrs(srcDir) }, true);
  dirTimes.push([destDir, rootSt.mtimeSec, rootSt.mtimeNsec]);
  for (const [p, sec, nsec] of dirTimes) setTimes(p, p, sec, nsec);
  return packLayer(destDir, null);
}
