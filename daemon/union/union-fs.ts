// The union filesystem: FUSE operations with kernel overlayfs semantics over a
// LayerStack. Lookups go through Resolver, listings through mergedListing,
// changes to lower entries through CopyUp; whiteouts and opaque directories are
// written in the kernel's on-disk format. Open files and their data live in
// data-path.ts, rename in rename.ts; this class routes the FUSE operations to them.
// Why it is still ~800 lines: it is the one place where every FUSE operation meets the node
// table, and each method is a few lines of routing over shared helpers (node bookkeeping,
// creation, xattr naming); what has a concern of its own (lookup rules, listings, copy-up,
// whiteouts, data path, rename, journal replay, layer views) lives in its own module.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as native from '../../native-shims';
import {
  FuseError,
  type AttrOut,
  type DirEntry,
  type EntryOut,
  type FuseChannel,
  type FuseFilesystem,
  type OpenOut,
  type RequestContext,
  type SetAttrIn,
  type StatfsOut,
} from '../fuse/filesystem';
import { Fattr } from '../fuse/protocol';
import type { JournalSnapshot, JournalState } from '../fuse/journal';
import type { Logger } from '../log';
import { S_IFMT, S_IFREG, S_IFLNK, S_ISGID } from '../util/file-mode';
import type { UnionConfig } from './config';
import { CopyUp } from './copyup';
import { DataPath, type Handle } from './data-path';
import { IdMap, overflowIds } from './idmap';
import { applyOverride, formatOverride, overridable } from './override-stat';
import { LayerXattrs, initUpperOverride } from './layer-xattrs';
import { LayerStack, UPPER } from './layers';
import type { LayerView } from './layer-view';
import { Node, NodeTable, type LowerRef } from './nodes';
import { mergedListing } from './readdir';
import { Renamer, type Alias } from './rename';
import { Resolver, type Resolved } from './resolve';
import { TRUSTED_MARKERS, USER_MARKERS, WH_PREFIX, WhiteoutMaker, isOpaqueDir, isWhiteout, type MarkerXattrs } from './whiteouts';

const E = os.constants.errno;
const { ST } = native;
const { O_RDONLY, O_RDWR, O_TRUNC, O_CREAT, O_EXCL, O_WRONLY } = fs.constants;
const NAME_MAX = 255;
const ACL_DEFAULT = 'system.posix_acl_default';
const SELINUX_LABEL = 'security.selinux';
/**
 * Without SELinux the kernel never answers security.selinux itself, so `ls -l`
 * and friends ask the filesystem for it on every file. An unset label is then
 * reported as unsupported (as a filesystem without labels does): tools stop
 * asking for the rest of the mount. A label that is set is still returned.
 */
const HOST_HAS_SELINUX = fs.existsSync('/sys/fs/selinux/enforce');

function fail(errno: number, msg?: string): never {
  throw new FuseError(errno, msg);
}

export class UnionFs implements FuseFilesystem {
  readonly layers: LayerStack;
  readonly nodes: NodeTable;
  private readonly resolver: Resolver;
  private readonly copy: CopyUp;
  private readonly handles = new Map<number, Handle>();
  /** Open files and their data (data-path.ts). */
  private readonly data: DataPath;
  /** rename(2) (rename.ts). */
  private readonly renames: Renamer;
  /** Extra names of hard-linked nodes, so one name's removal leaves the others usable. */
  private readonly aliases = new Map<Node, Alias[]>();
  private posixAcl = false;
  private readonly st = native.newStatArray();
  private readonly whiteouts: WhiteoutMaker;
  /** The overlay xattrs this union writes: trusted.overlay.*, or user.overlay.* without the privilege (userxattr). */
  private readonly markers: MarkerXattrs;

  private readonly opaqueNewDirs: boolean;
  /** uidmapping= / gidmapping=: stored ids <-> shown ids. */
  private readonly uids: IdMap;
  private readonly gids: IdMap;
  /** Per layer, the xattr holding owner and mode overrides, and the names xattrs are stored under (layer-xattrs.ts). */
  private readonly xattrs: LayerXattrs;

