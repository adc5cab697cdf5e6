// rename(2) in the union, as overlayfs does it: copy-up of what moves, redirects for directories
// with lower parts (or EXDEV without redirect_dir), opaque markers for upper-only directories
// moving over lower ones, and a whiteout left where a lower entry showed through.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as native from '../../native-shims';
import { FuseError } from '../fuse/filesystem';
import type { CopyUp } from './copyup';
import type { LayerStack } from './layers';
import type { Node, NodeTable } from './nodes';
import type { Resolved, Resolver } from './resolve';
import type { Trash } from './trash';
import type { Origins } from './origin';
import { isCharWhiteout, isOpaqueDir, isWhiteout, overlayXattr, type MarkerXattrs, type WhiteoutMaker } from './whiteouts';

const E = os.constants.errno;
const { ST } = native;

/** Another name of a hard-linked node. */
export interface Alias {
  parent: Node;
  name: string;
}

/** What rename needs of the union around it. */
export interface RenameHost {
  layers: LayerStack;
  nodes: NodeTable;
  resolver: Resolver;
  copy: CopyUp;
  whiteouts: WhiteoutMaker;
  /** Replaced directories go here, to be emptied after the reply. */
  trash: Trash;
  markers: MarkerXattrs;
  /** Copy-up origins: a directory receiving a copy that has one is marked impure. */
  origins: Origins | undefined;
  aliases: Map<Node, Alias[]>;
  /** redirect_dir=on: directories with lower parts may move. */
  redirectDir: boolean;
  dirNode(id: number): Node;
  checkName(name: string): void;
  writable(): void;
  upperPath(node: Node): string;
  resolveOrFail(parent: Node, name: string): Resolved;
  nodeFor(parent: Node, name: string, r: Resolved): Node;
  isEmptyDir(parent: Node, name: string, r: Resolved): boolean;
  liveChild(parent: Node, name: string, r: Resolved): Node | undefined;
  removeName(node: Node, parent: Node, name: string): void;
  /** A node about to lose a name while open keeps one for a takeover (held-files.ts). */
  holdIfOpen(node: Node | undefined): void;
  dropIfUnused(node: Node): void;
}

function fail(errno: number, msg?: string): never {
  throw new FuseError(errno, msg);
}

export class Renamer {
  constructor(private readonly h: RenameHost) {}

  rename(p1: number, n1: string, p2: number, n2: string, flags: number): void {
    const h = this.h;
    const from = h.dirNode(p1);
    const to = h.dirNode(p2);
    // RENAME_WHITEOUT is refused as overlayfs refuses it: our whiteouts are the union's own format.
    if (flags & ~(native.RENAME_NOREPLACE | native.RENAME_EXCHANGE)) fail(E.EINVAL);
    const exchange = (flags & native.RENAME_EXCHANGE) !== 0;
    if (exchange && flags & native.RENAME_NOREPLACE) fail(E.EINVAL);
    h.checkName(n2);
    const src = h.resolveOrFail(from, n1);
    const dst = h.resolver.child(to, n2);
    if (dst !== null && flags & native.RENAME_NOREPLACE) fail(E.EEXIST);
    if (exchange && dst === null) fail(E.ENOENT);
    h.writable();
    if (from === to && n1 === n2) return;
    if (dst !== null && !exchange) {
      if (src.isDir && !dst.isDir) fail(E.ENOTDIR);
      if (!src.isDir && dst.isDir) fail(E.EISDIR);
    }
    if (!h.redirectDir && ((src.isDir && src.lowers.length > 0) || (exchange && dst!.isDir && dst!.lowers.length > 0))) {
      fail(E.EXDEV); // as overlayfs with redirect_dir=off
    }
    const srcNode = h.nodeFor(from, n1, src);
    const dstNode = dst !== null ? h.nodeFor(to, n2, dst) : undefined;
    if (dstNode === srcNode) return; // two names of one inode: rename(2) does nothing
    // As overlayfs: a target with lower parts is checked for emptiness before anything is
    // copied up; an upper-only target is checked by the upper filesystem's own rename, after
    // the copy-ups (its errno stands: xfs says EEXIST where ext4 says ENOTEMPTY).
    const overMerged = !exchange && dst !== null && dst.isDir && dst.lowers.length > 0;
    try {
      if (overMerged && !h.isEmptyDir(to, n2, dst!)) fail(E.ENOTEMPTY);
      h.copy.copyUp(srcNode, true);
      h.copy.ensureUpperDir(to);
      if (exchange) {
        h.copy.copyUp(dstNode!, true);
        h.copy.ensureUpperDir(from);
      }
      const samedir = from === to;
      this.markMoved(srcNode, src, to, samedir);
      if (exchange) this.markMoved(dstNode!, dst!, from, samedir);
      if (!samedir) {
        this.markImpure(srcNode, to);
        if (exchange) this.markImpure(dstNode!, from);
      }
      if (exchange) {
        // By name: a hard-linked node's primary name may be another of its names.
        native.renameat2(h.upperPath(from) + '/' + n1, h.upperPath(to) + '/' + n2, native.RENAME_EXCHANGE);
        this.renameNode(srcNode, from, n1, to, n2);
        this.renameNode(dstNode!, to, n2, from, n1);
      } else {
        this.move(from, n1, srcNode, to, n2, dst);
      }
    } finally {
      h.dropIfUnused(srcNode);
      if (dstNode !== undefined) h.dropIfUnused(dstNode);
    }
    from.dirCache = null;
    to.dirCache = null;
    if (src.isDir) h.layers.forgetDeepPaths();
  }

