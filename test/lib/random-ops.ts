// Seeded random operation generator / executor for the random-ops differential test.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { run } from './exec';
import { Entry } from './layers';

/** mulberry32 */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const DIRS = ['', 'a', 'b', 'a/c'];
const NAMES = ['x', 'y', 'z', 'a', 'b', 'c'];
/** every path ops may touch */
export const UNIVERSE: string[] = DIRS.flatMap((d) => NAMES.map((n) => (d ? `${d}/${n}` : n)));
const DIRSET = new Set(['a', 'b', 'a/c']);

export type Op =
  | { op: 'create'; p: string; data: string }
  | { op: 'write'; p: string; off: number; data: string }
  | { op: 'append'; p: string; data: string }
  | { op: 'truncate'; p: string; len: number }
  | { op: 'rename'; p: string; to: string }
  | { op: 'link'; p: string; to: string }
  | { op: 'symlink'; p: string; target: string }
  | { op: 'unlink'; p: string }
  | { op: 'rmdir'; p: string }
  | { op: 'mkdir'; p: string; mode: number }
  | { op: 'chmod'; p: string; mode: number }
  | { op: 'setxattr'; p: string; name: string; value: string }
  | { op: 'read'; p: string }
  | { op: 'readdir'; p: string }
  | { op: 'stat'; p: string };

/** Three lower layers (topmost first) derived from the seed. */
export function randomLayers(seed: number): Entry[][] {
  const r = rng(seed ^ 0x5eed);
  const layers: Entry[][] = [];
  for (let li = 0; li < 3; li++) {
    const entries: Entry[] = [];
    const fill = (dir: string): void => {
      for (const n of NAMES) {
        const p = dir ? `${dir}/${n}` : n;
        const x = r();
        const canDir = DIRSET.has(p);
        if (x < 0.3) {
          const e: Entry = { path: p, type: 'file', content: `L${li}:${p}:${Math.floor(r() * 1000)}\n`, mode: r() < 0.2 ? 0o600 : 0o644 };
          if (r() < 0.2) e.xattrs = { 'user.layer': `l${li}` };
          entries.push(e);
        } else if (x < 0.55 && canDir) {
          if (li < 2 && r() < 0.2) entries.push({ path: p, type: 'opaque', format: 'xattr' });
          else entries.push({ path: p, type: 'dir' });
          fill(p);
        } else if (x < 0.65 && li < 2) {
          entries.push({ path: p, type: 'whiteout', format: 'chardev' });
        } else if (x < 0.68) {
          entries.push({ path: p, type: 'symlink', target: NAMES[Math.floor(r() * NAMES.length)]! });
        }
      }
    };
    fill('');
    // a hard link pair in some layers
    const files = entries.filter((e) => e.type === 'file' && !e.path.includes('/'));
    if (files.length && r() < 0.7) {
      const src = files[0]!.path;
      const free = NAMES.find((n) => !entries.some((e) => e.path === n || e.path.startsWith(n + '/')));
      if (free) entries.push({ path: free, type: 'hardlink', target: src });
    }
    layers.push(entries);
  }
  return dropLowestWhiteouts(layers);
}

/**
 * Kernel quirk avoided on purpose: whiteouts in the lowest layer that contributes to a merged dir (e.g. inside a
 * dir that is opaque in the same layer) are not filtered from readdir by the kernel (they show up as entries whose
 * lookup fails with ENOENT). Real overlay uppers never contain such whiteouts, so the generator removes them.
 */
function dropLowestWhiteouts(layers: Entry[][]): Entry[][] {
  for (;;) {
    const kind = layers.map((l) => new Map(l.map((e) => [e.path, e.type === 'hardlink' ? 'file' : e.type])));
    // layers (indices, top first) merged into directory `dir`
    const layersOf = (dir: string): number[] => {
      if (dir === '') return layers.map((_, i) => i);
      const parent = dir.includes('/') ? dir.slice(0, dir.lastIndexOf('/')) : '';
      const out: number[] = [];
      for (const i of layersOf(parent)) {
        const k = kind[i]!.get(dir);
        if (k === undefined) continue;
        if (k !== 'dir' && k !== 'opaque') break;
        out.push(i);
        if (k === 'opaque') break;
      }
      return out;
    };
    let removed = false;
    layers = layers.map((l, i) =>
      l.filter((e) => {
        if (e.type !== 'whiteout') return true;
        const parent = e.path.includes('/') ? e.path.slice(0, e.path.lastIndexOf('/')) : '';
        const ls = layersOf(parent);
        const keep = !ls.includes(i) || ls[ls.length - 1] !== i;
        if (!keep) removed = true;
        return keep;
      }),
    );
    if (!removed) return layers;
  }
}