  constructor(
    private readonly cfg: UnionConfig,
    private readonly log?: Logger,
  ) {
    this.layers = new LayerStack(cfg);
    const overflow = overflowIds();
    this.uids = new IdMap(cfg.uidMapping ?? [], cfg.overflowUid ?? overflow.uid);
    this.gids = new IdMap(cfg.gidMapping ?? [], cfg.overflowGid ?? overflow.gid);
    this.xattrs = new LayerXattrs(this.layers.roots, cfg.xattrPermissions);
    this.resolver = new Resolver(this.layers, cfg.followRedirects !== false);
    this.opaqueNewDirs = cfg.redirectDir === true || cfg.xino === true;
    const rootInfo = this.rootInfo();
    this.nodes = new NodeTable(this.layers, rootInfo);
    this.copy = new CopyUp(this.layers, this.nodes, this.log, cfg.userxattr === true, this.xattrs);
    this.markers = cfg.userxattr ? USER_MARKERS : TRUSTED_MARKERS;
    this.whiteouts = new WhiteoutMaker(this.layers.workTmp, this.markers);
    if (this.layers.writable) {
      this.prepareWorkdir();
      initUpperOverride(this.layers.roots, this.xattrs);
    }
    this.data = new DataPath(
      {
        nodes: this.nodes,
        copy: this.copy,
        gids: this.gids,
        log: this.log,
        noFsync: cfg.noFsync === true,
        writable: () => this.writable(),
        realPath: (n) => this.realPath(n),
        upperPath: (n) => this.upperPath(n),
        stat: (n, fh) => this.stat(n, fh),
        dropIfUnused: (n) => this.dropIfUnused(n),
      },
      this.handles,
    );
    this.renames = new Renamer({
      layers: this.layers,
      nodes: this.nodes,
      resolver: this.resolver,
      copy: this.copy,
      whiteouts: this.whiteouts,
      markers: this.markers,
      aliases: this.aliases,
      redirectDir: cfg.redirectDir === true,
      dirNode: (id) => this.dirNode(id),
      checkName: (name) => this.checkName(name),
      writable: () => this.writable(),
      upperPath: (n) => this.upperPath(n),
      resolveOrFail: (parent, name) => this.resolveOrFail(parent, name),
      nodeFor: (parent, name, r) => this.nodeFor(parent, name, r),
      isEmptyDir: (parent, name, r) => this.isEmptyDir(parent, name, r),
      liveChild: (parent, name, r) => this.liveChild(parent, name, r),
      removeName: (node, parent, name) => this.removeName(node, parent, name),
      dropIfUnused: (n) => this.dropIfUnused(n),
    });
  }

  private rootInfo(): { upper: boolean; lowers: LowerRef[]; realKey: number } {
    const st = native.newStatArray();
    const lowers: LowerRef[] = [];
    let upperOpaque = false;
    if (this.layers.writable) upperOpaque = isOpaqueDir(this.layers.roots[UPPER]);
    if (!upperOpaque) {
      for (let l = 1; l <= this.layers.lowerCount; l++) {
        lowers.push({ layer: l, rel: '' });
        if (isOpaqueDir(this.layers.roots[l])) break;
      }
    }
    native.lstatInto(this.layers.roots[this.layers.writable ? UPPER : 1], st);
    return { upper: this.layers.writable, lowers, realKey: this.layers.realKey(st) };
  }

  /** The work dir holds our temporaries (`work/work`, as overlayfs names it); leftovers of a crash go. */
  private prepareWorkdir(): void {
    const tmp = this.layers.workTmp;
    // Mode 0 as overlayfs makes it; a caller without CAP_DAC_OVERRIDE keeps access for itself.
    const privileged = process.geteuid?.() === 0;
    fs.mkdirSync(tmp, { recursive: true, mode: privileged ? 0 : 0o700 });
    if (!privileged) fs.chmodSync(tmp, 0o700);
    for (const name of fs.readdirSync(tmp)) fs.rmSync(`${tmp}/${name}`, { recursive: true, force: true });
  }

  init(channel: FuseChannel): void {
    this.data.init(channel);
    this.posixAcl = channel.posixAcl;
    this.nodes.journal = channel.journal;
    channel.journal?.setSnapshotSource({ write: (s) => this.snapshot(s), live: () => this.nodes.size + this.handles.size });
    // Modes arrive already masked by the request's umask, so creation runs with umask 0: in a
    // filesystem context of this thread's own, so that the process (the daemon's API, its
    // other mounts) keeps its umask.
    native.unshare(native.CLONE_FS);
    native.umask(0);
    this.log?.info({ passthrough: this.data.passthrough, markers: this.markers.prefix, layers: this.layers.roots, indexedLowers: this.layers.indexedLowers }, 'union mounted');
  }

  destroy(): void {
    this.data.closeAll();
  }

  // --- helpers ----------------------------------------------------------------

  private dirNode(id: number): Node {
    const n = this.nodes.get(id);
    if (!n.isDir) fail(E.ENOTDIR);
    return n;
  }

  private checkName(name: string): void {
    if (Buffer.byteLength(name) > NAME_MAX) fail(E.ENAMETOOLONG);
    if (name.startsWith(WH_PREFIX)) fail(E.EINVAL, 'names starting with .wh. are reserved for whiteouts');
  }

  private writable(): void {
    if (!this.layers.writable) fail(E.EROFS);
  }

  private upperPath(node: Node): string {
    return this.layers.realPath(UPPER, node.path);
  }

  /** The real path that currently holds `node`'s content and metadata. */
  private realPath(node: Node): string {
    if (node.unlinked) fail(E.ENOENT);
    if (node.upper) return this.upperPath(node);
    const ref = node.lowers[0];
    if (ref === undefined) fail(E.ESTALE);
    return this.layers.realPath(ref.layer, ref.rel);
  }

