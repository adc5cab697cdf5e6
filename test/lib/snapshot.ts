// Comparable description of a directory tree (lstat, never following symlinks).
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import * as native from '../../native-shims';
import { run } from './exec';

/** 'ghost': listed by readdir but lstat fails (reported, not thrown, so views can still be compared) */
export type EntryType = 'file' | 'dir' | 'symlink' | 'fifo' | 'chr' | 'blk' | 'sock' | 'ghost';

export interface SnapEntry {
  type: EntryType;
  /** permission bits incl. setuid/setgid/sticky, octal string */
  mode: string;
  uid: number;
  gid: number;
  /** regular files and symlinks only (directory sizes are filesystem specific) */
  size?: number;
  sha256?: string;
  target?: string;
  rdev?: string;
  nlink?: number;
  /** mtime in ns; normalised to "recent" when at/after `recentAfterNs` */
  mtime?: string;
  /** for non-directories sharing an st_ino with other entries: the first such path (sorted) */
  inoGroup?: string;
  /** xattr name -> hex value, sorted by name */
  xattrs: Record<string, string>;
}

export type Snapshot = Record<string, SnapEntry>;

export interface SnapshotOptions {
  /** include mtimes (default true) */
  mtime?: boolean;
  /** mtimes >= this (ns) are reported as "recent" so two runs at different times compare equal */
  recentAfterNs?: bigint;
  /** include st_nlink of directories (default false: kernel overlay reports 1 for merged dirs) */
  dirNlink?: boolean;
  /** drop xattrs whose name matches */
  ignoreXattr?: (name: string) => boolean;
  /** skip these relative paths (and everything below them) */
  exclude?: (rel: string) => boolean;
  /** include content hashes (default true) */
  content?: boolean;
}

/**
 * Overlay-private xattrs ignored when comparing UPPER dirs written by the kernel with ones written by strata.
 * They are kernel implementation details strata need not reproduce:
 *  - trusted.overlay.origin   : file handle of the lower origin (inode-number consistency, NFS export)
 *  - trusted.overlay.impure   : dir contains entries with origin/redirect (readdir d_ino optimisation)
 *  - trusted.overlay.uuid     : per-upper-fs uuid stamped on the upper root (uuid=on/auto)
 *  - trusted.overlay.nlink    : index=on only
 *  - trusted.overlay.upper    : index=on only
 *  - trusted.overlay.metacopy : metacopy=on only (we mount with metacopy=off)
 *  - trusted.overlay.protattr : copied fileattr flags
 *  - trusted.overlay.verity   : fs-verity digest (metacopy/verity only)
 *  - user.fuseoverlayfs.*     : NOT ignored (fuse-overlayfs private; strata must not write them)
 * Kept (part of the on-disk format): opaque, redirect, whiteout.
 */
export const KERNEL_PRIVATE_XATTRS = new Set([
  'trusted.overlay.origin',
  'trusted.overlay.impure',
  'trusted.overlay.uuid',
  'trusted.overlay.nlink',
  'trusted.overlay.upper',
  'trusted.overlay.metacopy',
  'trusted.overlay.protattr',
  'trusted.overlay.verity',
]);
export const ignoreKernelPrivate = (name: string): boolean => KERNEL_PRIVATE_XATTRS.has(name);

function typeOf(st: fs.BigIntStats): EntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'chr';
  if (st.isBlockDevice()) return 'blk';
  return 'sock';
}

function unescapeGetfattr(s: string): string {
  const bytes: number[] = [];
  const b = Buffer.from(s, 'utf8');
  for (let i = 0; i < b.length; i++) {
    if (b[i] === 0x5c && i + 3 < b.length + 0 && /^[0-7]{3}$/.test(b.subarray(i + 1, i + 4).toString('latin1'))) {
      bytes.push(parseInt(b.subarray(i + 1, i + 4).toString('latin1'), 8));
      i += 3;
    } else bytes.push(b[i]!);
  }
  return Buffer.from(bytes).toString('utf8');
}

