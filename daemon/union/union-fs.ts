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
  errnoOf,
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
import type { JournalSnapshot, JournalState, NodeState } from '../fuse/journal';
import type { Logger } from '../log';
import { S_IFMT, S_IFREG, S_IFLNK, S_ISGID } from '../util/file-mode';
import type { UnionConfig } from './config';
import { CopyUp } from './copyup';
import { Origins } from './origin';
import { DataPath, type Handle } from './data-path';
import { HELD_DIR, HeldFiles } from './held-files';
import { IdMap, overflowIds } from './idmap';
import { applyOverride, formatOverride, overridable } from './override-stat';
import { LayerXattrs, initUpperOverride } from './layer-xattrs';
import { LayerStack, UPPER } from './layers';
import type { LayerView } from './layer-view';
import { Node, NodeTable, type LowerRef } from './nodes';
import { mergedListing } from './readdir';
import { Renamer, type Alias } from './rename';
import { Resolver, type Resolved } from './resolve';
import { Trash } from './trash';
import { TRUSTED_MARKERS, USER_MARKERS, WH_PREFIX, WhiteoutMaker, XATTR_IMPURE, XATTR_ORIGIN, isOpaqueDir, isWhiteout, overlayXattr, type MarkerXattrs } from './whiteouts';

const E = os.constants.errno;
const { ST } = native;
const { O_RDONLY, O_RDWR, O_CREAT, O_EXCL } = fs.constants;
const O_ACCMODE = 3;
const NAME_MAX = 255;
/** Entries of removed directories unlinked after each reply: a few hundred microseconds at most. */
const TRASH_PER_REPLY = 32;
const ACL_DEFAULT = 'system.posix_acl_default';
const SELINUX_LABEL = 'security.selinux';
/**
 * Without SELinux the kernel never answers security.selinux itself, so `ls -l`
 * and friends ask the filesystem for it on every file. An unset label is then
 * reported as unsupported (as a filesystem without labels does): tools stop
 * asking for the rest of the mount. A label that is set is still returned.
 */
const HOST_HAS_SELINUX = fs.existsSync('/sys/fs/selinux/enforce');
/**
 * The lookup count of a node rebuilt from a journal of an earlier build, which did not record
 * lookups: the kernel's count is unknown, so such a node stays (a few bytes kept, never an ESTALE).
 */
