// The union filesystem: FUSE operations with kernel overlayfs semantics over a
// LayerStack. Lookups go through Resolver, listings through mergedListing,
// changes to lower entries through CopyUp; whiteouts and opaque directories are
// written in the kernel's on-disk format.
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
import { Fattr, WRITE_KILL_SUIDGID } from '../fuse/protocol';
import type { Logger } from '../log';
import type { UnionConfig } from './config';
import { CopyUp } from './copyup';
import { IdMap, overflowIds } from './idmap';
import { applyOverride, formatOverride, overridable } from './override-stat';
import { LayerXattrs, initUpperOverride } from './layer-xattrs';
import { LayerStack, UPPER } from './layers';
import { Node, NodeTable, type LowerRef } from './nodes';
import { mergedListing } from './readdir';
import { Resolver, type Resolved } from './resolve';
import { TRUSTED_MARKERS, USER_MARKERS, WH_PREFIX, WhiteoutMaker, isCharWhiteout, isOpaqueDir, isWhiteout, overlayXattr, type MarkerXattrs } from './whiteouts';

const E = os.constants.errno;
const { ST } = native;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_ISGID = 0o2000;
const S_ISUID = 0o4000;
const S_IXGRP = 0o010;
const O_ACCMODE = 3;
const { O_RDONLY, O_RDWR, O_TRUNC, O_CREAT, O_EXCL, O_WRONLY } = fs.constants;
const NAME_MAX = 255;
/** Files at least this large at open use FUSE passthrough; smaller ones the page cache. */
const PASSTHROUGH_MIN_SIZE = 256 * 1024;
const ACL_DEFAULT = 'system.posix_acl_default';
const SELINUX_LABEL = 'security.selinux';
/**
 * Without SELinux the kernel never answers security.selinux itself, so `ls -l`
 * and friends ask the filesystem for it on every file. An unset label is then
 * reported as unsupported (as a filesystem without labels does): tools stop
 * asking for the rest of the mount. A label that is set is still returned.
 */
const HOST_HAS_SELINUX = fs.existsSync('/sys/fs/selinux/enforce');

function hasSetIds(mode: number): boolean {
  return (mode & S_IFMT) === S_IFREG && (mode & (S_ISUID | S_ISGID)) !== 0;
}

/** Whether the caller belongs to group `gid` (its fsgid or a supplementary group). */
function callerInGroup(ctx: RequestContext, gid: number): boolean {
  if (ctx.gid === gid) return true;
  try {
    const groups = /^Groups:(.*)$/m.exec(fs.readFileSync(`/proc/${ctx.pid}/status`, 'utf8'))?.[1] ?? '';
    return groups.trim().split(/\s+/).includes(String(gid));
  } catch {
    return false; // the caller is gone
  }
}

interface Handle {
  fd: number;
  node: Node;
  /** The handle holds a reference on node.backingId. */
  backing: boolean;
}

interface Alias {
  parent: Node;
  name: string;
}

function fail(errno: number, msg?: string): never {
  throw new FuseError(errno, msg);
}