  /** Where `node`'s metadata lives now, and that layer's view of it (an index for an indexed lower, unless opened). */
  private metaOf(node: Node): { view: LayerView; rel: string } {
    if (node.unlinked) fail(E.ENOENT);
    if (node.upper) return { view: this.layers.view(UPPER), rel: node.path };
    const ref = node.lowers[0];
    if (ref === undefined) fail(E.ESTALE);
    return { view: node.opened ? this.layers.liveView(ref.layer) : this.layers.view(ref.layer), rel: ref.rel };
  }

  private stat(node: Node, fh?: number): Float64Array {
    const st = this.st;
    let h = fh !== undefined ? this.handles.get(fh) : undefined;
    if (h === undefined && node.unlinked) {
      for (const id of node.handles) {
        h = this.handles.get(id);
        break;
      }
    }
    let err: number;
    if (h !== undefined) err = native.fstatInto(h.fd, st);
    else {
      const m = this.metaOf(node);
      err = m.view.lstat(m.rel, st);
    }
    if (err !== 0) fail(err === E.ENOENT ? E.ESTALE : err);
    return st;
  }

  /** Adjusts real attributes to what the union reports. */
  private present(node: Node, st: Float64Array): Float64Array {
    if (node.isMergedDir) st[ST.NLINK] = 1;
    if (this.xattrs.overrides !== null && !node.unlinked) {
      const layer = node.upper ? UPPER : node.lowers[0]?.layer;
      const name = layer === undefined ? null : this.xattrs.override(layer);
      if (name) applyOverride(this.realPath(node), name, st);
    }
    // As fuse-overlayfs: squash_to_* wins over the mappings.
    st[ST.UID] = this.cfg.squashUid ?? this.uids.toShown(st[ST.UID]);
    st[ST.GID] = this.cfg.squashGid ?? this.gids.toShown(st[ST.GID]);
    return st;
  }

  private entry(node: Node, st: Float64Array): EntryOut {
    node.nlookup++;
    return { nodeid: node.id, ino: node.ino, st: this.present(node, st) };
  }

  /** The node for a resolved child, without taking a lookup reference. */
  private nodeFor(parent: Node, name: string, r: Resolved): Node {
    const key = this.layers.realKey(r.st);
    if (!r.isDir && !r.upper && r.st[ST.NLINK] > 1) return this.nodes.internUnshared(parent, name, r.lowers, key);
    const known = this.nodes.byRealKey(key);
    if (known !== undefined && (known.parent !== parent || known.name !== name) && !this.holds(known, key)) {
      // The node's own path no longer holds this inode: the number was reused.
      this.nodes.evict(known);
    }
    const node = this.nodes.intern(parent, name, r.isDir, r.upper, r.lowers, key);
    if (!r.isDir && (node.parent !== parent || node.name !== name)) this.addAlias(node, parent, name);
    return node;
  }

  /** True when `node`'s path still leads to the real inode `key` (a hard link, a moved dir). */
  private holds(node: Node, key: number): boolean {
    if (node.unlinked || node.parent === null) return node.parent === null;
    const st = native.newStatArray();
    try {
      return native.lstatInto(this.realPath(node), st) === 0 && this.layers.realKey(st) === key;
    } catch {
      return false;
    }
  }

  /** Drops a node that an operation created but the kernel never learnt of. */
  private dropIfUnused(node: Node): void {
    if (node.nlookup <= 0 && node.handles.size === 0 && node !== this.nodes.root) {
      this.nodes.drop(node);
      this.aliases.delete(node);
    }
  }

  private addAlias(node: Node, parent: Node, name: string): void {
    const list = this.aliases.get(node) ?? [];
    if (!list.some((a) => a.parent === parent && a.name === name)) list.push({ parent, name });
    this.aliases.set(node, list);
  }

  /** One name of `node` went away: fall back to another known name, or detach it. */
  private removeName(node: Node, parent: Node, name: string): void {
    const list = this.aliases.get(node);
    if (list !== undefined) {
      const i = list.findIndex((a) => a.parent === parent && a.name === name);
      if (i >= 0) list.splice(i, 1);
    }
    if (node.parent === parent && node.name === name) {
      const next = list?.shift();
      if (next !== undefined) {
        node.parent = next.parent;
        node.name = next.name;
        this.nodes.record(node);
      } else {
        this.nodes.detach(node);
      }
    }
    if (list !== undefined && list.length === 0) this.aliases.delete(node);
  }

  /** The live node named parent/name, if the kernel holds one. */
  private liveChild(parent: Node, name: string, r: Resolved): Node | undefined {
    return this.nodes.findChild(parent, name, this.layers.realKey(r.st)) ?? this.findAliased(parent, name);
  }