const UNKNOWN_LOOKUPS = 2 ** 52;

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
  /** This process's ids: what the kernel gives the entries it makes (fsuid and fsgid follow them). */
  private readonly ownIds = { uid: process.geteuid?.() ?? 0, gid: process.getegid?.() ?? 0 };
  private readonly dirSt = native.newStatArray();
  /** Upper directories known to have no default ACL (hasDefaultAcl). */
  private readonly noDefaultAcl = new WeakSet<Node>();
  private readonly st = native.newStatArray();
  private readonly whiteouts: WhiteoutMaker;
  /** Removed directories moved into the work dir, emptied after replies (trash.ts). */
  private readonly trash = new Trash();
  /** The overlay xattrs this union writes: trusted.overlay.*, or user.overlay.* without the privilege (userxattr). */
  private readonly markers: MarkerXattrs;

  private readonly opaqueNewDirs: boolean;
  /** uidmapping= / gidmapping=: stored ids <-> shown ids. */
  private readonly uids: IdMap;
  private readonly gids: IdMap;
  /** Per layer, the xattr holding owner and mode overrides, and the names xattrs are stored under (layer-xattrs.ts). */
  private readonly xattrs: LayerXattrs;
  /** Copy-up origins (origin.ts): st_ino kept across remounts. */
  private readonly origins: Origins | undefined;

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
    // Origins are the kernel's trusted.overlay.* kind: an unprivileged union could not decode them.
    this.origins = cfg.userxattr || !this.layers.writable ? undefined : new Origins(this.layers, XATTR_ORIGIN, XATTR_IMPURE);
    this.copy = new CopyUp(this.layers, this.nodes, this.log, cfg.userxattr === true, this.xattrs, this.origins);
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
      new HeldFiles(`${this.layers.workTmp}/${HELD_DIR}`),
    );
    this.renames = new Renamer({
      layers: this.layers,
      nodes: this.nodes,
      resolver: this.resolver,
      copy: this.copy,
      whiteouts: this.whiteouts,
      trash: this.trash,
      markers: this.markers,
      origins: this.origins,
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
      holdIfOpen: (node) => this.holdIfOpen(node),
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
    // The held open files stay for a takeover; DataPath.init clears them on a fresh connection.
    for (const name of fs.readdirSync(tmp)) if (name !== HELD_DIR) fs.rmSync(`${tmp}/${name}`, { recursive: true, force: true });
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
    this.origins?.close();
    this.trash.drain();
  }

  afterReply(): void {
    if (!this.trash.empty) this.trash.drain(TRASH_PER_REPLY);
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
    // An open file whose name is gone: a lower one keeps its name in its layer; an upper one may
    // have one held for a takeover (held-files.ts).
    else if (node.unlinked) st[ST.NLINK] = node.upper ? st[ST.NLINK] - this.data.held.extraLinks(node.id) : 0;
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
    this.nodes.journal?.lookup(node.id); // before the reply: a takeover must not count it short
    node.nlookup++;
    return { nodeid: node.id, ino: node.ino, st: this.present(node, st) };
  }

  /** The node for a resolved child, without taking a lookup reference. */
  private nodeFor(parent: Node, name: string, r: Resolved): Node {
    const key = this.layers.realKey(r.st);
    if (!r.isDir && !r.upper && r.st[ST.NLINK] > 1) return this.nodes.internUnshared(parent, name, r.lowers, key);
    let known = this.nodes.byRealKey(key);
    if (known !== undefined && (known.parent !== parent || known.name !== name) && !this.holds(known, key)) {
      // The node's own path no longer holds this inode: the number was reused.
      this.nodes.evict(known);
      known = undefined;
    }
    // A new node's st_ino: an upper copy's origin's, a merged directory's first lower's.
    if (known === undefined && r.upper) {
      if (!r.isDir) this.origins?.learn(r.realPath, key, r.st[ST.MODE] & S_IFMT);
      else if (r.lowers.length > 0 && !this.layers.hasOrigin(key)) this.mergedDirIno(r, key);
    }
    const node = this.nodes.intern(parent, name, r.isDir, r.upper, r.lowers, key);
    if (!r.isDir && (node.parent !== parent || node.name !== name)) this.addAlias(node, parent, name);
    return node;
  }

  /**
   * A merged directory reports the st_ino of its first lower directory, as overlayfs does; one
   * moved with a redirect keeps its own after a remount (its listing entry cannot name the lower
   * it redirects to, and d_ino must equal st_ino).
   */
  private mergedDirIno(r: Resolved, key: number): void {
    if (overlayXattr(r.realPath, 'redirect') !== null) return;
    const first = r.lowers[0];
    const st = native.newStatArray();
    if (this.layers.view(first.layer).lstat(first.rel, st) === 0) this.layers.rememberOrigin(key, this.layers.realKeyOf(first.layer, st[ST.INO]));
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
    if (list.some((a) => a.parent === parent && a.name === name)) return;
    list.push({ parent, name });
    this.aliases.set(node, list);
    this.nodes.journal?.alias(node.id, parent.id, name);
  }

  /** One name of `node` went away: fall back to another known name, or detach it. */
  private removeName(node: Node, parent: Node, name: string): void {
    const list = this.aliases.get(node);
    if (list !== undefined) {
      const i = list.findIndex((a) => a.parent === parent && a.name === name);
      if (i >= 0) {
        list.splice(i, 1);
        this.nodes.journal?.unalias(node.id, parent.id, name);
      }
    }
    if (node.parent === parent && node.name === name) {
      const next = list?.shift();
      if (next !== undefined) {
        node.parent = next.parent;
        node.name = next.name;
        this.nodes.record(node);
        this.nodes.journal?.unalias(node.id, next.parent.id, next.name);
      } else {
        this.nodes.detach(node);
      }
    }
    if (list !== undefined && list.length === 0) this.aliases.delete(node);
    if (!node.unlinked) this.data.held.release(node.id); // held in case this was its last name
  }

  /** A node about to lose a name while open keeps one in the work dir (held-files.ts), in case that was its last. */
  private holdIfOpen(node: Node | undefined): void {
    if (node === undefined || node.handles.size === 0 || node.isDir || node.unlinked) return;
    try {
      this.data.held.hold(node.id, this.realPath(node), node.upper);
    } catch (err) {
      // The removal goes on: the file works until a takeover, which then cannot reopen it.
      this.log?.warn({ node: node.id, err: String(err) }, 'cannot keep a name for an open file');
    }
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
    return mergedListing(this.layers, dir, { origins: this.origins });
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
   * (a directory there becomes opaque, hiding what the whiteout hid). `make` may
   * return an fd open on what it made, with its stat in `st` (else -1); the new
   * entry's stat is left in `st`.
   */
  private createEntry(
    ctx: RequestContext,
    parent: Node,
    name: string,
    isDir: boolean,
    mode: number,
    make: (path: string, st: Float64Array) => number,
    st: Float64Array = native.newStatArray(),
    /** A new name of an existing inode (link): its owner stays. */
    existing = false,
  ): Node {
    this.checkName(name);
    this.writable();
    this.copy.ensureUpperDir(parent);
    const dirPath = this.upperPath(parent);
    const target = dirPath + '/' + name;
    // The caller's ids as stored (fuse-overlayfs stores an unmapped caller as the overflow id).
    const uid = this.uids.toDisk(ctx.uid) ?? this.uids.overflow;
    const gid = this.gids.toDisk(ctx.gid) ?? this.gids.overflow;
    // Made in place first: the name is nearly always free, and when it is not, EEXIST says
    // so for the price of the lstat that would otherwise precede every creation.
    const made = this.makeUnlessTaken(target, st, make);
    if (made !== null) {
      if (made < 0) this.restat(target, -1, st);
      // The kernel gave it our ids, or the directory's group in a set-gid one: when the
      // caller's ids are ours, that is the owner it should have.
      const own = uid === this.ownIds.uid && gid === this.ownIds.gid;
      if (!existing) this.setOwner(target, made, st, uid, own ? st[ST.GID] : this.groupIn(dirPath, gid).gid, mode);
      // As overlayfs when offline changes to the lowers are not allowed (redirect_dir=on or
      // xino=on): a new directory in a merged one is opaque, so its lookups skip the lowers.
      if (isDir && parent.lowers.length > 0 && this.opaqueNewDirs) native.lsetxattr(target, this.markers.opaque, Buffer.from('y'), 0);
    } else {
      // Made in the work dir, the entry inherits nothing from its directory: it is given here.
      const group = this.groupIn(dirPath, gid);
      const tmp = this.copy.tmpName();
      const fd = make(tmp, st);
      if (isDir && group.setgid) fs.chmodSync(tmp, (mode & 0o7777) | S_ISGID);
      if (fd < 0 || (isDir && group.setgid)) this.restat(tmp, fd, st);
      if (!existing) this.setOwner(tmp, fd, st, uid, group.gid, mode);
      if (isDir) {
        native.lsetxattr(tmp, this.markers.opaque, Buffer.from('y'), 0);
        native.renameat2(tmp, target, native.RENAME_EXCHANGE);
        fs.rmSync(tmp, { force: true });
      } else {
        native.renameat2(tmp, target, 0);
      }
    }
    // st is the new entry's stat from setOwner: the rename into place keeps its inode.
    parent.dirCache = null;
    const node = this.nodes.intern(parent, name, isDir, true, [], this.layers.realKey(st));
    if (isDir) this.noDefaultAcl.delete(node); // it may have inherited the parent's default ACL
    return node;
  }

  /** Runs `make` at `target`: its result (an fd or -1), or null when a whiteout holds the name. */
  private makeUnlessTaken(target: string, st: Float64Array, make: (path: string, st: Float64Array) => number): number | null {
    try {
      return make(target, st);
    } catch (err) {
      if (errnoOf(err) !== E.EEXIST) throw err;
    }
    const e = native.lstatInto(target, st);
    if (e !== 0) fail(e === E.ENOENT ? E.EEXIST : e); // gone again: raced with a removal in the upper
    if (!isWhiteout(target, st)) fail(E.EEXIST);
    return null;
  }

  /**
   * Gives a new entry the caller's ownership; chown clears set-id bits, so restore them.
   * `st` holds the entry's stat (`fd` is open on it, or -1); on return, its current stat.
   */
  private setOwner(path: string, fd: number, st: Float64Array, uid: number, gid: number, mode: number): void {
    const override = this.xattrs.override(UPPER);
    if (override !== null && overridable(st)) {
      // As fuse-overlayfs with xattr_permissions: owner and mode live in the xattr; the real mode
      // keeps the owner (this process) able to use the entry.
      native.lsetxattr(path, override, Buffer.from(formatOverride({ uid, gid, mode: mode & 0o7777 })), 0);
      fs.chmodSync(path, (st[ST.MODE] & 0o7777) | 0o755);
      this.restat(path, fd, st);
      return;
    }
    if (st[ST.UID] === uid && st[ST.GID] === gid) return;
    try {
      if (fd >= 0) fs.fchownSync(fd, uid, gid);
      else fs.lchownSync(path, uid, gid);
    } catch (err) {
      // Unprivileged (a plain user, or an id our user namespace lacks): the entry stays ours, as with fuse-overlayfs.
      if (!this.cfg.userxattr || !['EPERM', 'EINVAL'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
      return;
    }
    const type = st[ST.MODE] & S_IFMT;
    if (type !== S_IFLNK && mode & 0o6000) {
      if (fd >= 0) fs.fchmodSync(fd, st[ST.MODE] & 0o7777);
      else fs.chmodSync(path, st[ST.MODE] & 0o7777);
    }
    this.restat(path, fd, st);
  }

  /** The group a new entry in `dirPath` gets: the directory's own in a set-gid one, else `gid`. */
  private groupIn(dirPath: string, gid: number): { gid: number; setgid: boolean } {
    const dst = this.dirSt;
    this.restat(dirPath, -1, dst);
    const setgid = (dst[ST.MODE] & S_ISGID) !== 0;
    return { gid: setgid ? dst[ST.GID] : gid, setgid };
  }

  private restat(path: string, fd: number, st: Float64Array): void {
    const err = fd >= 0 ? native.fstatInto(fd, st) : native.lstatInto(path, st);
    if (err !== 0) fail(err);
  }

  /** The caller's umask applies unless the directory has a default ACL (which then rules). */
  private effectiveMode(parent: Node, mode: number, umask: number): number {
    if (this.posixAcl && parent.upper && this.hasDefaultAcl(parent)) return mode;
    return mode & ~umask;
  }

  /**
   * Whether an upper directory has a default ACL. Its absence is remembered per node (asked on
   * every creation in it): default ACLs change only through setxattr and removexattr here.
   */
  private hasDefaultAcl(dir: Node): boolean {
    if (this.noDefaultAcl.has(dir)) return false;
    if (native.lgetxattr(this.upperPath(dir), ACL_DEFAULT) !== null) return true;
    this.noDefaultAcl.add(dir);
    return false;
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
    // A node that stays (open handles, or more lookups) has its count journaled; one dropped is (DROP).
    else this.nodes.journal?.forget(nodeid, nlookup);
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
    const st = native.newStatArray();
    const node = this.createEntry(ctx, parent, name, false, 0o777, (p) => (fs.symlinkSync(target, p), -1), st);
    return this.entry(node, st);
  }

  mknod(ctx: RequestContext, parentId: number, name: string, mode: number, rdev: number, umask: number): EntryOut {
    const parent = this.dirNode(parentId);
    const perm = this.effectiveMode(parent, mode & 0o7777, umask);
    const major = (rdev & 0xfff00) >>> 8;
    const minor = (rdev & 0xff) | ((rdev >>> 12) & 0xfff00);
    const st = native.newStatArray();
    const node = this.createEntry(ctx, parent, name, false, perm, (p) => (native.mknod(p, (mode & S_IFMT) | perm, major, minor), -1), st);
    return this.entry(node, st);
  }

  mkdir(ctx: RequestContext, parentId: number, name: string, mode: number, umask: number): EntryOut {
    const parent = this.dirNode(parentId);
    const perm = this.effectiveMode(parent, mode & 0o7777, umask);
    const st = native.newStatArray();
    const node = this.createEntry(
      ctx,
      parent,
      name,
      true,
      perm,
      (p) => {
        fs.mkdirSync(p, perm);
        if (perm & 0o7000) fs.chmodSync(p, perm | (fs.lstatSync(p).mode & S_ISGID));
        return -1;
      },
      st,
    );
    return this.entry(node, st);
  }

  // CREATE makes a new file (it has no set-id bits to clear), so its kill flag is moot.
  create(ctx: RequestContext, parentId: number, name: string, mode: number, flags: number, umask: number, _killSuidGid: boolean): [EntryOut, OpenOut] {
    const parent = this.dirNode(parentId);
    const perm = this.effectiveMode(parent, mode & 0o7777, umask);
    // The file is made open with the access the caller asked for: that fd becomes the handle.
    const write = (flags & O_ACCMODE) !== O_RDONLY;
    let fd = -1;
    // Opened through fs (not a native wrapper): Node tracks a worker's fds, and warns on closing one it did not open.
    const open = (p: string, st: Float64Array): number => {
      fd = fs.openSync(p, O_CREAT | O_EXCL | (write ? O_RDWR : O_RDONLY), perm);
      native.fstatInto(fd, st);
      return fd;
    };
    const st = this.st;
    let node: Node;
    try {
      node = this.createEntry(ctx, parent, name, false, perm, open, st);
    } catch (err) {
      if (fd >= 0) fs.closeSync(fd);
      throw err;
    }
    const fh = this.data.addHandle(fd, node, write);
    const out = this.data.recordOpen(fh, this.data.withBacking(node, fh, fd, st[ST.SIZE], st[ST.MODE], write));
    return [this.entry(node, st), out];
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
    this.data.held.holdFd(node.id, fd);
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
    this.holdIfOpen(live);
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
        if (r.isDir) this.trash.add(tmp);
      } else if (r.isDir) {
        // The upper dir may still hold whiteouts: move it out, then clear it.
        native.renameat2(target, tmp, 0);
        this.trash.add(tmp);
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
      this.createEntry(ctx, parent, name, false, 0, (p) => (native.linkatEmptyPath(h.fd, p), -1), undefined, true);
      this.data.held.release(node.id);
      return this.entry(node, this.stat(node));
    }
    this.copy.copyUp(node, true);
    const src = this.upperPath(node);
    // Interning the new name finds the same real inode, which is `node` itself.
    const made = this.createEntry(ctx, parent, name, false, 0, (p) => (fs.linkSync(src, p), -1), undefined, true);
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

  pushSource(fh: number): number | undefined {
    return this.data.pushSource(fh);
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
    const fd = this.writerFd(node);
    let value: Buffer | null;
    if (fd >= 0) value = native.fgetxattr(fd, stored);
    else {
      const meta = this.metaOf(node);
      value = meta.view.getxattr(meta.rel, stored);
    }
    if (value === null && name === SELINUX_LABEL && !HOST_HAS_SELINUX) fail(E.EOPNOTSUPP);
    return value;
  }

  /**
   * An fd open for writing on `node`'s upper file, or -1: the first write to a new file makes
   * the kernel ask for security.capability, which the fd answers without a path walk. (A
   * handle opened for reading may still be on the lower file it was opened on before a copy-up.)
   */
  private writerFd(node: Node): number {
    if (!node.upper || node.unlinked) return -1;
    for (const fh of node.handles) {
      const h = this.handles.get(fh);
      if (h !== undefined && h.write) return h.fd;
    }
    return -1;
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
    if (name === ACL_DEFAULT) this.noDefaultAcl.delete(node);
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
      if (n === this.nodes.root) continue;
      s.node(n.id, n.parent?.id ?? 0, n.name, n.ino, n.unlinked);
      s.lookups(n.id, n.nlookup);
    }
    for (const [n, list] of this.aliases) for (const a of list) s.alias(n.id, a.parent.id, a.name);
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
    const lookups = (rec: NodeState) => (state.lookupsKnown ? rec.lookups : UNKNOWN_LOOKUPS);
    /** parent/name found again under a live directory. */
    const find = (parentId: number, name: string, depth: number): { parent: Node; r: Resolved } | null => {
      const parent = build(parentId, depth + 1);
      if (parent === undefined || !parent.isDir || parent.unlinked) return null;
      try {
        const r = this.resolver.child(parent, name);
        return r === null ? null : { parent, r };
      } catch {
        return null;
      }
    };
    const build = (id: number, depth: number): Node | undefined => {
      const done = made.get(id);
      if (done !== undefined || depth > 4096) return done;
      const rec = state.nodes.get(id);
      if (rec === undefined) return undefined;
      // Its primary name or, a hard-linked file's primary name gone, another of its names.
      const names = rec.detached ? [] : [{ parent: rec.parent, name: rec.name }, ...rec.aliases];
      let found: { parent: Node; r: Resolved } | null = null;
      let at = 0;
      for (; at < names.length; at++) {
        found = find(names[at].parent, names[at].name, depth);
        if (found !== null) break;
      }
      let node: Node;
      if (found === null) {
        node = this.nodes.restore(id, build(rec.parent, depth + 1) ?? this.nodes.root, rec.name, false, false, [], 0, rec.ino, false, lookups(rec));
        made.set(id, node);
        return node;
      }
      const { parent, r } = found;
      const key = this.layers.realKey(r.st);
      const unshared = !r.isDir && !r.upper && r.st[ST.NLINK] > 1;
      if (!unshared && this.layers.unionIno(key) !== rec.ino) this.layers.rememberOrigin(key, rec.ino);
      node = this.nodes.restore(id, parent, names[at].name, r.isDir, r.upper, r.lowers, key, rec.ino, unshared, lookups(rec));
      made.set(id, node);
      // Its other names that still lead to it.
      names.forEach((a, i) => {
        if (i === at) return;
        const f = find(a.parent, a.name, depth);
        if (f !== null && this.layers.realKey(f.r.st) === key) this.addAlias(node, f.parent, a.name);
      });
      return node;
    };
    for (const id of state.nodes.keys()) build(id, 0);
    let lost = 0;
    for (const [fh, h] of state.handles) {
      const node = made.get(h.nodeid);
      let fd = -1;
      try {
        // A file whose name went while open is opened through the name it keeps in the work dir.
        if (node?.unlinked) fd = this.data.held.reopen(node.id, h.write) ?? -1;
        else if (node !== undefined) fd = fs.openSync(this.realPath(node), h.write ? fs.constants.O_RDWR : fs.constants.O_RDONLY);
      } catch {
        fd = -1;
      }
      this.data.reserveFh(fh);
      if (node === undefined || fd < 0) {
        lost++;
        continue;
      }
      if (node.unlinked && node.realKey === 0 && this.data.held.extraLinks(node.id) > 0) {
        // Held by a hard link: its upper inode is known again (an O_TMPFILE can still be given a name).
        const st = native.newStatArray();
        native.fstatInto(fd, st);
        node.upper = true;
        this.nodes.rekey(node, this.layers.realKey(st));
      }
      this.data.restoreHandle(fh, node, fd, h.write, h.backingId);
    }
    this.data.held.prune();
    // What the kernel no longer holds (all forgotten, or never handed out) goes, unless a node kept is under it.
    const used = new Set<Node>();
    for (const n of made.values()) if (n.parent !== null) used.add(n.parent);
    for (const list of this.aliases.values()) for (const a of list) used.add(a.parent);
    for (const n of made.values()) if (!used.has(n)) this.dropIfUnused(n);
    this.log?.info({ nodes: made.size, handles: this.handles.size, lost }, 'union taken over');
  }
}

