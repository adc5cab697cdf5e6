// The state journal of one FUSE connection: what a process taking over the connection after a
// crash needs to go on serving it. The kernel keeps using the nodeids and file handles it was
// given, so every one of them is recorded before the reply that hands it out: nodeid -> (parent,
// name, st_ino, other names of a hard-linked file, lookup count), file handle -> (nodeid, access,
// backing id), the INIT settings, and the request whose effects may be half done (its intent,
// written before a mutating request runs). The lookup count lets the kernel's FORGETs after a
// takeover free what they free before one: a lookup is recorded before its reply (a count too
// high at a crash keeps a node, never drops a held one); a FORGET that leaves a node alive after.
//
// An append-only file of binary records. The records a request makes are staged in memory and
// written with one write(2) when the session is about to answer it (flush(), called before
// anything goes to /dev/fuse, and at the end of every request): a READDIRPLUS that hands out a
// thousand nodes costs one write, not two thousand. An intent is written at once (it must be in
// the file before the request's effects). Written is enough, no fsync: a killed process loses
// nothing it wrote (the page cache keeps it), and a crash of the machine ends the FUSE connection
// too, leaving nothing to take over. A torn record at the end is ignored. When the file has grown
// well past what is live, a snapshot is written beside it and renamed over it.
import * as fs from 'node:fs';
import * as native from '../../native-shims';

const enum Rec {
  INIT = 1,
  INTENT = 2,
  NODE = 3,
  DETACH = 4,
  DROP = 5,
  OPEN = 6,
  RELEASE = 7,
  /** One more lookup of a node handed to the kernel. */
  LOOKUP = 8,
  /** The kernel forgot n lookups of a node that stays. */
  FORGET = 9,
  /** A node's lookup count (snapshots). */
  LOOKUPS = 10,
  /** Another name of a hard-linked node, added or removed. */
  ALIAS = 11,
  UNALIAS = 12,
}

/** INIT flag: this journal records lookups and forgets (one written by an earlier build may not). */
const INIT_LOOKUPS = 4;
const INIT_WRITEBACK_CACHE = 8;

const HEADER = 5; // u32 length, u8 type
/** Staged bytes past this are written at once (a snapshot, a huge request): memory stays bounded. */
const STAGE_LIMIT = 64 << 10;
/** Compact once the file is past this size and several times what the live state takes. */
const COMPACT_MIN_BYTES = 4 << 20;
const COMPACT_RATIO = 4;
/** Bytes a live node or handle takes in a snapshot, about. */
const LIVE_RECORD_BYTES = 48;

export interface InitState {
  minor: number;
  passthrough: boolean;
  posixAcl: boolean;
  writebackCache: boolean;
}

export interface NodeState {
  parent: number;
  name: string;
  ino: number;
  /** Its name is gone (unlinked, or replaced by a rename); open handles may still use it. */
  detached: boolean;
  /** The kernel's lookup count of it (see JournalState.lookupsKnown). */
  lookups: number;
  /** Its other names (a hard-linked file), besides parent/name. */
  aliases: { parent: number; name: string }[];
}

export interface HandleState {
  nodeid: number;
  write: boolean;
  /** Passthrough backing id (0: none). */
  backingId: number;
}

export interface JournalState {
  init: InitState | null;
  /** The last mutating request begun: unique (without the resend bit) as lo/hi words, and its opcode. */
  intent: { lo: number; hi: number; opcode: number } | null;
  nodes: Map<number, NodeState>;
  handles: Map<number, HandleState>;
  /** Lookup counts were journaled throughout (false: a journal of an earlier build; counts unknown). */
  lookupsKnown: boolean;
}

/** What a filesystem writes into a snapshot: its live nodes and handles. */
export interface JournalSnapshot {
  node(id: number, parent: number, name: string, ino: number, detached: boolean): void;
  lookups(id: number, count: number): void;
  alias(id: number, parent: number, name: string): void;
  open(fh: number, nodeid: number, write: boolean, backingId: number): void;
}

export class Journal implements JournalSnapshot {
  private fd: number;
  /** Records not yet written: stage[0, staged). */
  private stage = Buffer.allocUnsafe(STAGE_LIMIT + 4096);
  private staged = 0;
  /** Bytes in the file, written and staged. */
  private bytes: number;
  private init_: InitState | null = null;
  private intent_: JournalState['intent'] = null;
  private snapshotSource: { write(s: JournalSnapshot): void; live(): number } | null = null;

  constructor(readonly path: string) {
    this.fd = fs.openSync(path, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_APPEND, 0o600);
    this.bytes = fs.fstatSync(this.fd).size;
  }

  /** Who provides the live state when the journal is compacted. */
  setSnapshotSource(src: { write(s: JournalSnapshot): void; live(): number }): void {
    this.snapshotSource = src;
  }

