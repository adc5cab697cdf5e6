// Declarative layer builder: the same spec is materialised twice (kernel stack and strata stack).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runOk } from './exec';

/** Fixed timestamp given to every entry of freshly built layers (ns precision on purpose). */
export const FIXED_TIME = '1600000000.123456789';
export const FIXED_TIME_NS = 1600000000123456789n;

interface Common {
  path: string;
  mode?: number;
  uid?: number;
  gid?: number;
  /** xattrs, values as utf8 strings or Buffers */
  xattrs?: Record<string, string | Buffer>;
}
export type Entry =
  | (Common & { type: 'file'; content?: string | Buffer; /** make sparse file of this size; content written at offset 0 */ size?: number; /** extra data written at given offsets */ chunks?: Array<[number, string]> })
  | (Common & { type: 'dir' })
  | (Common & { type: 'symlink'; target: string })
  | (Common & { type: 'hardlink'; target: string })
  | (Common & { type: 'fifo' })
  | (Common & { type: 'chardev'; major: number; minor: number })
  /** whiteout formats: kernel char 0/0, kernel >= 6.7 xattr whiteout (parent gets opaque=x), OCI .wh.<name> */
  | { path: string; type: 'whiteout'; format?: 'chardev' | 'xattr' | 'oci' }
  /** mark an (already listed or implied) directory opaque: trusted.overlay.opaque=y or OCI .wh..wh..opq */
  | { path: string; type: 'opaque'; format?: 'xattr' | 'oci' }
  /** trusted.overlay.redirect on a directory (upper layers written by an overlay) */
  | { path: string; type: 'redirect'; target: string };

function enc(v: string | Buffer): string {
  return '0x' + (typeof v === 'string' ? Buffer.from(v, 'utf8') : v).toString('hex');
}

function escapeName(p: string): string {
  // getfattr/setfattr --restore escape format: octal for unusual chars
  return p.replace(/[^\x21-\x7e]|\\/g, (c) => '\\' + c.charCodeAt(0).toString(8).padStart(3, '0'));
}

/** Materialise `entries` below `dir` (created if needed). Parents are created implicitly as 0755 dirs. */
export function buildLayer(dir: string, entries: Entry[], opts: { fixTimes?: boolean } = {}): void {
  fs.mkdirSync(dir, { recursive: true });
  const xattrs: Array<[string, string, string]> = [];
  const nodes: string[] = [];
  const owners: Array<[string, number, number]> = [];
  const modes: Array<[string, number]> = [];
  for (const e of entries) {
    const p = path.join(dir, e.path);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    switch (e.type) {
      case 'file': {
        const content = e.content ?? '';
        fs.writeFileSync(p, content);
        if (e.size !== undefined) fs.truncateSync(p, e.size);
        if (e.chunks) {
          const fd = fs.openSync(p, 'r+');
          for (const [off, data] of e.chunks) fs.writeSync(fd, data, off);
          fs.closeSync(fd);
        }
        break;
      }
      case 'dir':
        fs.mkdirSync(p, { recursive: true });
        break;
      case 'symlink':
        fs.symlinkSync(e.target, p);
        break;
      case 'hardlink':
        fs.linkSync(path.join(dir, e.target), p);
        break;
      case 'fifo':
        nodes.push(`mkfifo ${shq(p)}`);
        break;
      case 'chardev':
        nodes.push(`mknod ${shq(p)} c ${e.major} ${e.minor}`);
        break;
      case 'whiteout': {
        const fmt = e.format ?? 'chardev';
        if (fmt === 'chardev') nodes.push(`mknod -m 000 ${shq(p)} c 0 0`);
        else if (fmt === 'xattr') {
          fs.writeFileSync(p, '');
          xattrs.push([p, 'trusted.overlay.whiteout', enc('y')]);
          xattrs.push([path.dirname(p), 'trusted.overlay.opaque', enc('x')]);
        } else {
          fs.writeFileSync(path.join(path.dirname(p), '.wh.' + path.basename(p)), '');
        }
        break;
      }
      case 'opaque': {
        fs.mkdirSync(p, { recursive: true });
        if ((e.format ?? 'xattr') === 'xattr') xattrs.push([p, 'trusted.overlay.opaque', enc('y')]);
        else fs.writeFileSync(path.join(p, '.wh..wh..opq'), '');
        break;
      }
      case 'redirect':
        fs.mkdirSync(p, { recursive: true });
        xattrs.push([p, 'trusted.overlay.redirect', enc(e.target)]);
        break;
    }
    if (e.type !== 'whiteout' && e.type !== 'opaque' && e.type !== 'redirect') {
      if (e.xattrs) for (const [k, v] of Object.entries(e.xattrs)) xattrs.push([p, k, enc(v)]);
      if (e.uid !== undefined || e.gid !== undefined) owners.push([p, e.uid ?? 0, e.gid ?? 0]);
      if (e.mode !== undefined) modes.push([p, e.mode]);
    }
  }
  if (nodes.length) runOk('sh', ['-ec', nodes.join('\n')]);
  for (const [p, u, g] of owners) fs.lchownSync(p, u, g);
  for (const [p, m] of modes) fs.chmodSync(p, m);
  if (xattrs.length) {
    // one setfattr call for the whole layer; -h so symlinks get their own xattrs (trusted.* only)
    const dump = xattrs.map(([p, k, v]) => `# file: ${escapeName(p)}\n${k}=${v}\n`).join('\n');
    runOk('setfattr', ['-h', '--restore=-'], { input: dump });
  }
  if (opts.fixTimes !== false) fixTimes(dir);
}

/** Give every entry below (and including) dir the FIXED_TIME atime/mtime, children before parents. */
export function fixTimes(dir: string): void {
  runOk('find', [dir, '-depth', '-exec', 'touch', '-h', '-d', `@${FIXED_TIME}`, '{}', '+']);
}

export function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export interface StackDirs {
  root: string;
  lowers: string[];
  upper: string;
  work: string;
  mnt: string;
}

/** Build a stack layout below root: l0..lN (l0 topmost), upper, work, mnt. */
export function buildStack(root: string, lowers: Entry[][], upper: Entry[] = []): StackDirs {
  const dirs: StackDirs = {
    root,
    lowers: lowers.map((_, i) => path.join(root, `l${i}`)),
    upper: path.join(root, 'upper'),
    work: path.join(root, 'work'),
    mnt: path.join(root, 'mnt'),
  };
  lowers.forEach((entries, i) => buildLayer(dirs.lowers[i]!, entries));
  buildLayer(dirs.upper, upper);
  fs.mkdirSync(dirs.work, { recursive: true });
  fs.mkdirSync(dirs.mnt, { recursive: true });
  return dirs;
}