export function randomOps(seed: number, n: number): Op[] {
  const r = rng(seed);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
  const any = () => pick(UNIVERSE);
  const data = () => crypto.createHash('md5').update(String(r())).digest('hex').slice(0, 1 + Math.floor(r() * 24));
  const weights: Array<[number, () => Op]> = [
    [12, () => ({ op: 'create', p: any(), data: data() })],
    [8, () => ({ op: 'write', p: any(), off: Math.floor(r() * 40), data: data() })],
    [5, () => ({ op: 'append', p: any(), data: data() })],
    [7, () => ({ op: 'truncate', p: any(), len: Math.floor(r() * 50) })],
    [12, () => ({ op: 'rename', p: any(), to: any() })],
    [6, () => ({ op: 'link', p: any(), to: any() })],
    [3, () => ({ op: 'symlink', p: any(), target: pick(NAMES) })],
    [10, () => ({ op: 'unlink', p: any() })],
    [7, () => ({ op: 'rmdir', p: any() })],
    [10, () => ({ op: 'mkdir', p: any(), mode: pick([0o755, 0o700, 0o775]) })],
    [6, () => ({ op: 'chmod', p: any(), mode: pick([0o600, 0o644, 0o755, 0o640, 0o700]) })],
    [5, () => ({ op: 'setxattr', p: any(), name: pick(['user.a', 'user.b', 'user.layer']), value: data() })],
    [3, () => ({ op: 'read', p: any() })],
    [3, () => ({ op: 'readdir', p: pick(['', ...DIRS.slice(1), ...UNIVERSE]) })],
    [3, () => ({ op: 'stat', p: any() })],
  ];
  const total = weights.reduce((s, [w]) => s + w, 0);
  const ops: Op[] = [];
  for (let i = 0; i < n; i++) {
    let x = r() * total;
    for (const [w, f] of weights) {
      if ((x -= w) < 0) {
        ops.push(f());
        break;
      }
    }
  }
  return ops;
}

function errCode(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? String(e);
}

/** Apply one op below mount `mnt`; returns a comparable result string. */
export function applyOp(mnt: string, op: Op): string {
  const P = (p: string) => path.join(mnt, p);
  try {
    switch (op.op) {
      case 'create': {
        const fd = fs.openSync(P(op.p), 'w', 0o644);
        fs.writeSync(fd, op.data);
        fs.closeSync(fd);
        return 'ok';
      }
      case 'write': {
        const fd = fs.openSync(P(op.p), 'r+');
        try {
          fs.writeSync(fd, op.data, op.off);
        } finally {
          fs.closeSync(fd);
        }
        return 'ok';
      }
      case 'append':
        fs.appendFileSync(P(op.p), op.data);
        return 'ok';
      case 'truncate':
        fs.truncateSync(P(op.p), op.len);
        return 'ok';
      case 'rename':
        fs.renameSync(P(op.p), P(op.to));
        return 'ok';
      case 'link':
        fs.linkSync(P(op.p), P(op.to));
        return 'ok';
      case 'symlink':
        fs.symlinkSync(op.target, P(op.p));
        return 'ok';
      case 'unlink':
        fs.unlinkSync(P(op.p));
        return 'ok';
      case 'rmdir':
        fs.rmdirSync(P(op.p));
        return 'ok';
      case 'mkdir':
        fs.mkdirSync(P(op.p), op.mode);
        return 'ok';
      case 'chmod':
        fs.chmodSync(P(op.p), op.mode);
        return 'ok';
      case 'setxattr': {
        const r = run('setfattr', ['-h', '-n', op.name, '-v', op.value, P(op.p)]);
        if (r.status === 0) return 'ok';
        const m = /: ([^:]+)$/.exec(r.stderr.trim());
        return `setfattr:${m ? m[1] : r.stderr.trim()}`;
      }
      case 'read':
        return 'ok:' + crypto.createHash('sha256').update(fs.readFileSync(P(op.p))).digest('hex').slice(0, 16);
      case 'readdir':
        return 'ok:' + fs.readdirSync(P(op.p)).sort().join(',');
      case 'stat': {
        const st = fs.lstatSync(P(op.p));
        const type = st.isFile() ? 'f' : st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : 'o';
        return `ok:${type}:${(st.mode & 0o7777).toString(8)}:${type === 'd' ? '' : st.size + ':' + st.nlink}`;
      }
    }
  } catch (e) {
    return errCode(e);
  }
}

export function isDir(p: string): boolean {
  try {
    return fs.lstatSync(p).isDirectory();
  } catch {
    return false;
  }
}
