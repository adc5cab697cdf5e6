// The node table: one node per union inode the kernel holds, each with a primary
// name (parent + name) from which its real paths derive.
import * as os from 'node:os';
import { FuseError } from '../fuse/filesystem';
import type { LayerStack } from './layers';
import type { Journal } from '../fuse/journal';

const E = os.constants.errno;

/** Where a node exists in one lower layer: the layer index and the path inside it. */
export interface LowerRef {
  layer: number;
  rel: string;
}

/**
 * Where each name first shows in a merged directory's lower layers, as its listing found it: the
 * position in `lowers` of the first of them holding the name, a whiteout of it or an OCI marker
 * hiding it. A lookup there starts at that layer (the ones above hold nothing about the name), and
 * a name none holds is absent from them all: one probe, however many layers are merged. Kept only
 * for indexed (immutable) lowers, and only while the node's lowers are these.
 */
export interface LowerNames {
  lowers: LowerRef[];
  first: Map<string, number>;
}

/** The node's booleans, packed into one small integer (a field costs 8 bytes on every node). */
const enum Flag {
  IsDir = 1,
  Upper = 2,
  Unlinked = 4,
  PassthroughUsed = 8,
  PagesStored = 16,
  Opened = 32,
  Unshared = 64,
}

/** What only a node with open files needs, kept apart: most nodes are never opened. */
class OpenState {
  readonly handles = new Set<number>();
  backingId = 0;
  backingRefs = 0;
}

const NO_HANDLES: ReadonlySet<number> = new Set<number>();
const NO_LOWERS: LowerRef[] = Object.freeze([]) as unknown as LowerRef[];

/**
 * One union inode. A mount may cache hundreds of thousands of them, so a node is one object with
 * few fields (measured: about 0.1 KiB, where a field per boolean, a Set of handles and a LowerRef
 * array per node took 0.75 KiB): booleans in one integer, the handles only while some are open,
 * and the commonest lowers, one layer, as its layer and path without an array around them.
 */
export class Node {
  nlookup = 0;
  private flags: number;
  /** Lowers: one (in lowerLayer and this path), or an array of them (lowerLayer -1). */
  private lowerLayer = -1;
  private lowerData: string | LowerRef[] = NO_LOWERS;
  private openState: OpenState | null = null;
  /** The merged listing served to READDIR at offsets > 0. */
  dirCache: import('../fuse/filesystem').DirEntry[] | null = null;
  /** From the last listing of a directory merged from indexed lowers: see LowerNames. */
  lowerNames: LowerNames | null = null;

  constructor(
    readonly id: number,
    public ino: number,
    public parent: Node | null,
    public name: string,
    isDir: boolean,
    /** The node has a copy in the upper layer (its path there is its union path). */
    upper: boolean,
    /** Non-directory: the lower file it comes from (at most one). Directory: the
     *  lower directories merged beneath it, top-down, cut at an opaque one. */
    lowers: LowerRef[],
    public realKey: number,
  ) {
    this.flags = (isDir ? Flag.IsDir : 0) | (upper ? Flag.Upper : 0);
    this.lowers = lowers;
  }

  private flag(f: Flag): boolean {
    return (this.flags & f) !== 0;
  }

  private setFlag(f: Flag, on: boolean): void {
    this.flags = on ? this.flags | f : this.flags & ~f;
  }

  get isDir(): boolean {
    return this.flag(Flag.IsDir);
  }

  get upper(): boolean {
    return this.flag(Flag.Upper);
  }
  set upper(v: boolean) {
    this.setFlag(Flag.Upper, v);
  }

  /** Set once the node's last name is gone; open handles may still use it. */
  get unlinked(): boolean {
    return this.flag(Flag.Unlinked);
  }
  set unlinked(v: boolean) {
    this.setFlag(Flag.Unlinked, v);
  }

  /** A passthrough handle wrote around the page cache since the last cached open. */
  get passthroughUsed(): boolean {
    return this.flag(Flag.PassthroughUsed);
  }
  set passthroughUsed(v: boolean) {
    this.setFlag(Flag.PassthroughUsed, v);
  }

  /** The file's data was stored in the kernel's page cache (kept until a cache drop). */
  get pagesStored(): boolean {
    return this.flag(Flag.PagesStored);
  }
  set pagesStored(v: boolean) {
    this.setFlag(Flag.PagesStored, v);
  }

  /** Opened during this mount: reading a lower file's data may move its atime past what an index recorded. */
  get opened(): boolean {
    return this.flag(Flag.Opened);
  }
  set opened(v: boolean) {
    this.setFlag(Flag.Opened, v);
  }

  /** A hard-linked lower file: one node per name, as overlayfs without an index. */
  get unshared(): boolean {
    return this.flag(Flag.Unshared);
  }
  set unshared(v: boolean) {
    this.setFlag(Flag.Unshared, v);
  }