  /** Room for a record of up to `max` bytes: the offset of its header in `stage`. */
  private reserve(max: number): number {
    if (this.staged + max > this.stage.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.stage.length * 2, this.staged + max));
      this.stage.copy(grown, 0, 0, this.staged);
      this.stage = grown;
    }
    return this.staged;
  }

  /** Writes the staged records (one write(2)); throws when the file refuses them (they stay staged). */
  flush(): void {
    let done = 0;
    while (done < this.staged) {
      const n = native.writeFrom(this.fd, done === 0 ? this.stage : this.stage.subarray(done), this.staged - done);
      if (n <= 0) {
        this.stage.copy(this.stage, 0, done, this.staged);
        this.staged -= done;
        throw new Error(`journal write to ${this.path} failed: ${n < 0 ? `errno ${-n}` : 'nothing written'}`);
      }
      done += n;
    }
    this.staged = 0;
  }

  private afterChange(): void {
    const src = this.snapshotSource;
    if (src === null || this.bytes < COMPACT_MIN_BYTES) return;
    if (this.bytes < COMPACT_RATIO * LIVE_RECORD_BYTES * Math.max(1, src.live())) return;
    this.compact();
  }

  /** A record of `type` with up to `body` bytes after its header: the offset of its body in `stage`. */
  private begin(type: Rec, body: number): number {
    const at = this.reserve(HEADER + body);
    this.stage[at + 4] = type;
    return at + HEADER;
  }

  /** The record begun with a body at `p` ends at `end`: staged. */
  private commit(p: number, end: number): void {
    const at = p - HEADER;
    this.stage.writeUInt32LE(end - at, at);
    this.staged = end;
    this.bytes += end - at;
    if (end >= STAGE_LIMIT) this.flush();
  }

  init(s: InitState): void {
    this.init_ = s;
    const p = this.begin(Rec.INIT, 5);
    this.stage.writeUInt32LE(s.minor, p);
    this.stage[p + 4] = (s.passthrough ? 1 : 0) | (s.posixAcl ? 2 : 0) | (s.writebackCache ? INIT_WRITEBACK_CACHE : 0) | INIT_LOOKUPS;
    this.commit(p, p + 5);
  }

  /** A mutating request is about to run (unique without the resend bit): written at once, before its effects. */
  intent(lo: number, hi: number, opcode: number): void {
    this.intent_ = { lo, hi, opcode };
    const p = this.begin(Rec.INTENT, 12);
    const b = this.stage;
    b.writeUInt32LE(lo, p);
    b.writeUInt32LE(hi, p + 4);
    b.writeUInt32LE(opcode, p + 8);
    this.commit(p, p + 12);
    this.flush();
  }

  node(id: number, parent: number, name: string, ino: number, detached = false): void {
    const p = this.begin(Rec.NODE, 24 + 3 * name.length);
    const b = this.stage;
    b.writeDoubleLE(id, p);
    b.writeDoubleLE(parent, p + 8);
    b.writeDoubleLE(ino, p + 16);
    this.commit(p, p + 24 + b.write(name, p + 24, 'utf8'));
    if (detached) this.detach(id);
    else this.afterChange();
  }

  detach(id: number): void {
    this.idRecord(Rec.DETACH, id);
  }

  /** The kernel is about to be given one more lookup of node `id`. */
  lookup(id: number): void {
    this.idRecord(Rec.LOOKUP, id);
  }

  /** The kernel forgot `n` lookups of node `id`, which stays. */
  forget(id: number, n: number): void {
    this.countRecord(Rec.FORGET, id, n);
  }

  lookups(id: number, count: number): void {
    this.countRecord(Rec.LOOKUPS, id, count);
  }

  /** Node `id` is known under parent/name too (a hard link). */
  alias(id: number, parent: number, name: string): void {
    this.aliasRecord(Rec.ALIAS, id, parent, name);
  }

  unalias(id: number, parent: number, name: string): void {
    this.aliasRecord(Rec.UNALIAS, id, parent, name);
  }

  private countRecord(type: Rec, id: number, n: number): void {
    const p = this.begin(type, 16);
    this.stage.writeDoubleLE(id, p);
    this.stage.writeDoubleLE(n, p + 8);
    this.commit(p, p + 16);
    this.afterChange();
  }

  private aliasRecord(type: Rec, id: number, parent: number, name: string): void {
    const p = this.begin(type, 16 + 3 * name.length);
    const b = this.stage;
    b.writeDoubleLE(id, p);
    b.writeDoubleLE(parent, p + 8);
    this.commit(p, p + 16 + b.write(name, p + 16, 'utf8'));
    this.afterChange();
  }

  drop(id: number): void {
    this.idRecord(Rec.DROP, id);
  }

  open(fh: number, nodeid: number, write: boolean, backingId: number): void {
    const p = this.begin(Rec.OPEN, 21);
    const b = this.stage;
    b.writeDoubleLE(fh, p);
    b.writeDoubleLE(nodeid, p + 8);
    b.writeInt32LE(backingId, p + 16);
    b[p + 20] = write ? 1 : 0;
    this.commit(p, p + 21);
    this.afterChange();
  }

  release(fh: number): void {
    this.idRecord(Rec.RELEASE, fh);
  }

  private idRecord(type: Rec, id: number): void {
    const p = this.begin(type, 8);
    this.stage.writeDoubleLE(id, p);
    this.commit(p, p + 8);
    this.afterChange();
  }

  /** Rewrites the journal as a snapshot of the live state (written aside, then renamed over it). */
  compact(): void {
    const src = this.snapshotSource;
    if (src === null) return;
    const tmp = this.path + '.new';
    this.flush(); // what is staged goes to the old file, which stays should the snapshot fail
    const old = this.fd;
    this.fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_APPEND, 0o600);
    this.bytes = 0;
    const source = this.snapshotSource;
    this.snapshotSource = null; // no compaction while writing one
    try {
      if (this.init_) this.init(this.init_);
      if (this.intent_) this.intent(this.intent_.lo, this.intent_.hi, this.intent_.opcode);
      src.write(this);
      this.flush();
      fs.renameSync(tmp, this.path);
      fs.closeSync(old);
    } catch (err) {
      this.staged = 0; // part of the snapshot
      fs.closeSync(this.fd);
      this.fd = old;
      this.bytes = fs.fstatSync(old).size;
      fs.rmSync(tmp, { force: true });
      throw err;
    } finally {
      this.snapshotSource = source;
    }
  }

  /** Writes what is staged and closes the file (the connection stays, for the next process). */
  close(): void {
    if (this.fd < 0) return;
    try {
      this.flush();
    } finally {
      fs.closeSync(this.fd);
      this.fd = -1;
    }
  }

  /** The connection is over: the journal goes. */
  remove(): void {
    this.staged = 0;
    this.close();
    fs.rmSync(this.path, { force: true });
  }

  /** The state recorded in a journal file (empty when there is none). */
  static read(path: string): JournalState {
    const st: JournalState = { init: null, intent: null, nodes: new Map(), handles: new Map(), lookupsKnown: true };
    let data: Buffer;
    try {
      data = fs.readFileSync(path);
    } catch {
      return st;
    }
    for (let off = 0; off + HEADER <= data.length; ) {
      const len = data.readUInt32LE(off);
      if (len < HEADER || off + len > data.length) break; // torn tail
      const p = off + HEADER;
      switch (data[off + 4] as Rec) {
        case Rec.INIT:
          st.init = { minor: data.readUInt32LE(p), passthrough: (data[p + 4] & 1) !== 0, posixAcl: (data[p + 4] & 2) !== 0, writebackCache: (data[p + 4] & INIT_WRITEBACK_CACHE) !== 0 };
          if ((data[p + 4] & INIT_LOOKUPS) === 0) st.lookupsKnown = false;
          break;
        case Rec.INTENT:
          st.intent = { lo: data.readUInt32LE(p), hi: data.readUInt32LE(p + 4), opcode: data.readUInt32LE(p + 8) };
          break;
        case Rec.NODE: {
          // A node renamed keeps its count and other names.
          const was = st.nodes.get(data.readDoubleLE(p));
          st.nodes.set(data.readDoubleLE(p), {
            parent: data.readDoubleLE(p + 8),
            ino: data.readDoubleLE(p + 16),
            name: data.toString('utf8', p + 24, off + len),
            detached: false,
            lookups: was?.lookups ?? 0,
            aliases: was?.aliases ?? [],
          });
          break;
        }
        case Rec.LOOKUP:
        case Rec.FORGET:
        case Rec.LOOKUPS: {
          const n = st.nodes.get(data.readDoubleLE(p));
          const type = data[off + 4] as Rec;
          if (n) n.lookups = type === Rec.LOOKUP ? n.lookups + 1 : type === Rec.FORGET ? n.lookups - data.readDoubleLE(p + 8) : data.readDoubleLE(p + 8);
          break;
        }
        case Rec.ALIAS:
        case Rec.UNALIAS: {
          const n = st.nodes.get(data.readDoubleLE(p));
          const parent = data.readDoubleLE(p + 8);
          const name = data.toString('utf8', p + 16, off + len);
          if (n === undefined) break;
          n.aliases = n.aliases.filter((a) => a.parent !== parent || a.name !== name);
          if ((data[off + 4] as Rec) === Rec.ALIAS) n.aliases.push({ parent, name });
          break;
        }
        case Rec.DETACH: {
          const n = st.nodes.get(data.readDoubleLE(p));
          if (n) n.detached = true;
          break;
        }
        case Rec.DROP:
          st.nodes.delete(data.readDoubleLE(p));
          break;
        case Rec.OPEN:
          st.handles.set(data.readDoubleLE(p), { nodeid: data.readDoubleLE(p + 8), backingId: data.readInt32LE(p + 16), write: data[p + 20] === 1 });
          break;
        case Rec.RELEASE:
          st.handles.delete(data.readDoubleLE(p));
          break;
        default:
          break; // a record of a later version: skipped
      }
      off += len;
    }
    return st;
  }
}