  private findAliased(parent: Node, name: string): Node | undefined {
    for (const [node, list] of this.aliases) {
      if (list.some((a) => a.parent === parent && a.name === name)) return node;
    }
    return undefined;
  }

  private resolveOrFail(parent: Node, name: string): Resolved {
    const r = this.resolver.child(parent, name);
    if (r === null) fail(E.ENOENT);
    return r;
  }

  private listing(dir: Node): DirEntry[] {
    return mergedListing(this.layers, dir);
  }

  private isEmptyDir(parent: Node, name: string, r: Resolved): boolean {
    const probe = new Node(0, 0, parent, name, true, r.upper, r.lowers, 0);
    // As overlayfs' emptiness check, xattr whiteouts in lower layers count as entries.
    return mergedListing(this.layers, probe, { xattrWhiteouts: false }).length <= 2;
  }

  // --- creation -------------------------------------------------------------------

  /**
   * Creates a new upper entry parent/name with `make`, owned by the caller.
   * Over a whiteout the entry is built in the work dir and swapped in atomically
   * (a directory there becomes opaque, hiding what the whiteout hid).
   */
  private createEntry(
    ctx: RequestContext,
    parent: Node,
    name: string,
    isDir: boolean,
    mode: number,
    make: (path: string) => void,
  ): Node {
    this.checkName(name);
    this.writable();
    this.copy.ensureUpperDir(parent);
    const dirPath = this.upperPath(parent);
    const target = dirPath + '/' + name;
    const st = native.newStatArray();
    const err = native.lstatInto(target, st);
    let overWhiteout = false;
    if (err === 0) {
      if (!isWhiteout(target, st)) fail(E.EEXIST);
      overWhiteout = true;
    } else if (err !== E.ENOENT) {
      fail(err);
    }
    native.lstatInto(dirPath, st);
    const setgidDir = (st[ST.MODE] & S_ISGID) !== 0;
    // The caller's ids as stored (fuse-overlayfs stores an unmapped caller as the overflow id).
    const uid = this.uids.toDisk(ctx.uid) ?? this.uids.overflow;
    const gid = setgidDir ? st[ST.GID] : (this.gids.toDisk(ctx.gid) ?? this.gids.overflow);
    if (!overWhiteout) {
      make(target);
      this.setOwner(target, st, uid, gid, mode);
      // As overlayfs when offline changes to the lowers are not allowed (redirect_dir=on or
      // xino=on): a new directory in a merged one is opaque, so its lookups skip the lowers.
      if (isDir && parent.lowers.length > 0 && this.opaqueNewDirs) native.lsetxattr(target, this.markers.opaque, Buffer.from('y'), 0);
    } else {
      const tmp = this.copy.tmpName();
      make(tmp);
      if (isDir && setgidDir) fs.chmodSync(tmp, (mode & 0o7777) | S_ISGID);
      this.setOwner(tmp, st, uid, gid, mode);
      if (isDir) {
        native.lsetxattr(tmp, this.markers.opaque, Buffer.from('y'), 0);
        native.renameat2(tmp, target, native.RENAME_EXCHANGE);
        fs.rmSync(tmp, { force: true });
      } else {
        native.renameat2(tmp, target, 0);
      }
    }
    // st is the new entry's stat from setOwner: chown, chmod and the rename into place keep its inode.
    parent.dirCache = null;
    return this.nodes.intern(parent, name, isDir, true, [], this.layers.realKey(st));
  }