  /** The lowers, as an array (a fresh one when the node has one lower: read it, do not change it). */
  get lowers(): LowerRef[] {
    const d = this.lowerData;
    return typeof d === 'string' ? [{ layer: this.lowerLayer, rel: d }] : d;
  }
  set lowers(l: LowerRef[]) {
    if (l.length === 1) {
      this.lowerLayer = l[0].layer;
      this.lowerData = l[0].rel;
    } else {
      this.lowerLayer = -1;
      this.lowerData = l.length === 0 ? NO_LOWERS : l;
    }
  }

  /** How many lowers, without building the array. */
  get lowerCount(): number {
    const d = this.lowerData;
    return typeof d === 'string' ? 1 : d.length;
  }

  /** Open handles, for fstat of unlinked files. */
  get handles(): ReadonlySet<number> {
    return this.openState?.handles ?? NO_HANDLES;
  }

  addHandle(fh: number): void {
    (this.openState ??= new OpenState()).handles.add(fh);
  }

  removeHandle(fh: number): void {
    this.openState?.handles.delete(fh);
    this.trimOpenState();
  }

  /** Passthrough backing id registered for the file (0: none). */
  get backingId(): number {
    return this.openState?.backingId ?? 0;
  }
  set backingId(v: number) {
    if (v !== 0) (this.openState ??= new OpenState()).backingId = v;
    else if (this.openState !== null) {
      this.openState.backingId = 0;
      this.trimOpenState();
    }
  }

  /** Handles holding a reference on backingId. */
  get backingRefs(): number {
    return this.openState?.backingRefs ?? 0;
  }
  set backingRefs(v: number) {
    if (v !== 0) (this.openState ??= new OpenState()).backingRefs = v;
    else if (this.openState !== null) {
      this.openState.backingRefs = 0;
      this.trimOpenState();
    }
  }

  private trimOpenState(): void {
    const o = this.openState;
    if (o !== null && o.handles.size === 0 && o.backingId === 0 && o.backingRefs === 0) this.openState = null;
  }

  /** Path inside the union, '' for the root, without a leading slash. */
  get path(): string {
    if (this.parent === null) return '';
    const pp = this.parent.path;
    return pp === '' ? this.name : pp + '/' + this.name;
  }

  childPath(name: string): string {
    const p = this.path;
    return p === '' ? name : p + '/' + name;
  }

  /** A directory shown merged from more than one layer (overlayfs reports nlink 1). */
  get isMergedDir(): boolean {
    return this.isDir && (this.upper ? this.lowerCount > 0 : this.lowerCount > 1);
  }
}

export class NodeTable {
  private readonly byId = new Map<number, Node>();
  private readonly byReal = new Map<number, Node>();
  /** Nodes of hard-linked lower files, by parent id and name. */
  private readonly byName = new Map<string, Node>();
  private nextId = 2;
  readonly root: Node;
  /** Records every node handed to the kernel, and every change of its name, for a takeover. */
  journal: Journal | null = null;

  constructor(
    private readonly layers: LayerStack,
    root: { upper: boolean; lowers: LowerRef[]; realKey: number },
  ) {
    this.root = new Node(1, layers.unionIno(root.realKey), null, '', true, root.upper, root.lowers, root.realKey);
    this.root.nlookup = 1;
    this.byId.set(1, this.root);
    this.byReal.set(root.realKey, this.root);
  }

  get size(): number {
    return this.byId.size;
  }

  get(id: number): Node {
    const n = this.byId.get(id);
    if (n === undefined) throw new FuseError(E.ESTALE, `unknown node ${id}`);
    return n;
  }

  /** The node for a real inode found under parent/name: the live one (hard links,
   *  directories looked up again) or a new one. */
  intern(parent: Node, name: string, isDir: boolean, upper: boolean, lowers: LowerRef[], realKey: number): Node {
    const existing = this.byReal.get(realKey);
    if (existing !== undefined && existing.isDir === isDir && existing.upper === upper) {
      if ((isDir || existing.unlinked || existing.parent === null) && (existing.parent !== parent || existing.name !== name || existing.unlinked)) {
        existing.parent = parent;
        existing.name = name;
        existing.unlinked = false;
        this.record(existing);
      }
      // The same lowers found again keep their array: what was learnt about them (lowerNames) stays.
      if (!sameRefs(existing.lowers, lowers)) existing.lowers = lowers;
      return existing;
    }
    const node = new Node(this.nextId++, this.layers.unionIno(realKey), parent, name, isDir, upper, lowers, realKey);
    this.byId.set(node.id, node);
    if (existing === undefined) this.byReal.set(realKey, node);
    this.record(node);
    return node;
  }

