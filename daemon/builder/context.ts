// The build context: .dockerignore, COPY/ADD source globs, content checksums for the
// cache, and copying into a container root without following its symlinks out of it.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DockerfileError } from './dockerfile';

/** A glob (`*`, `?`, `[...]`, `**`) as an anchored regex over '/'-separated relative paths. */
export function globRegex(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        // "**/" matches zero or more directories; a trailing "**" anything.
        if (pattern[i + 2] === '/') {
          re += '(?:.*/)?';
          i += 2;
        } else {
          re += '.*';
          i += 1;
        }
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const close = pattern.indexOf(']', i + 1);
      if (close < 0) re += '\\[';
      else {
        let cls = pattern.slice(i + 1, close).replace(/\\/g, '\\\\');
        if (cls.startsWith('!') || cls.startsWith('^')) cls = '^' + cls.slice(1);
        re += `[${cls}]`;
        i = close;
      }
    } else if (c === '\\' && i + 1 < pattern.length) {
      re += '\\' + pattern[++i];
    } else re += c.replace(/[.+^${}()|\]\\/]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export function hasGlob(s: string): boolean {
  return /[*?[]/.test(s);
}

/** Lexically cleans a context-relative path ("" is the context root); refuses escapes. */
export function cleanRel(p: string, what: string): string {
  const n = path.posix.normalize('/' + p).slice(1).replace(/\/+$/, '');
  if (n.split('/').includes('..')) throw new DockerfileError(`${what}: forbidden path outside the build context: ${p}`);
  return n === '.' ? '' : n;
}

export class Ignore {
  private readonly rules: { re: RegExp; negate: boolean }[] = [];

  constructor(lines: string[]) {
    for (let l of lines) {
      l = l.trim();
      if (l === '' || l.startsWith('#')) continue;
      const negate = l.startsWith('!');
      if (negate) l = l.slice(1).trim();
      const p = path.posix.normalize('/' + l).slice(1).replace(/\/+$/, '');
      if (p === '' || p === '.') continue;
      this.rules.push({ re: globRegex(p), negate });
    }
  }

  static load(contextDir: string): Ignore {
    try {
      return new Ignore(fs.readFileSync(path.join(contextDir, '.dockerignore'), 'utf8').split('\n'));
    } catch {
      return new Ignore([]);
    }
  }

  /** Whether a context-relative path is excluded (a pattern matching a parent dir excludes it too). */
  ignored(rel: string): boolean {
    if (rel === '' || this.rules.length === 0) return false;
    const parts = rel.split('/');
    let out = false;
    for (const r of this.rules) {
      for (let k = 1; k <= parts.length; k++) {
        if (r.re.test(parts.slice(0, k).join('/'))) {
          out = !r.negate;
          break;
        }
      }
    }
    return out;
  }
}

/**
 * What of a context directory is sent to the daemon: every entry .dockerignore keeps (with the
 * directories leading to them), plus the Dockerfile and .dockerignore themselves (as docker sends).
 */
export function contextKeeper(contextDir: string, dockerfileRel: string): (rel: string) => boolean {
  const kept = new Set<string>(['.dockerignore', dockerfileRel]);
  for (const rel of walkContext(contextDir, Ignore.load(contextDir))) {
    for (let p = rel; p !== '' && !kept.has(p); p = p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '') kept.add(p);
  }
  for (let p = dockerfileRel; p.includes('/'); ) {
    p = p.slice(0, p.lastIndexOf('/'));
    kept.add(p);
  }
  return (rel) => kept.has(rel);
}

/** Every non-ignored entry of the context, relative paths, parents before children. */
function walkContext(contextDir: string, ignore: Ignore, rel = '', out: string[] = []): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(path.join(contextDir, rel)).sort();
  } catch {
    return out;
  }
  for (const n of names) {
    const r = rel ? `${rel}/${n}` : n;
    if (ignore.ignored(r)) {
      // An exception below an ignored directory can still bring entries back.
      if (fs.lstatSync(path.join(contextDir, r)).isDirectory()) walkContext(contextDir, ignore, r, out);
      continue;
    }
    out.push(r);
    if (fs.lstatSync(path.join(contextDir, r)).isDirectory()) walkContext(contextDir, ignore, r, out);
  }
  return out;
}