/** All xattrs of every entry below root, via one `getfattr -R` run. Keys are absolute paths. */
export function readXattrsTree(root: string): Map<string, Record<string, string>> {
  const r = run('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '--absolute-names', '-e', 'hex', root]);
  const out = new Map<string, Record<string, string>>();
  let cur: Record<string, string> | null = null;
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith('# file: ')) {
      cur = {};
      out.set(unescapeGetfattr(line.slice(8)), cur);
    } else if (cur && line.includes('=')) {
      const i = line.indexOf('=');
      const v = line.slice(i + 1);
      cur[line.slice(0, i)] = v.startsWith('0x') ? v.slice(2) : Buffer.from(v.replace(/^"|"$/g, '')).toString('hex');
    } else if (cur && line.trim() && !line.startsWith('#')) {
      cur[line.trim()] = '';
    }
  }
  return out;
}

/** xattrs of a single path (no dereference). */
export function readXattrs(p: string): Record<string, string> {
  const r = run('getfattr', ['-h', '-d', '-m', '-', '--absolute-names', '-e', 'hex', p]);
  const m = new Map<string, Record<string, string>>();
  let cur: Record<string, string> | null = null;
  for (const line of r.stdout.split('\n')) {
    if (line.startsWith('# file: ')) {
      cur = {};
      m.set(line.slice(8), cur);
    } else if (cur && line.includes('=')) {
      const i = line.indexOf('=');
      cur[line.slice(0, i)] = line.slice(i + 1).replace(/^0x/, '');
    }
  }
  return [...m.values()][0] ?? {};
}

/** Files this large are digested by their data chunks (sparseDigest); smaller ones are read whole. */
const SPARSE_DIGEST_FROM = 1 << 30;
const CHUNK = 1 << 20;