  /**
   * A directory with lower parts gets a redirect to them (relative when it stays
   * in its directory, absolute otherwise); an upper-only directory moving into a
   * merged directory becomes opaque, so no same-named lower directory shows through.
   */
  private markMoved(node: Node, r: Resolved, newParent: Node, samedir: boolean): void {
    if (!node.isDir) return;
    const path = this.h.upperPath(node);
    if (r.lowers.length > 0) {
      const existing = overlayXattr(path, 'redirect')?.toString('utf8');
      if (existing !== undefined && (samedir || existing.startsWith('/'))) return;
      const value = samedir ? node.name : this.absoluteRedirect(node);
      native.lsetxattr(path, this.h.markers.redirect, Buffer.from(value), 0);
    } else if (newParent.lowers.length > 0 && !isOpaqueDir(path)) {
      native.lsetxattr(path, this.h.markers.opaque, Buffer.from('y'), 0);
    }
  }

  /** A copy keeping its origin's st_ino moves into `dir`: its listings must say so too (origin.ts). */
  private markImpure(node: Node, dir: Node): void {
    if (!node.isDir && this.h.layers.hasOrigin(node.realKey)) this.h.origins?.markImpure(this.h.upperPath(dir));
  }

  /**
   * The absolute redirect overlayfs writes (ovl_get_redirect): the directory's path in the union,
   * each ancestor named by its own redirect where it has one, up to the first absolute one. It
   * names the union's path, not a layer's, so lower layers' own redirects still apply when it is
   * followed, and whiteouts in layers above the origin do not hide it.
   */
  private absoluteRedirect(node: Node): string {
    const parts: string[] = [];
    for (let d: Node | null = node; d !== null && d.parent !== null; d = d.parent) {
      const own = d.upper ? overlayXattr(this.h.upperPath(d), 'redirect')?.toString('utf8') : undefined;
      parts.unshift(own ?? d.name);
      if (own?.startsWith('/')) return parts.join('/');
    }
    return '/' + parts.join('/');
  }

  private move(from: Node, n1: string, node: Node, to: Node, n2: string, dst: Resolved | null): void {
    const h = this.h;
    // By name: a hard-linked node's primary name may be another of its names.
    const srcPath = h.upperPath(from) + '/' + n1;
    const dstPath = h.upperPath(to) + '/' + n2;
    const st = native.newStatArray();
    const dstIsWhiteout = native.lstatInto(dstPath, st) === 0 && isWhiteout(dstPath, st);
    if (node.isDir && dst !== null && dst.upper && dst.lowers.length > 0) {
      // The merged target is empty in the union but its upper dir may hold whiteouts.
      const tmp = h.copy.tmpName();
      native.renameat2(dstPath, tmp, 0);
      h.trash.add(tmp);
    }
    const needWhiteout = h.resolver.lowerPositive(from, n1);
    const replaced = dst !== null && !dst.isDir ? h.liveChild(to, n2, dst) : undefined;
    if (replaced !== node) h.holdIfOpen(replaced);
    if (dstIsWhiteout) {
      // Swap with the whiteout: it lands on the old name, which may need one.
      native.renameat2(srcPath, dstPath, native.RENAME_EXCHANGE);
      if (!needWhiteout) fs.unlinkSync(srcPath);
      else if (native.lstatInto(srcPath, st) === 0 && !isCharWhiteout(st)) h.whiteouts.markParent(srcPath);
    } else if (needWhiteout) {
      this.renameLeavingWhiteout(srcPath, dstPath);
    } else {
      native.renameat2(srcPath, dstPath, 0);
    }
    if (dst !== null) {
      const over = h.liveChild(to, n2, dst);
      if (over !== undefined && over !== node) h.removeName(over, to, n2);
      if (dst.upper && (dst.isDir || dst.st[ST.NLINK] <= 1)) h.layers.forgetOrigin(h.layers.realKey(dst.st));
    }
    this.renameNode(node, from, n1, to, n2);
  }

  /** rename(2) that leaves a whiteout behind: RENAME_WHITEOUT, or, where that needs a CAP_MKNOD we lack, a whiteout made in the work dir and moved in. */
  private renameLeavingWhiteout(srcPath: string, dstPath: string): void {
    try {
      return native.renameat2(srcPath, dstPath, native.RENAME_WHITEOUT);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
    }
    const tmp = this.h.copy.tmpName();
    const xattrWhiteout = this.h.whiteouts.make(tmp);
    try {
      native.renameat2(srcPath, dstPath, 0);
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      throw err;
    }
    native.renameat2(tmp, srcPath, 0);
    if (xattrWhiteout) this.h.whiteouts.markParent(srcPath);
  }

  private renameNode(node: Node, from: Node, n1: string, to: Node, n2: string): void {
    if (node.parent === from && node.name === n1) {
      this.h.nodes.move(node, to, n2);
      return;
    }
    const list = this.h.aliases.get(node);
    const a = list?.find((x) => x.parent === from && x.name === n1);
    if (a !== undefined) {
      this.h.nodes.journal?.unalias(node.id, from.id, n1);
      a.parent = to;
      a.name = n2;
      this.h.nodes.journal?.alias(node.id, to.id, n2);
    }
  }
}