  /**
   * Gives a new entry the caller's ownership; chown clears set-id bits, so restore them.
   * Leaves the entry's stat (taken before the change; dev and inode stay) in st.
   */
  private setOwner(path: string, st: Float64Array, uid: number, gid: number, mode: number): void {
    native.lstatInto(path, st);
    const override = this.xattrs.override(UPPER);
    if (override !== null && overridable(st)) {
      // As fuse-overlayfs with xattr_permissions: owner and mode live in the xattr; the real mode
      // keeps the owner (this process) able to use the entry.
      native.lsetxattr(path, override, Buffer.from(formatOverride({ uid, gid, mode: mode & 0o7777 })), 0);
      fs.chmodSync(path, (st[ST.MODE] & 0o7777) | 0o755);
      return;
    }
    if (st[ST.UID] === uid && st[ST.GID] === gid) return;
    try {
      fs.lchownSync(path, uid, gid);
    } catch (err) {
      // Unprivileged (a plain user, or an id our user namespace lacks): the entry stays ours, as with fuse-overlayfs.
      if (!this.cfg.userxattr || !['EPERM', 'EINVAL'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
      return;
    }
    const type = st[ST.MODE] & S_IFMT;
    if (type !== S_IFLNK && mode & 0o6000) fs.chmodSync(path, st[ST.MODE] & 0o7777);
  }

  /** The caller's umask applies unless the directory has a default ACL (which then rules). */
  private effectiveMode(parent: Node, mode: number, umask: number): number {
    if (this.posixAcl && parent.upper && native.lgetxattr(this.upperPath(parent), ACL_DEFAULT) !== null) return mode;
    return mode & ~umask;
  }

  // --- FUSE operations ----------------------------------------------------------

  lookup(_ctx: RequestContext, parentId: number, name: string): EntryOut {
    const parent = this.dirNode(parentId);
    if (Buffer.byteLength(name) > NAME_MAX) fail(E.ENAMETOOLONG);
    const r = this.resolver.child(parent, name);
    if (r === null) return { nodeid: 0, ino: 0, st: this.st };
    const node = this.nodeFor(parent, name, r);
    return this.entry(node, r.st);
  }

  forget(nodeid: number, nlookup: number): void {
    const n = this.nodes.forget(nodeid, nlookup);
    if (n !== undefined) this.aliases.delete(n);
  }

  getattr(_ctx: RequestContext, nodeid: number, fh: number | undefined): AttrOut {
    const node = this.nodes.get(nodeid);
    return { ino: node.ino, st: this.present(node, this.stat(node, fh)) };
  }

  setattr(ctx: RequestContext, nodeid: number, a: SetAttrIn): AttrOut {
    const node = this.nodes.get(nodeid);
    this.writable();
    const h = a.valid & Fattr.FH ? this.handles.get(a.fh) : undefined;
    if (!node.upper) this.copy.copyUp(node, !(a.valid & Fattr.SIZE && a.size === 0));
    const path = node.unlinked ? undefined : this.upperPath(node);
    const cur = this.stat(node, h ? a.fh : undefined);
    const isLink = (cur[ST.MODE] & S_IFMT) === S_IFLNK;
    const [curUid, curGid] = [cur[ST.UID], cur[ST.GID]];
    const override = this.xattrs.override(UPPER);
    if (override !== null && a.valid & (Fattr.MODE | Fattr.UID | Fattr.GID) && path !== undefined && overridable(cur)) {
      // Owner and mode go to the override xattr, as fuse-overlayfs does where it cannot set them.
      const type = applyOverride(path, override, cur)?.type;
      native.lsetxattr(path, override, Buffer.from(formatOverride({
        uid: a.valid & Fattr.UID ? (this.uids.toDisk(a.uid) ?? fail(E.EINVAL)) : cur[ST.UID],
        gid: a.valid & Fattr.GID ? (this.gids.toDisk(a.gid) ?? fail(E.EINVAL)) : cur[ST.GID],
        mode: a.valid & Fattr.MODE ? a.mode & 0o7777 : cur[ST.MODE] & 0o7777,
        type,
      })), 0);
      a = { ...a, valid: a.valid & ~(Fattr.MODE | Fattr.UID | Fattr.GID) };
    }
    if (a.valid & Fattr.MODE && !isLink) {
      if (h) fs.fchmodSync(h.fd, a.mode & 0o7777);
      else fs.chmodSync(path!, a.mode & 0o7777);
    }
    if (a.valid & (Fattr.UID | Fattr.GID)) {
      // Shown ids to stored ones; one outside the mapping is refused as the kernel refuses an unmapped id.
      const uid = a.valid & Fattr.UID ? (this.uids.toDisk(a.uid) ?? fail(E.EINVAL)) : curUid;
      const gid = a.valid & Fattr.GID ? (this.gids.toDisk(a.gid) ?? fail(E.EINVAL)) : curGid;
      if (h) fs.fchownSync(h.fd, uid, gid);
      else fs.lchownSync(path!, uid, gid);
    }
    if (a.valid & Fattr.SIZE) {
      if (node.isDir) fail(E.EISDIR);
      if (h) fs.ftruncateSync(h.fd, a.size);
      else fs.truncateSync(path!, a.size);
    }
    if (a.valid & (Fattr.ATIME | Fattr.MTIME)) {
      const at = a.valid & Fattr.ATIME_NOW ? [0, native.UTIME_NOW] : a.valid & Fattr.ATIME ? [a.atime, a.atimensec] : [0, native.UTIME_OMIT];
      const mt = a.valid & Fattr.MTIME_NOW ? [0, native.UTIME_NOW] : a.valid & Fattr.MTIME ? [a.mtime, a.mtimensec] : [0, native.UTIME_OMIT];
      if (h) native.futimens(h.fd, at[0], at[1], mt[0], mt[1]);
      else native.utimensat(path!, at[0], at[1], mt[0], mt[1], native.AT_SYMLINK_NOFOLLOW);
    }
    // Truncate by a caller without CAP_FSETID (HANDLE_KILLPRIV_V2); for chown the
    // real filesystem has already cleared the bits.
    if (a.valid & Fattr.KILL_SUIDGID && a.valid & Fattr.SIZE) this.data.dropSetIds(ctx, node, h ? a.fh : undefined);
    return { ino: node.ino, st: this.present(node, this.stat(node, h ? a.fh : undefined)) };
  }

  readlink(_ctx: RequestContext, nodeid: number): Buffer {
    const m = this.metaOf(this.nodes.get(nodeid));
    return m.view.readlink(m.rel);
  }

  symlink(ctx: RequestContext, parentId: number, name: string, target: string): EntryOut {
    const parent = this.dirNode(parentId);
    const node = this.createEntry(ctx, parent, name, false, 0o777, (p) => fs.symlinkSync(target, p));
    return this.entry(node, this.stat(node));
  }

  mknod(ctx: RequestContext, parentId: number, name: string, mode: number, rdev: number, umask: number): EntryOut {
    const parent = this.dirNode(parentId);
    const perm = this.effectiveMode(parent, mode & 0o7777, umask);
    const major = (rdev & 0xfff00) >>> 8;
    const minor = (rdev & 0xff) | ((rdev >>> 12) & 0xfff00);
    const node = this.createEntry(ctx, parent, name, false, perm, (p) => native.mknod(p, (mode & S_IFMT) | perm, major, minor));
    return this.entry(node, this.stat(node));
  }

  mkdir(ctx: RequestContext, parentId: number, name: string, mode: number, umask: number): EntryOut {
    const parent = this.dirNode(parentId);
    const perm = this.effectiveMode(parent, mode & 0o7777, umask);
    const node = this.createEntry(ctx, parent, name, true, perm, (p) => {
      fs.mkdirSync(p, perm);
      if (perm & 0o7000) fs.chmodSync(p, perm | (fs.lstatSync(p).mode & S_ISGID));
    });
    return this.entry(node, this.stat(node));
  }

  // CREATE makes a new file (it has no set-id bits to clear), so its kill flag is moot.
  create(ctx: RequestContext, parentId: number, name: string, mode: number, flags: number, umask: number, _killSuidGid: boolean): [EntryOut, OpenOut] {
    const parent = this.dirNode(parentId);
    const perm = this.effectiveMode(parent, mode & 0o7777, umask);
    const node = this.createEntry(ctx, parent, name, false, perm, (p) => fs.closeSync(fs.openSync(p, O_CREAT | O_EXCL | O_WRONLY, perm)));
    const open = this.data.openNode(ctx, node, flags & ~O_TRUNC, false);
    return [this.entry(node, this.stat(node)), open];
  }

  tmpfile(ctx: RequestContext, parentId: number, mode: number, _flags: number, umask: number): [EntryOut, OpenOut] {
    const parent = this.dirNode(parentId);
    this.writable();
    this.copy.ensureUpperDir(parent);
    const perm = this.effectiveMode(parent, mode & 0o7777, umask);
    const fd = fs.openSync(this.upperPath(parent), native.O_TMPFILE | O_RDWR, perm);
    const st = native.newStatArray();
    native.fstatInto(fd, st);
    const uid = this.uids.toDisk(ctx.uid) ?? this.uids.overflow;
    const gid = this.gids.toDisk(ctx.gid) ?? this.gids.overflow;
    if (st[ST.UID] !== uid || (st[ST.GID] !== gid && !(st[ST.MODE] & S_ISGID))) {
      try {
        fs.fchownSync(fd, uid, gid);
      } catch (err) {
        if (!this.cfg.userxattr || !['EPERM', 'EINVAL'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
      }
    }
    const node = this.nodes.intern(parent, '', false, true, [], this.layers.realKey(st));
    node.unlinked = true;
    this.nodes.journal?.detach(node.id);
    const fh = this.data.addHandle(fd, node, true);
    const open = this.data.recordOpen(fh, this.data.withBacking(node, fh, fd, 0, 0, true));
    native.fstatInto(fd, st);
    return [this.entry(node, st), open];
  }

  unlink(_ctx: RequestContext, parentId: number, name: string): void {
    const parent = this.dirNode(parentId);
    this.writable();
    const r = this.resolveOrFail(parent, name);
    if (r.isDir) fail(E.EISDIR);
    const live = this.liveChild(parent, name, r);
    this.removeEntry(parent, name, r);
    if (live !== undefined) this.removeName(live, parent, name);
    if (r.upper && r.st[ST.NLINK] <= 1) this.layers.forgetOrigin(this.layers.realKey(r.st));
  }

  rmdir(_ctx: RequestContext, parentId: number, name: string): void {
    const parent = this.dirNode(parentId);
    this.writable();
    const r = this.resolveOrFail(parent, name);
    if (!r.isDir) fail(E.ENOTDIR);
    if (!this.isEmptyDir(parent, name, r)) fail(E.ENOTEMPTY);
    const live = this.liveChild(parent, name, r);
    this.removeEntry(parent, name, r);
    if (live !== undefined) this.nodes.detach(live);
    if (r.upper) this.layers.forgetOrigin(this.layers.realKey(r.st));
    this.layers.forgetDeepPaths();
  }

  /** Removes parent/name from the union: a whiteout where a lower entry would show through. */
  private removeEntry(parent: Node, name: string, r: Resolved): void {
    const needWhiteout = !r.upper || this.resolver.lowerPositive(parent, name);
    this.copy.ensureUpperDir(parent);
    const target = this.upperPath(parent) + '/' + name;
    if (r.upper) {
      const tmp = this.copy.tmpName();
      if (needWhiteout) {
        const xattrWhiteout = this.whiteouts.make(tmp);
        // Swap the whiteout in, so the name never shows what lies below.
        native.renameat2(tmp, target, r.isDir ? native.RENAME_EXCHANGE : 0);
        if (xattrWhiteout) this.whiteouts.markParent(target);
        if (r.isDir) fs.rmSync(tmp, { recursive: true, force: true });
      } else if (r.isDir) {
        // The upper dir may still hold whiteouts: move it out, then clear it.
        native.renameat2(target, tmp, 0);
        fs.rmSync(tmp, { recursive: true, force: true });
      } else {
        fs.unlinkSync(target);
      }
    } else {
      this.whiteouts.make(target);
    }
    parent.dirCache = null;
  }

  rename(_ctx: RequestContext, p1: number, n1: string, p2: number, n2: string, flags: number): void {
    this.renames.rename(p1, n1, p2, n2, flags);
  }

  link(ctx: RequestContext, nodeid: number, parentId: number, name: string): EntryOut {
    const node = this.nodes.get(nodeid);
    const parent = this.dirNode(parentId);
    if (node.isDir) fail(E.EPERM);
    this.writable();
    if (node.unlinked) {
      // An O_TMPFILE (or unlinked open) file gets its name through its handle;
      // interning the new name revives the node.
      const h = [...node.handles].map((id) => this.handles.get(id)).find((x) => x !== undefined);
      if (h === undefined) fail(E.ENOENT);
      this.createEntry(ctx, parent, name, false, 0, (p) => native.linkatEmptyPath(h.fd, p));
      return this.entry(node, this.stat(node));
    }
    this.copy.copyUp(node, true);
    const src = this.upperPath(node);
    // Interning the new name finds the same real inode, which is `node` itself.
    const made = this.createEntry(ctx, parent, name, false, 0, (p) => fs.linkSync(src, p));
    if (made !== node) this.dropIfUnused(made);
    this.addAlias(node, parent, name);
    return this.entry(node, this.stat(node));
  }

  // --- files ------------------------------------------------------------------------

  open(ctx: RequestContext, nodeid: number, flags: number, killSuidGid: boolean): OpenOut {
    return this.data.open(ctx, nodeid, flags, killSuidGid);
  }

  read(_ctx: RequestContext, _nodeid: number, fh: number, offset: number, size: number, out: Buffer, outOffset: number): number {
    return this.data.read(fh, offset, size, out, outOffset);
  }

  readSource(fh: number): number | undefined {
    return this.data.readSource(fh);
  }

  write(ctx: RequestContext, _nodeid: number, fh: number, offset: number, data: Buffer, writeFlags: number): number {
    return this.data.write(ctx, fh, offset, data, writeFlags);
  }

  release(_ctx: RequestContext, _nodeid: number, fh: number): void {
    this.data.release(fh);
  }

  fsync(_ctx: RequestContext, _nodeid: number, fh: number, datasync: boolean): void {
    this.data.fsync(fh, datasync);
  }

  fsyncdir(_ctx: RequestContext, nodeid: number): void {
    const node = this.nodes.get(nodeid);
    if (this.cfg.noFsync || !node.upper) return;
    const fd = fs.openSync(this.upperPath(node), O_RDONLY);
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  fallocate(ctx: RequestContext, _nodeid: number, fh: number, mode: number, offset: number, length: number): void {
    this.data.fallocate(ctx, fh, mode, offset, length);
  }

  lseek(_ctx: RequestContext, _nodeid: number, fh: number, offset: number, whence: number): number {
    return this.data.lseek(fh, offset, whence);
  }

  copyFileRange(ctx: RequestContext, _a: number, fhIn: number, offIn: number, _b: number, fhOut: number, offOut: number, len: number): number {
    return this.data.copyFileRange(ctx, fhIn, offIn, fhOut, offOut, len);
  }

  // --- directories --------------------------------------------------------------------

  readdir(_ctx: RequestContext, nodeid: number, offset: number): DirEntry[] {
    const dir = this.dirNode(nodeid);
    if (offset === 0 || dir.dirCache === null) dir.dirCache = this.listing(dir);
    const list = dir.dirCache;
    if (offset >= list.length) dir.dirCache = null; // read to its end: not kept for every directory ever listed
    return list;
  }

  statfs(): StatfsOut {
    const s = fs.statfsSync(this.layers.roots[this.layers.writable ? UPPER : 1]);
    return { blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, bsize: s.bsize, namelen: NAME_MAX, frsize: s.bsize };
  }

  access(): void {
    // default_permissions: the kernel has already checked the mode bits.
  }

  // --- xattrs -------------------------------------------------------------------------

  /** The layer a node's real path lies in. */
  private layerOf(node: Node): number {
    return node.upper ? UPPER : (node.lowers[0]?.layer ?? UPPER);
  }

  getxattr(_ctx: RequestContext, nodeid: number, name: string): Buffer | null {
    const node = this.nodes.get(nodeid);
    const stored = this.xattrs.stored(this.layerOf(node), name);
    if (stored === null) return null;
    const meta = this.metaOf(node);
    const value = meta.view.getxattr(meta.rel, stored);
    if (value === null && name === SELINUX_LABEL && !HOST_HAS_SELINUX) fail(E.EOPNOTSUPP);
    return value;
  }

  listxattr(_ctx: RequestContext, nodeid: number): string[] {
    const node = this.nodes.get(nodeid);
    const layer = this.layerOf(node);
    const meta = this.metaOf(node);
    const names: string[] = [];
    for (const stored of meta.view.listxattr(meta.rel)) {
      const name = this.xattrs.shown(layer, stored);
      if (name !== null) names.push(name);
    }
    return names;
  }

  setxattr(_ctx: RequestContext, nodeid: number, name: string, value: Buffer, flags: number): void {
    const stored = this.xattrs.stored(UPPER, name) ?? fail(E.EPERM);
    this.writable();
    const node = this.nodes.get(nodeid);
    this.copy.copyUp(node, true);
    native.lsetxattr(this.upperPath(node), stored, value, flags);
  }

  removexattr(_ctx: RequestContext, nodeid: number, name: string): void {
    const stored = this.xattrs.stored(UPPER, name) ?? fail(E.EPERM);
    this.writable();
    const node = this.nodes.get(nodeid);
    if (!node.upper) {
      const there = this.xattrs.stored(this.layerOf(node), name);
      if (there === null || native.lgetxattr(this.realPath(node), there) === null) fail(E.ENODATA);
    }
    this.copy.copyUp(node, true);
    native.lremovexattr(this.upperPath(node), stored);
  }

  // --- takeover (fuse/journal.ts) -------------------------------------------------------

  /** The live nodes and handles, for a compacted journal. */
  private snapshot(s: JournalSnapshot): void {
    for (const n of this.nodes.all()) {
      if (n !== this.nodes.root) s.node(n.id, n.parent?.id ?? 0, n.name, n.ino, n.unlinked);
    }
    for (const [fh, h] of this.handles) s.open(fh, h.node.id, h.write, h.backing ? h.node.backingId : 0);
  }

  /**
   * Rebuilds, after a takeover, the nodes and handles the kernel holds: each node found again
   * by its name under its parent, each handle's backing file opened again. A node whose name is
   * gone stays known (as unlinked) so the kernel's use of it fails cleanly; so does a handle of
   * one (its passthrough data path, in the kernel, goes on working).
   */
  restore(state: JournalState): void {
    const made = new Map<number, Node>([[this.nodes.root.id, this.nodes.root]]);
    const build = (id: number, depth: number): Node | undefined => {
      const done = made.get(id);
      if (done !== undefined || depth > 4096) return done;
      const rec = state.nodes.get(id);
      if (rec === undefined) return undefined;
      const parent = build(rec.parent, depth + 1);
      let r: Resolved | null = null;
      try {
        if (parent !== undefined && parent.isDir && !parent.unlinked && !rec.detached) r = this.resolver.child(parent, rec.name);
      } catch {
        r = null;
      }
      let node: Node;
      if (r === null) {
        node = this.nodes.restore(id, parent ?? this.nodes.root, rec.name, false, false, [], 0, rec.ino, false);
      } else {
        const key = this.layers.realKey(r.st);
        const unshared = !r.isDir && !r.upper && r.st[ST.NLINK] > 1;
        if (!unshared && this.layers.unionIno(key) !== rec.ino) this.layers.rememberOrigin(key, rec.ino);
        node = this.nodes.restore(id, parent!, rec.name, r.isDir, r.upper, r.lowers, key, rec.ino, unshared);
      }
      made.set(id, node);
      return node;
    };
    for (const id of state.nodes.keys()) build(id, 0);
    let lost = 0;
    for (const [fh, h] of state.handles) {
      const node = made.get(h.nodeid);
      let fd = -1;
      try {
        if (node !== undefined) fd = fs.openSync(this.realPath(node), h.write ? fs.constants.O_RDWR : fs.constants.O_RDONLY);
      } catch {
        fd = -1;
      }
      this.data.reserveFh(fh);
      if (node === undefined || fd < 0) lost++;
      else this.data.restoreHandle(fh, node, fd, h.write, h.backingId);
    }
    this.log?.info({ nodes: made.size, handles: this.handles.size, lost }, 'union taken over');
  }
}