export interface Source {
  /** Context-relative path ("" = the whole context). */
  rel: string;
  abs: string;
  isDir: boolean;
}

/** Expands COPY/ADD sources (globs included) against the context. */
export function expandSources(contextDir: string, ignore: Ignore, patterns: string[], keyword: string): Source[] {
  const out: Source[] = [];
  let all: string[] | undefined;
  for (const p of patterns) {
    const rel = cleanRel(p, keyword);
    let matches: string[];
    if (hasGlob(rel)) {
      all ??= walkContext(contextDir, ignore);
      const re = globRegex(rel);
      matches = all.filter((r) => re.test(r));
      if (matches.length === 0) throw new DockerfileError(`${keyword} failed: no source files were specified: no files match ${p}`);
    } else {
      const abs = path.join(contextDir, rel);
      if (ignore.ignored(rel) || !fs.existsSync(abs)) {
        throw new DockerfileError(`${keyword} failed: file not found in build context or excluded by .dockerignore: stat ${p}: file does not exist`);
      }
      const real = fs.realpathSync(abs);
      const realCtx = fs.realpathSync(contextDir);
      if (real !== realCtx && !real.startsWith(realCtx + '/')) throw new DockerfileError(`${keyword} failed: forbidden path outside the build context: ${p} (a symlink leads out of it)`);
      matches = [rel];
    }
    for (const r of matches) {
      const abs = path.join(contextDir, r);
      out.push({ rel: r, abs, isDir: fs.statSync(abs).isDirectory() });
    }
  }
  return out;
}

/** The entries below a source directory that are not ignored (relative to the source). */
function sourceEntries(contextDir: string, ignore: Ignore, src: Source): string[] {
  if (!src.isDir) return [];
  const prefix = src.rel === '' ? '' : src.rel + '/';
  return walkContext(contextDir, ignore, src.rel).map((r) => r.slice(prefix.length));
}

/** sha256 over the sources' names, types, modes, contents and link targets (never mtimes). */
export function checksumSources(contextDir: string, ignore: Ignore, sources: Source[]): string {
  const h = createHash('sha256');
  const addEntry = (name: string, abs: string) => {
    const st = fs.lstatSync(abs);
    h.update(`${name}\0${st.mode.toString(8)}\0`);
    if (st.isSymbolicLink()) h.update(`link:${fs.readlinkSync(abs)}\0`);
    else if (st.isFile()) h.update(`file:${st.size}:`).update(fs.readFileSync(abs)).update('\0');
    else h.update('\0');
  };
  for (const s of sources) {
    h.update(`src:${s.rel}\0`);
    addEntry('.', fs.statSync(s.abs).isDirectory() ? s.abs : s.abs);
    for (const e of sourceEntries(contextDir, ignore, s)) addEntry(e, path.join(s.abs, e));
  }
  return h.digest('hex');
}

/** Bytes of regular-file content in the sources (what COPY/ADD copies; the total of its progress). */
export function sourcesSize(contextDir: string, ignore: Ignore, sources: Source[]): number {
  let total = 0;
  const add = (abs: string) => {
    const st = fs.lstatSync(abs);
    if (st.isFile()) total += st.size;
  };
  for (const s of sources) {
    add(s.abs);
    for (const e of sourceEntries(contextDir, ignore, s)) add(path.join(s.abs, e));
  }
  return total;
}

/**
 * The host path of `p` inside `root`, with every symlink on the way resolved as it would be
 * inside the container (absolute targets stay under `root`). The last component is resolved
 * too unless `followLast` is false. Missing components are kept as they are.
 */
export function resolveInRoot(root: string, p: string, followLast = true): string {
  const parts = path.posix.normalize('/' + p).split('/').filter(Boolean);
  const resolved: string[] = [];
  let hops = 0;
  while (parts.length > 0) {
    const part = parts.shift()!;
    if (part === '.' || part === '') continue;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const host = path.join(root, ...resolved, part);
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(host);
    } catch {
      st = undefined;
    }
    if (st?.isSymbolicLink() && (followLast || parts.length > 0)) {
      if (++hops > 40) throw new DockerfileError(`too many levels of symbolic links at ${p}`);
      const target = fs.readlinkSync(host);
      if (target.startsWith('/')) resolved.length = 0;
      parts.unshift(...target.split('/').filter(Boolean));
      continue;
    }
    resolved.push(part);
  }
  return path.join(root, ...resolved);
}