/** sha256 of the content, or for a file of at least SPARSE_DIGEST_FROM bytes its sparseDigest. */
function sha256File(p: string): string {
  const fd = fs.openSync(p, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    if (size >= SPARSE_DIGEST_FROM) return sparseDigest(fd, size);
    const h = crypto.createHash('sha256');
    const buf = Buffer.allocUnsafe(CHUNK);
    let n: number;
    let pos = 0;
    while ((n = fs.readSync(fd, buf, 0, buf.length, pos)) > 0) {
      h.update(buf.subarray(0, n));
      pos += n;
    }
    return h.digest('hex');
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * A digest of a big (mostly sparse) file's content that reads only its data: sha256 over the size
 * and each 1 MiB chunk that is not all zeros, with its index. Chunks that SEEK_DATA/SEEK_HOLE show
 * to lie in holes are zeros and skipped unread; chunks holding data are read whole. It depends on
 * the content alone (not on where either filesystem keeps holes), so equal content gives equal
 * digests and different content different ones. Reading every hole of a 5 GiB file through each
 * view took a minute of the test run; the cases that make such files read their holes themselves.
 */
function sparseDigest(fd: number, size: number): string {
  const h = crypto.createHash('sha256').update(`size ${size}\n`);
  const buf = Buffer.allocUnsafe(CHUNK);
  const zeros = Buffer.alloc(CHUNK);
  let next = 0; // first chunk not yet digested
  for (let off = 0; off < size; ) {
    const data = native.lseek(fd, off, native.SEEK_DATA);
    if (data < 0 || data >= size) break; // only a hole remains
    let hole = native.lseek(fd, data, native.SEEK_HOLE);
    if (hole < 0 || hole > size) hole = size;
    for (let chunk = Math.max(next, Math.floor(data / CHUNK)); chunk * CHUNK < hole; chunk++) {
      const n = fs.readSync(fd, buf, 0, CHUNK, chunk * CHUNK);
      if (!buf.subarray(0, n).equals(zeros.subarray(0, n))) h.update(`chunk ${chunk}\n`).update(buf.subarray(0, n));
      next = chunk + 1;
    }
    off = Math.max(hole, next * CHUNK);
  }
  return h.digest('hex');
}

/** Walk `root` and describe every entry (root itself is "."). */
export function snapshot(root: string, opts: SnapshotOptions = {}): Snapshot {
  const snap: Snapshot = {};
  const inos = new Map<bigint, string[]>();
  const xattrs = readXattrsTree(root);
  const walk = (abs: string, rel: string): void => {
    if (rel !== '.' && opts.exclude?.(rel)) return;
    let st: fs.BigIntStats;
    try {
      st = fs.lstatSync(abs, { bigint: true });
    } catch (err) {
      if (rel === '.') throw err;
      snap[rel] = { type: 'ghost', mode: (err as NodeJS.ErrnoException).code ?? 'error', uid: -1, gid: -1, xattrs: {} };
      return;
    }
    const type = typeOf(st);
    const e: SnapEntry = {
      type,
      mode: (Number(st.mode) & 0o7777).toString(8).padStart(4, '0'),
      uid: Number(st.uid),
      gid: Number(st.gid),
      xattrs: {},
    };
    if (type === 'file') {
      e.size = Number(st.size);
      if (opts.content !== false) {
        try {
          e.sha256 = sha256File(abs);
        } catch (err) {
          e.sha256 = `error:${(err as NodeJS.ErrnoException).code ?? String(err)}`;
        }
      }
    }
    if (type === 'symlink') {
      e.target = fs.readlinkSync(abs);
      e.size = Number(st.size);
    }
    if (type === 'chr' || type === 'blk') {
      const rdev = Number(st.rdev);
      e.rdev = `${(rdev >> 8) & 0xfff}:${(rdev & 0xff) | ((rdev >> 12) & 0xfff00)}`;
    }
    if (type !== 'dir' || opts.dirNlink) e.nlink = Number(st.nlink);
    if (opts.mtime !== false) {
      const ns = st.mtimeNs;
      e.mtime = opts.recentAfterNs !== undefined && ns >= opts.recentAfterNs ? 'recent' : ns.toString();
    }
    const xa = xattrs.get(abs) ?? {};
    for (const k of Object.keys(xa).sort()) {
      if (opts.ignoreXattr?.(k)) continue;
      e.xattrs[k] = xa[k]!;
    }
    if (type !== 'dir') {
      const l = inos.get(st.ino) ?? [];
      l.push(rel);
      inos.set(st.ino, l);
    }
    snap[rel] = e;
    if (type === 'dir') {
      for (const name of fs.readdirSync(abs).sort()) walk(path.join(abs, name), rel === '.' ? name : `${rel}/${name}`);
    }
  };
  walk(root, '.');
  for (const group of inos.values()) {
    if (group.length < 2) continue;
    const first = [...group].sort()[0]!;
    for (const p of group) snap[p]!.inoGroup = first;
  }
  return snap;
}

/** Human-readable differences between two snapshots; empty array when equal. */
export function diffSnapshots(a: Snapshot, b: Snapshot, labels: [string, string] = ['kernel', 'strata']): string[] {
  const out: string[] = [];
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  for (const k of keys) {
    const x = a[k];
    const y = b[k];
    if (!x) {
      out.push(`${k}: only in ${labels[1]} (${y!.type})`);
      continue;
    }
    if (!y) {
      out.push(`${k}: only in ${labels[0]} (${x.type})`);
      continue;
    }
    const fields = new Set([...Object.keys(x), ...Object.keys(y)]);
    for (const f of [...fields].sort()) {
      const vx = (x as unknown as Record<string, unknown>)[f];
      const vy = (y as unknown as Record<string, unknown>)[f];
      if (f === 'xattrs') {
        const xx = vx as Record<string, string>;
        const yy = vy as Record<string, string>;
        for (const n of [...new Set([...Object.keys(xx), ...Object.keys(yy)])].sort()) {
          if (xx[n] !== yy[n]) out.push(`${k}: xattr ${n}: ${labels[0]}=${fmtX(xx[n])} ${labels[1]}=${fmtX(yy[n])}`);
        }
      } else if (JSON.stringify(vx) !== JSON.stringify(vy)) {
        out.push(`${k}: ${f}: ${labels[0]}=${JSON.stringify(vx)} ${labels[1]}=${JSON.stringify(vy)}`);
      }
    }
  }
  return out;
}

function fmtX(v: string | undefined): string {
  if (v === undefined) return '(absent)';
  const s = Buffer.from(v, 'hex').toString('latin1');
  return /^[\x20-\x7e]*$/.test(s) ? JSON.stringify(s) : '0x' + v;
}

/** Compact "path type [content]" listing, handy for hand-written expected views. */
export function listing(s: Snapshot): string[] {
  return Object.keys(s)
    .sort()
    .map((k) => {
      const e = s[k]!;
      let d = `${k} ${e.type}`;
      if (e.type === 'symlink') d += ` -> ${e.target}`;
      if (e.type === 'chr') d += ` ${e.rdev}`;
      return d;
    });
}