  /** A hard-linked lower file seen under parent/name: its own node per name, so a
   *  copy-up of one name breaks the link as overlayfs (index=off) does. */
  internUnshared(parent: Node, name: string, lowers: LowerRef[], realKey: number): Node {
    const key = nameKey(parent, name);
    const existing = this.byName.get(key);
    if (existing !== undefined && existing.realKey === realKey && !existing.upper) {
      existing.lowers = lowers;
      return existing;
    }
    const node = new Node(this.nextId++, this.layers.unionIno(realKey), parent, name, false, false, lowers, realKey);
    node.unshared = true;
    this.byId.set(node.id, node);
    this.byName.set(key, node);
    this.record(node);
    return node;
  }

  /** After a copy-up the node's real inode changed; it keeps its st_ino, except a
   *  broken-off hard link, which overlayfs reports by its new inode. */
  rekey(node: Node, realKey: number): void {
    if (this.byReal.get(node.realKey) === node) this.byReal.delete(node.realKey);
    if (node.unshared) {
      this.unname(node);
      node.unshared = false;
      node.ino = this.layers.unionIno(realKey);
      this.record(node);
    } else {
      this.layers.rememberOrigin(realKey, node.ino);
    }
    node.realKey = realKey;
    this.byReal.set(realKey, node);
  }

  /** Gives a node a new primary name (rename). */
  move(node: Node, parent: Node, name: string): void {
    if (node.unshared) this.unname(node);
    node.parent = parent;
    node.name = name;
    if (node.unshared) this.byName.set(nameKey(parent, name), node);
    this.record(node);
  }

  /** Journals a node's current name (it is new, or renamed). */
  record(node: Node): void {
    this.journal?.node(node.id, node.parent?.id ?? 0, node.name, node.ino, node.unlinked);
  }

  /** Every node (for a snapshot of the table). */
  all(): IterableIterator<Node> {
    return this.byId.values();
  }

  /**
   * A node the kernel holds from before a takeover, rebuilt under its old id with the kernel's
   * lookup count of it; an unlinked one has no real inode (realKey 0) and serves only what its
   * handles allow.
   */
  restore(id: number, parent: Node, name: string, isDir: boolean, upper: boolean, lowers: LowerRef[], realKey: number, ino: number, unshared: boolean, nlookup: number): Node {
    const node = new Node(id, ino, parent, name, isDir, upper, lowers, realKey);
    node.nlookup = nlookup;
    node.unlinked = realKey === 0;
    this.byId.set(id, node);
    if (unshared) {
      node.unshared = true;
      this.byName.set(nameKey(parent, name), node);
    } else if (realKey !== 0 && !this.byReal.has(realKey)) {
      this.byReal.set(realKey, node);
    }
    if (id >= this.nextId) this.nextId = id + 1;
    return node;
  }

  private unname(node: Node): void {
    if (node.parent !== null && this.byName.get(nameKey(node.parent, node.name)) === node) this.byName.delete(nameKey(node.parent, node.name));
  }

  forget(id: number, nlookup: number): Node | undefined {
    const n = this.byId.get(id);
    if (n === undefined || n === this.root) return undefined;
    n.nlookup -= nlookup;
    if (n.nlookup > 0 || n.handles.size > 0) return undefined;
    this.drop(n);
    return n;
  }

  /** Removes a node nothing references any more. */
  drop(n: Node): void {
    if (this.byId.delete(n.id)) this.journal?.drop(n.id);
    if (n.unshared) this.unname(n);
    if (this.byReal.get(n.realKey) === n) this.byReal.delete(n.realKey);
  }

  /** Marks a node whose name went away (unlink, rmdir, overwritten by rename). */
  detach(n: Node): void {
    if (n.unshared) this.unname(n);
    n.unlinked = true;
    if (this.byReal.get(n.realKey) === n) this.byReal.delete(n.realKey);
    this.journal?.detach(n.id);
    if (n.nlookup <= 0 && n.handles.size === 0 && n !== this.root) this.drop(n);
  }

  /** The node indexed under a real inode, if any. */
  byRealKey(realKey: number): Node | undefined {
    return this.byReal.get(realKey);
  }

  /** Takes a stale node out of the real-inode index (its inode number was reused). */
  evict(n: Node): void {
    if (this.byReal.get(n.realKey) === n) this.byReal.delete(n.realKey);
    if (n.unshared) this.unname(n);
    n.unlinked = true;
    this.journal?.detach(n.id);
  }

  /** Finds a live node by its primary name (used to update nodes on rename/unlink). */
  findChild(parent: Node, name: string, realKey: number): Node | undefined {
    const n = this.byReal.get(realKey) ?? this.byName.get(nameKey(parent, name));
    return n !== undefined && n.parent === parent && n.name === name ? n : undefined;
  }
}

function nameKey(parent: Node, name: string): string {
  return parent.id + '/' + name;
}

function sameRefs(a: LowerRef[], b: LowerRef[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i].layer !== b[i].layer || a[i].rel !== b[i].rel) return false;
  return true;
}