export class UnionFs implements FuseFilesystem {
  readonly layers: LayerStack;
  readonly nodes: NodeTable;
  private readonly resolver: Resolver;
  private readonly copy: CopyUp;
  private readonly handles = new Map<number, Handle>();
  /** Extra names of hard-linked nodes, so one name's removal leaves the others usable. */
  private readonly aliases = new Map<Node, Alias[]>();
  private nextFh = 1;
  private channel: FuseChannel | null = null;
  private passthrough = false;
  private posixAcl = false;
  private readonly st = native.newStatArray();
  /** Small files' data on its way into the page cache (see storePages). */
  private readonly storeBuf = Buffer.allocUnsafe(PASSTHROUGH_MIN_SIZE);
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
    this.channel = channel;
    this.passthrough = channel.passthrough;
    this.posixAcl = channel.posixAcl;
    // Modes arrive already masked by the request's umask, so creation runs with umask 0: in a
    // filesystem context of this thread's own, so that the process (the daemon's API, its
    // other mounts) keeps its umask.
    native.unshare(native.CLONE_FS);
    native.umask(0);
    this.log?.info({ passthrough: this.passthrough, markers: this.markers.prefix, layers: this.layers.roots }, 'union mounted');
  }

  destroy(): void {
    for (const h of this.handles.values()) {
      try {
        fs.closeSync(h.fd);
      } catch {
        // already closed
      }
    }
    this.handles.clear();
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

  private stat(node: Node, fh?: number): Float64Array {
    const st = this.st;
    let h = fh !== undefined ? this.handles.get(fh) : undefined;
    if (h === undefined && node.unlinked) {
      for (const id of node.handles) {
        h = this.handles.get(id);
        break;
      }
    }
    const err = h !== undefined ? native.fstatInto(h.fd, st) : native.lstatInto(this.realPath(node), st);
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
      this.setOwner(target, uid, gid, mode);
      // As overlayfs when offline changes to the lowers are not allowed (redirect_dir=on or
      // xino=on): a new directory in a merged one is opaque, so its lookups skip the lowers.
      if (isDir && parent.lowers.length > 0 && this.opaqueNewDirs) native.lsetxattr(target, this.markers.opaque, Buffer.from('y'), 0);
    } else {
      const tmp = this.copy.tmpName();
      make(tmp);
      if (isDir && setgidDir) fs.chmodSync(tmp, (mode & 0o7777) | S_ISGID);
      this.setOwner(tmp, uid, gid, mode);
      if (isDir) {
        native.lsetxattr(tmp, this.markers.opaque, Buffer.from('y'), 0);
        native.renameat2(tmp, target, native.RENAME_EXCHANGE);
        fs.rmSync(tmp, { force: true });
      } else {
        native.renameat2(tmp, target, 0);
      }
    }
    native.lstatInto(target, st);
    parent.dirCache = null;
    return this.nodes.intern(parent, name, isDir, true, [], this.layers.realKey(st));
  }

  /** Gives a new entry the caller's ownership; chown clears set-id bits, so restore them. */
  private setOwner(path: string, uid: number, gid: number, mode: number): void {
    const st = this.st;
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
    if (a.valid & Fattr.KILL_SUIDGID && a.valid & Fattr.SIZE) this.dropSetIds(ctx, node, h ? a.fh : undefined);
    return { ino: node.ino, st: this.present(node, this.stat(node, h ? a.fh : undefined)) };
  }

  readlink(_ctx: RequestContext, nodeid: number): Buffer {
    return fs.readlinkSync(this.realPath(this.nodes.get(nodeid)), 'buffer') as Buffer;
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
    const open = this.openNode(ctx, node, flags & ~O_TRUNC, false);
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
    const fh = this.addHandle(fd, node);
    const open = this.withBacking(node, fh, fd, 0, 0, true);
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
    const from = this.dirNode(p1);
    const to = this.dirNode(p2);
    // RENAME_WHITEOUT is refused as overlayfs refuses it: our whiteouts are the union's own format.
    if (flags & ~(native.RENAME_NOREPLACE | native.RENAME_EXCHANGE)) fail(E.EINVAL);
    const exchange = (flags & native.RENAME_EXCHANGE) !== 0;
    if (exchange && flags & native.RENAME_NOREPLACE) fail(E.EINVAL);
    this.checkName(n2);
    const src = this.resolveOrFail(from, n1);
    const dst = this.resolver.child(to, n2);
    if (dst !== null && flags & native.RENAME_NOREPLACE) fail(E.EEXIST);
    if (exchange && dst === null) fail(E.ENOENT);
    this.writable();
    if (from === to && n1 === n2) return;
    if (dst !== null && !exchange) {
      if (src.isDir && !dst.isDir) fail(E.ENOTDIR);
      if (!src.isDir && dst.isDir) fail(E.EISDIR);
    }
    if (!this.cfg.redirectDir && ((src.isDir && src.lowers.length > 0) || (exchange && dst!.isDir && dst!.lowers.length > 0))) {
      fail(E.EXDEV); // as overlayfs with redirect_dir=off
    }
    const srcNode = this.nodeFor(from, n1, src);
    const dstNode = dst !== null ? this.nodeFor(to, n2, dst) : undefined;
    if (dstNode === srcNode) return; // two names of one inode: rename(2) does nothing
    // As overlayfs: a target with lower parts is checked for emptiness before anything is
    // copied up; an upper-only target is checked by the upper filesystem's own rename, after
    // the copy-ups (its errno stands: xfs says EEXIST where ext4 says ENOTEMPTY).
    const overMerged = !exchange && dst !== null && dst.isDir && dst.lowers.length > 0;
    try {
      if (overMerged && !this.isEmptyDir(to, n2, dst!)) fail(E.ENOTEMPTY);
      this.copy.copyUp(srcNode, true);
      this.copy.ensureUpperDir(to);
      if (exchange) {
        this.copy.copyUp(dstNode!, true);
        this.copy.ensureUpperDir(from);
      }
      const samedir = from === to;
      this.markMoved(srcNode, src, to, samedir);
      if (exchange) this.markMoved(dstNode!, dst!, from, samedir);
      if (exchange) {
        // By name: a hard-linked node's primary name may be another of its names.
        native.renameat2(this.upperPath(from) + '/' + n1, this.upperPath(to) + '/' + n2, native.RENAME_EXCHANGE);
        this.renameNode(srcNode, from, n1, to, n2);
        this.renameNode(dstNode!, to, n2, from, n1);
      } else {
        this.move(from, n1, srcNode, to, n2, dst);
      }
    } finally {
      this.dropIfUnused(srcNode);
      if (dstNode !== undefined) this.dropIfUnused(dstNode);
    }
    from.dirCache = null;
    to.dirCache = null;
    if (src.isDir) this.layers.forgetDeepPaths();
  }

  /**
   * A directory with lower parts gets a redirect to them (relative when it stays
   * in its directory, absolute otherwise); an upper-only directory moving into a
   * merged directory becomes opaque, so no same-named lower directory shows through.
   */
  private markMoved(node: Node, r: Resolved, newParent: Node, samedir: boolean): void {
    if (!node.isDir) return;
    const path = this.upperPath(node);
    if (r.lowers.length > 0) {
      const existing = overlayXattr(path, 'redirect')?.toString('utf8');
      if (existing !== undefined && (samedir || existing.startsWith('/'))) return;
      const value = samedir ? node.name : this.absoluteRedirect(node);
      native.lsetxattr(path, this.markers.redirect, Buffer.from(value), 0);
    } else if (newParent.lowers.length > 0 && !isOpaqueDir(path)) {
      native.lsetxattr(path, this.markers.opaque, Buffer.from('y'), 0);
    }
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
      const own = d.upper ? overlayXattr(this.upperPath(d), 'redirect')?.toString('utf8') : undefined;
      parts.unshift(own ?? d.name);
      if (own?.startsWith('/')) return parts.join('/');
    }
    return '/' + parts.join('/');
  }

  private move(from: Node, n1: string, node: Node, to: Node, n2: string, dst: Resolved | null): void {
    // By name: a hard-linked node's primary name may be another of its names.
    const srcPath = this.upperPath(from) + '/' + n1;
    const dstPath = this.upperPath(to) + '/' + n2;
    const st = native.newStatArray();
    const dstIsWhiteout = native.lstatInto(dstPath, st) === 0 && isWhiteout(dstPath, st);
    if (node.isDir && dst !== null && dst.upper && dst.lowers.length > 0) {
      // The merged target is empty in the union but its upper dir may hold whiteouts.
      const tmp = this.copy.tmpName();
      native.renameat2(dstPath, tmp, 0);
      fs.rmSync(tmp, { recursive: true, force: true });
    }
    const needWhiteout = this.resolver.lowerPositive(from, n1);
    if (dstIsWhiteout) {
      // Swap with the whiteout: it lands on the old name, which may need one.
      native.renameat2(srcPath, dstPath, native.RENAME_EXCHANGE);
      if (!needWhiteout) fs.unlinkSync(srcPath);
      else if (native.lstatInto(srcPath, st) === 0 && !isCharWhiteout(st)) this.whiteouts.markParent(srcPath);
    } else if (needWhiteout) {
      this.renameLeavingWhiteout(srcPath, dstPath);
    } else {
      native.renameat2(srcPath, dstPath, 0);
    }
    if (dst !== null) {
      const over = this.liveChild(to, n2, dst);
      if (over !== undefined && over !== node) this.removeName(over, to, n2);
      if (dst.upper && (dst.isDir || dst.st[ST.NLINK] <= 1)) this.layers.forgetOrigin(this.layers.realKey(dst.st));
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
    const tmp = this.copy.tmpName();
    const xattrWhiteout = this.whiteouts.make(tmp);
    try {
      native.renameat2(srcPath, dstPath, 0);
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      throw err;
    }
    native.renameat2(tmp, srcPath, 0);
    if (xattrWhiteout) this.whiteouts.markParent(srcPath);
  }

  private renameNode(node: Node, from: Node, n1: string, to: Node, n2: string): void {
    if (node.parent === from && node.name === n1) {
      this.nodes.move(node, to, n2);
      return;
    }
    const list = this.aliases.get(node);
    const a = list?.find((x) => x.parent === from && x.name === n1);
    if (a !== undefined) {
      a.parent = to;
      a.name = n2;
    }
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

  private addHandle(fd: number, node: Node): number {
    const fh = this.nextFh++;
    this.handles.set(fh, { fd, node, backing: false });
    node.handles.add(fh);
    return fh;
  }

  /**
   * Chooses how the kernel reads and writes an open file. Writers and large files use
   * passthrough (the kernel serves data from the backing file; one backing per
   * node). Small files are served by the daemon with the page cache kept: warm
   * reads then cost no request at all, where every passthrough read would
   * invalidate the cached atime and cost a GETATTR. An inode keeps one mode while
   * it has open handles (the kernel refuses to mix them).
   */
  private withBacking(node: Node, fh: number, fd: number, size: number, mode: number, write: boolean): OpenOut {
    // A writer of a set-id file is served here: the kernel does not clear set-id
    // bits on passthrough writes when we handle that (HANDLE_KILLPRIV_V2).
    const setIdWriter = write && hasSetIds(mode);
    const usePassthrough =
      this.passthrough &&
      this.channel !== null &&
      (node.backingRefs > 0 || (node.handles.size <= 1 && !setIdWriter && (write || size >= PASSTHROUGH_MIN_SIZE)));
    if (!usePassthrough) {
      // Data written through a passthrough handle bypassed the page cache: drop it once.
      const keepCache = !node.passthroughUsed;
      node.passthroughUsed = false;
      if (!keepCache) node.pagesStored = false;
      else if (!write && !node.pagesStored && size > 0) this.storePages(node, fd, size);
      // Served reads of a large file: a wider readahead on the backing file keeps the disk ahead of them.
      if (!write && size >= PASSTHROUGH_MIN_SIZE) native.fadvise(fd, 0, 0, native.POSIX_FADV_SEQUENTIAL);
      return { fh, keepCache };
    }
    if (node.backingRefs === 0) {
      try {
        node.backingId = this.channel!.openBacking(fd);
      } catch (err) {
        this.log?.warn({ err: String(err) }, 'passthrough unavailable; serving reads and writes in the daemon');
        this.passthrough = false;
        return { fh, keepCache: false };
      }
    }
    node.backingRefs++;
    node.passthroughUsed = true;
    this.handles.get(fh)!.backing = true;
    return { fh, backingId: node.backingId };
  }

  /**
   * Hands a small file's data to the kernel's page cache as it is opened for
   * reading: the reads that follow then cost no READ request, and no GETATTR
   * either (a READ reply invalidates the cached atime; stored pages do not).
   */
  private storePages(node: Node, fd: number, size: number): void {
    const buf = this.storeBuf;
    if (size > buf.length) return;
    const n = fs.readSync(fd, buf, 0, size, 0);
    if (n === size) node.pagesStored = this.channel!.storeData(node.id, 0, buf.subarray(0, n));
  }

  private openNode(ctx: RequestContext, node: Node, flags: number, killSuidGid: boolean): OpenOut {
    const acc = flags & O_ACCMODE;
    const write = acc !== O_RDONLY || (flags & O_TRUNC) !== 0;
    if (write) {
      this.writable();
      if (!node.upper) {
        // The kernel reopens the backing path itself: a backing on the lower file
        // cannot serve a writer, so a copy-up while it is open has to wait.
        if (node.backingRefs > 0) fail(E.EBUSY, 'file open read-only from a lower layer');
        this.copy.copyUp(node, (flags & O_TRUNC) === 0);
      }
    }
    const path = this.realPath(node);
    const fd = fs.openSync(path, (write ? O_RDWR : O_RDONLY) | (flags & O_TRUNC));
    const fh = this.addHandle(fd, node);
    // An O_TRUNC open truncates like SETATTR does; and a writer that must share an
    // existing passthrough backing cannot have set-id bits cleared on write later.
    if (killSuidGid || (write && node.backingRefs > 0 && ctx.uid !== 0)) this.dropSetIds(ctx, node, fh);
    const st = this.st;
    native.fstatInto(fd, st);
    if ((st[ST.MODE] & S_IFMT) !== S_IFREG) return { fh };
    return this.withBacking(node, fh, fd, st[ST.SIZE], st[ST.MODE], write);
  }

  /**
   * Clears the set-id bits a write or truncate by a caller without CAP_FSETID
   * clears, as the VFS does: set-user-ID, and set-group-ID when group execute is
   * set or the caller is not in the file's group. The kernel's cached mode is
   * then stale, so its attributes are invalidated.
   */
  private dropSetIds(ctx: RequestContext, node: Node, fh?: number): void {
    const st = this.stat(node, fh);
    const mode = st[ST.MODE];
    if (!hasSetIds(mode)) return;
    let kill = mode & S_ISUID;
    if (mode & S_ISGID && (mode & S_IXGRP || !callerInGroup(ctx, this.gids.toShown(st[ST.GID])))) kill |= S_ISGID;
    if (kill === 0) return;
    if (fh !== undefined) fs.fchmodSync(this.handle(fh).fd, mode & 0o7777 & ~kill);
    else fs.chmodSync(this.upperPath(node), mode & 0o7777 & ~kill);
    this.channel?.invalidateAttrs(node.id);
  }

  open(ctx: RequestContext, nodeid: number, flags: number, killSuidGid: boolean): OpenOut {
    const node = this.nodes.get(nodeid);
    if (node.isDir) fail(E.EISDIR);
    return this.openNode(ctx, node, flags, killSuidGid);
  }

  private handle(fh: number): Handle {
    const h = this.handles.get(fh);
    if (h === undefined) fail(E.EBADF);
    return h;
  }

  read(_ctx: RequestContext, _nodeid: number, fh: number, offset: number, size: number, out: Buffer, outOffset: number): number {
    return fs.readSync(this.handle(fh).fd, out, outOffset, size, offset);
  }

  readSource(fh: number): number | undefined {
    return this.handles.get(fh)?.fd;
  }

  write(ctx: RequestContext, _nodeid: number, fh: number, offset: number, data: Buffer, writeFlags: number): number {
    const h = this.handle(fh);
    if (writeFlags & WRITE_KILL_SUIDGID) this.dropSetIds(ctx, h.node, fh);
    return fs.writeSync(h.fd, data, 0, data.length, offset);
  }

  release(_ctx: RequestContext, _nodeid: number, fh: number): void {
    const h = this.handles.get(fh);
    if (h === undefined) return;
    this.handles.delete(fh);
    fs.closeSync(h.fd);
    const node = h.node;
    node.handles.delete(fh);
    if (h.backing && --node.backingRefs === 0) {
      this.channel?.closeBacking(node.backingId);
      node.backingId = 0;
    }
    if (node.nlookup <= 0 && node.handles.size === 0) this.dropIfUnused(node);
  }

  fsync(_ctx: RequestContext, _nodeid: number, fh: number, datasync: boolean): void {
    if (this.cfg.noFsync) return;
    const fd = this.handle(fh).fd;
    if (datasync) fs.fdatasyncSync(fd);
    else fs.fsyncSync(fd);
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
    const h = this.handle(fh);
    if (ctx.uid !== 0) this.dropSetIds(ctx, h.node, fh); // no kill flag comes with FALLOCATE
    native.fallocate(h.fd, mode, offset, length);
  }

  lseek(_ctx: RequestContext, _nodeid: number, fh: number, offset: number, whence: number): number {
    const r = native.lseek(this.handle(fh).fd, offset, whence);
    if (r < 0) fail(E.ENXIO);
    return r;
  }

  copyFileRange(ctx: RequestContext, _a: number, fhIn: number, offIn: number, _b: number, fhOut: number, offOut: number, len: number): number {
    const out = this.handle(fhOut);
    if (ctx.uid !== 0) this.dropSetIds(ctx, out.node, fhOut); // no kill flag comes with COPY_FILE_RANGE
    return native.copyFileRange(this.handle(fhIn).fd, offIn, out.fd, offOut, len);
  }

  // --- directories --------------------------------------------------------------------

  readdir(_ctx: RequestContext, nodeid: number, offset: number): DirEntry[] {
    const dir = this.dirNode(nodeid);
    if (offset === 0 || dir.dirCache === null) dir.dirCache = this.listing(dir);
    return dir.dirCache;
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
    const value = native.lgetxattr(this.realPath(node), stored);
    if (value === null && name === SELINUX_LABEL && !HOST_HAS_SELINUX) fail(E.EOPNOTSUPP);
    return value;
  }

  listxattr(_ctx: RequestContext, nodeid: number): string[] {
    const node = this.nodes.get(nodeid);
    const layer = this.layerOf(node);
    const names: string[] = [];
    for (const stored of native.llistxattr(this.realPath(node))) {
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
}

