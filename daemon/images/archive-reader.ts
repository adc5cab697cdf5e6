// Reading the outer archive of `image load` (an OCI layout or docker-archive tar, plain or gzip):
// entries are never extracted by their own names. Small members stay in memory, the rest are
// copied to a private temp dir under names we choose (f0, f1, ...); links are resolved lexically
// inside the archive's own namespace. sha256 of every member is computed while reading.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { CorruptArchiveError } from '../archive';
import { TarReader } from '../archive/tar-reader';
import { jsonErrorWhere } from '../util/json-error';

const IN_MEMORY = 64 * 1024;
const MAX_JSON = 16 * 1024 * 1024;

interface Member {
  size: number;
  sha256: string;
  data?: Buffer;
  file?: string;
}

type Link = { link: string };

export class OuterArchive {
  private readonly members = new Map<string, Member | Link>();

  private constructor(readonly tmp: string) {}

  /** Reads the whole archive `input`; blobs land in `tmp` (which the caller removes). */
  static async read(input: Readable, tmp: string): Promise<OuterArchive> {
    const a = new OuterArchive(tmp);
    const reader = await TarReader.open(input);
    let n = 0;
    try {
      for (;;) {
        const e = await reader.next();
        if (e === null) break;
        const name = normalize(e.name);
        if (name === null) throw new CorruptArchiveError(`member '${e.name}' escapes the archive`, e.offset);
        if (name === '') continue;
        switch (e.type) {
          case 'file': {
            const h = createHash('sha256');
            if (e.size <= IN_MEMORY) {
              const chunks: Buffer[] = [];
              for await (const c of reader.content()) {
                h.update(c);
                chunks.push(c);
              }
              a.members.set(name, { size: e.size, sha256: h.digest('hex'), data: Buffer.concat(chunks) });
            } else {
              const file = path.join(tmp, `f${n++}`);
              const fh = await fs.promises.open(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
              try {
                for await (const c of reader.content()) {
                  h.update(c);
                  let off = 0;
                  while (off < c.length) off += (await fh.write(c, off, c.length - off)).bytesWritten;
                }
              } finally {
                await fh.close();
              }
              a.members.set(name, { size: e.size, sha256: h.digest('hex'), file });
            }
            break;
          }
          case 'symlink': {
            const target = e.linkname.toString('utf8');
            const resolved = normalize(target.startsWith('/') ? target : path.posix.join(path.posix.dirname(name), target));
            if (resolved === null) throw new CorruptArchiveError(`symlink '${e.name}' points outside the archive`, e.offset);
            a.members.set(name, { link: resolved });
            break;
          }
          case 'link': {
            const resolved = normalize(e.linkname.toString('utf8'));
            if (resolved === null) throw new CorruptArchiveError(`hard link '${e.name}' points outside the archive`, e.offset);
            a.members.set(name, { link: resolved });
            break;
          }
          default:
            // directories and anything else carry nothing we need
            break;
        }
      }
    } finally {
      await reader.close();
    }
    return a;
  }

  private lookup(name: string): Member | undefined {
    let cur = normalize(name);
    for (let i = 0; i < 16 && cur !== null; i++) {
      const m = this.members.get(cur);
      if (m === undefined) return undefined;
      if (!('link' in m)) return m;
      cur = m.link;
    }
    return undefined;
  }

  has(name: string): boolean {
    return this.lookup(name) !== undefined;
  }

  private need(name: string, what: string): Member {
    const m = this.lookup(name);
    if (m === undefined) throw new CorruptArchiveError(`${what} '${name}' is missing from the archive`);
    return m;
  }

  info(name: string, what: string): { size: number; sha256: string } {
    const m = this.need(name, what);
    return { size: m.size, sha256: m.sha256 };
  }

  /** A member's bytes (for JSON documents; refuses huge ones). */
  bytes(name: string, what: string): Buffer {
    const m = this.need(name, what);
    if (m.data !== undefined) return m.data;
    if (m.size > MAX_JSON) throw new CorruptArchiveError(`${what} '${name}' is too large (${m.size} bytes)`);
    return fs.readFileSync(m.file!);
  }

  json(name: string, what: string): unknown {
    const b = this.bytes(name, what);
    try {
      return JSON.parse(b.toString('utf8'));
    } catch (err) {
      throw new CorruptArchiveError(`${what} '${name}' is not valid JSON: syntax error${jsonErrorWhere(err)}`);
    }
  }

  /** A fresh stream of a member's bytes. */
  stream(name: string, what: string): Readable {
    const m = this.need(name, what);
    return m.data !== undefined ? Readable.from([m.data]) : fs.createReadStream(m.file!);
  }

  /** The temp file holding a member, if it was spilled to disk (so it can be moved instead of copied). */
  file(name: string): string | undefined {
    return this.lookup(name)?.file;
  }
}

/** Lexical normalization of a member name: "" for the root, null when it climbs out with "..". */
export function normalize(name: string): string | null {
  const out: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (out.length === 0) return null;
      out.pop();
    } else out.push(c);
  }
  return out.join('/');
}