export interface Owner {
  uid: number;
  gid: number;
}

/** mkdir -p inside the root; new directories get mode 0755 and `owner`. */
export function mkdirInRoot(root: string, dir: string, owner: Owner | null): string {
  const parts = path.posix.normalize('/' + dir).split('/').filter(Boolean);
  let cur = '/';
  for (const part of parts) {
    cur = path.posix.join(cur, part);
    const host = resolveInRoot(root, cur);
    if (!fs.existsSync(host)) {
      fs.mkdirSync(host, { mode: 0o755 });
      fs.chmodSync(host, 0o755);
      if (owner) fs.lchownSync(host, owner.uid, owner.gid);
    } else if (!fs.statSync(host).isDirectory()) {
      throw new DockerfileError(`cannot create directory ${cur}: a file of that name exists in the image`);
    }
  }
  return resolveInRoot(root, dir);
}

/** Copies one entry (not recursing) from the host to a host path inside the root. */
function copyEntry(srcAbs: string, dst: string, owner: Owner | null): void {
  const st = fs.lstatSync(srcAbs);
  let existing: fs.Stats | undefined;
  try {
    existing = fs.lstatSync(dst);
  } catch {
    existing = undefined;
  }
  if (st.isDirectory()) {
    if (existing && !existing.isDirectory()) fs.rmSync(dst, { force: true });
    if (!existing || !existing.isDirectory()) fs.mkdirSync(dst);
  } else {
    if (existing?.isDirectory()) throw new DockerfileError(`cannot replace directory ${dst} with a file`);
    if (existing) fs.rmSync(dst, { force: true });
    if (st.isSymbolicLink()) fs.symlinkSync(fs.readlinkSync(srcAbs), dst);
    else if (st.isFile()) fs.copyFileSync(srcAbs, dst);
    else return; // devices, fifos, sockets: not copied
  }
  const uid = owner ? owner.uid : st.uid;
  const gid = owner ? owner.gid : st.gid;
  fs.lchownSync(dst, uid, gid);
  if (!st.isSymbolicLink()) {
    fs.chmodSync(dst, st.mode & 0o7777);
    fs.utimesSync(dst, st.atime, st.mtime);
  }
}

/**
 * Copies a source tree (directory contents, or one file) to `destPath` inside the root.
 * `owner` null keeps the source owners (ADD of an archive); COPY passes root or --chown.
 */
export function copyTree(root: string, srcAbs: string, entries: string[] | null, destPath: string, owner: Owner | null, onBytes?: (n: number) => void): void {
  const st = fs.lstatSync(srcAbs);
  if (!st.isDirectory()) {
    const dst = resolveInRoot(root, destPath, false);
    copyEntry(srcAbs, dst, owner);
    if (st.isFile()) onBytes?.(st.size);
    return;
  }
  mkdirInRoot(root, destPath, owner);
  const list = entries ?? listTree(srcAbs);
  const dirTimes: [string, fs.Stats][] = [];
  for (const e of list) {
    const from = path.join(srcAbs, e);
    const to = resolveInRoot(root, path.posix.join(destPath, e), false);
    copyEntry(from, to, owner);
    const est = fs.lstatSync(from);
    if (est.isDirectory()) dirTimes.push([to, est]);
    else if (est.isFile()) onBytes?.(est.size);
  }
  for (const [d, s] of dirTimes.reverse()) fs.utimesSync(d, s.atime, s.mtime);
}

export function listTree(dir: string, rel = '', out: string[] = []): string[] {
  for (const n of fs.readdirSync(path.join(dir, rel)).sort()) {
    const r = rel ? `${rel}/${n}` : n;
    out.push(r);
    if (fs.lstatSync(path.join(dir, r)).isDirectory()) listTree(dir, r, out);
  }
  return out;
}

export { sourceEntries };
