// Streaming tar reader: pulls bytes from a (possibly gzip-compressed) source, hashes every uncompressed
// byte (diffId), and yields entries with pax / GNU long-name headers already applied.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { Readable, pipeline } from 'node:stream';
import * as zlib from 'node:zlib';
import { CorruptArchiveError, UnsupportedArchiveError } from './errors';
import * as T from './tar-format';

export type EntryType = 'file' | 'dir' | 'symlink' | 'link' | 'char' | 'block' | 'fifo';

/** What every tar entry and every file carries, whichever way it is going. */
export interface EntryAttrs {
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  mtimeSec: number;
  mtimeNsec: number;
}

export interface TarEntry {
  /** Member name as stored (UTF-8), not normalized. */
  name: string;
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  /** Content bytes that follow the header (0 for non-files). */
  size: number;
  mtimeSec: number;
  mtimeNsec: number;
  /** Link target (symlinks: raw bytes; hard links: a member name). */
  linkname: Buffer;
  devmajor: number;
  devminor: number;
  /** SCHILY.xattr.* records, name -> raw value. */
  xattrs: Map<string, Buffer>;
  /** Offset of the entry's header in the uncompressed stream. */
  offset: number;
}

const MAX_META_SIZE = 16 * 1024 * 1024;
const utf8 = new TextDecoder('utf-8', { fatal: true });

function isZlibError(e: unknown): e is NodeJS.ErrnoException {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' && code.startsWith('Z_');
}

/** Byte source over an async iterator of chunks; hashes and counts everything it pulls. */
class ByteSource {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private eof = false;
  readonly hash = crypto.createHash('sha256');
  /** Bytes handed to the consumer so far (offset of the next byte). */
  consumed = 0;
  /** Bytes pulled from the source so far. */
  total = 0;

  constructor(private readonly it: AsyncIterator<Buffer | Uint8Array | string>) {}

  private async fill(): Promise<boolean> {
    if (this.eof) return false;
    let r: IteratorResult<Buffer | Uint8Array | string>;
    try {
      r = await this.it.next();
    } catch (e) {
      if (isZlibError(e)) throw new CorruptArchiveError(`invalid gzip data: ${(e as Error).message}`, this.total);
      throw e;
    }
    if (r.done) {
      this.eof = true;
      return false;
    }
    const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
    if (b.length > 0) {
      this.hash.update(b);
      this.total += b.length;
      this.chunks.push(b);
      this.buffered += b.length;
    }
    return true;
  }

  /** Exactly n bytes; null on a clean EOF (nothing at all left); throws on a partial read. */
  async read(n: number, what: string): Promise<Buffer | null> {
    while (this.buffered < n) {
      if (!(await this.fill())) {
        if (this.buffered === 0) return null;
        throw new CorruptArchiveError(`unexpected end of data in ${what} (archive truncated?)`, this.consumed);
      }
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0];
      const take = Math.min(c.length, n - off);
      c.copy(out, off, 0, take);
      off += take;
      if (take === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(take);
    }
    this.buffered -= n;
    this.consumed += n;
    return out;
  }

  /** Between 1 and max bytes (max > 0); throws at EOF. */
  async chunk(max: number, what: string): Promise<Buffer> {
    while (this.buffered === 0) {
      if (!(await this.fill())) {
        throw new CorruptArchiveError(`unexpected end of data in ${what} (archive truncated?)`, this.consumed);
      }
    }
    const c = this.chunks[0];
    const take = Math.min(c.length, max);
    if (take === c.length) this.chunks.shift();
    else this.chunks[0] = c.subarray(take);
    this.buffered -= take;
    this.consumed += take;
    return take === c.length ? c : c.subarray(0, take);
  }

  async skip(n: number, what: string): Promise<void> {
    while (n > 0) n -= (await this.chunk(n, what)).length;
  }

  /** Pulls (and hashes) everything left. */
  async drain(): Promise<void> {
    this.chunks = [];
    this.buffered = 0;
    while (await this.fill()) {
      this.chunks = [];
      this.buffered = 0;
    }
  }

  async close(): Promise<void> {
    if (!this.eof && this.it.return) {
      this.eof = true;
      await this.it.return().catch(() => undefined);
    }
  }
}

/** Opens a path or stream; transparently gunzips when the data starts with the gzip magic 1f 8b. */
async function openSource(input: Readable | string): Promise<{ it: AsyncIterator<Buffer>; close: () => void }> {
  const raw: Readable = typeof input === 'string' ? fs.createReadStream(input) : input;
  const rawIt = raw[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const head: Buffer[] = [];
  let headLen = 0;
  let rawDone = false;
  while (headLen < 2) {
    const r = await rawIt.next();
    if (r.done) {
      rawDone = true;
      break;
    }
    const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    head.push(b);
    headLen += b.length;
  }
  const first = Buffer.concat(head);
  async function* replay(): AsyncGenerator<Buffer> {
    if (first.length) yield first;
    if (rawDone) return;
    for (;;) {
      const r = await rawIt.next();
      if (r.done) return;
      yield Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    }
  }
  const close = (): void => {
    raw.destroy();
  };
  if (first.length >= 2 && first[0] === 0x1f && first[1] === 0x8b) {
    const gunzip = zlib.createGunzip();
    pipeline(Readable.from(replay(), { objectMode: false }), gunzip, () => undefined);
    return {
      it: gunzip[Symbol.asyncIterator]() as AsyncIterator<Buffer>,
      close: () => {
        gunzip.destroy();
        close();
      },
    };
  }
  return { it: replay(), close };
}

function decodeName(b: Buffer, what: string, at: number): string {
  try {
    return utf8.decode(b);
  } catch {
    throw new UnsupportedArchiveError(b.toString('latin1'), `${what} is not valid UTF-8 (at byte ${at})`);
  }
}

function paxInt(v: Buffer, key: string, at: number): number {
  const s = v.toString('latin1');
  if (!/^[0-9]+$/.test(s) || !Number.isSafeInteger(Number(s))) {
    throw new CorruptArchiveError(`invalid pax ${key} (not a decimal number)`, at);
  }
  return Number(s);
}

export class TarReader {
  private pendingContent = 0;
  private pendingPad = 0;
  private ended = false;
  private globalPax = new Map<string, Buffer>();

  private constructor(
    private readonly src: ByteSource,
    private readonly closeInput: () => void,
  ) {}

  static async open(input: Readable | string): Promise<TarReader> {
    const { it, close } = await openSource(input);
    return new TarReader(new ByteSource(it), close);
  }

  /** Skips what is left of the current entry and decodes the next one; null at the end-of-archive marker. */
  async next(): Promise<TarEntry | null> {
    if (this.ended) return null;
    await this.skipRest();
    let pax: Map<string, Buffer> | null = null;
    let longName: Buffer | null = null;
    let longLink: Buffer | null = null;
    for (;;) {
      const at = this.src.consumed;
      const block = await this.src.read(T.BLOCK, 'header');
      if (block === null) {
        throw new CorruptArchiveError('unexpected end of archive: no end-of-archive marker (archive truncated?)', at);
      }
      const h = T.decodeHeader(block, at);
      if (h === null) {
        if (pax || longName || longLink) throw new CorruptArchiveError('extended header not followed by an entry', at);
        this.ended = true;
        await this.src.drain();
        return null;
      }
      const tf = h.typeflag;
      if (tf === T.TYPE_PAX || tf === T.TYPE_PAX_GLOBAL || tf === T.TYPE_GNU_LONGNAME || tf === T.TYPE_GNU_LONGLINK) {
        if (h.size > MAX_META_SIZE) throw new CorruptArchiveError(`extended header too large (${h.size} bytes)`, at);
        const data = (await this.src.read(h.size, 'extended header')) ?? Buffer.alloc(0);
        if (data.length < h.size) throw new CorruptArchiveError('unexpected end of data in extended header', at);
        await this.src.skip(T.padding(h.size), 'extended header padding');
        if (tf === T.TYPE_PAX) pax = T.decodePax(data, at);
        else if (tf === T.TYPE_PAX_GLOBAL) for (const [k, v] of T.decodePax(data, at)) this.globalPax.set(k, v);
        else {
          const nul = data.indexOf(0);
          const v = Buffer.from(nul === -1 ? data : data.subarray(0, nul));
          if (tf === T.TYPE_GNU_LONGNAME) longName = v;
          else longLink = v;
        }
        continue;
      }
      return this.finishEntry(h, at, pax, longName, longLink);
    }
  }

  private finishEntry(h: T.RawHeader, at: number, localPax: Map<string, Buffer> | null, longName: Buffer | null, longLink: Buffer | null): TarEntry {
    const pax = new Map(this.globalPax);
    if (localPax) for (const [k, v] of localPax) pax.set(k, v);
    let nameBuf = longName ?? h.name;
    let linkBuf = longLink ?? h.linkname;
    let size = h.size;
    let uid = h.uid;
    let gid = h.gid;
    let mtimeSec = h.mtime;
    let mtimeNsec = 0;
    const xattrs = new Map<string, Buffer>();
    for (const [k, v] of pax) {
      if (k === 'path') nameBuf = v;
      else if (k === 'linkpath') linkBuf = v;
      else if (k === 'size') size = paxInt(v, k, at);
      else if (k === 'uid') uid = paxInt(v, k, at);
      else if (k === 'gid') gid = paxInt(v, k, at);
      else if (k === 'mtime') ({ sec: mtimeSec, nsec: mtimeNsec } = T.parsePaxTime(v.toString('latin1'), at));
      else if (k.startsWith('SCHILY.xattr.')) xattrs.set(k.slice('SCHILY.xattr.'.length), v);
      else if (k.startsWith('GNU.sparse.')) {
        throw new UnsupportedArchiveError(nameBuf.toString('utf8'), 'GNU sparse files are not supported');
      }
    }
    const name = decodeName(nameBuf, 'member name', at);
    let type: EntryType;
    switch (h.typeflag) {
      case T.TYPE_FILE:
      case T.TYPE_FILE_OLD:
      case T.TYPE_CONTIGUOUS:
        type = name.endsWith('/') ? 'dir' : 'file';
        break;
      case T.TYPE_LINK:
        type = 'link';
        break;
      case T.TYPE_SYMLINK:
        type = 'symlink';
        break;
      case T.TYPE_CHAR:
        type = 'char';
        break;
      case T.TYPE_BLOCK:
        type = 'block';
        break;
      case T.TYPE_DIR:
        type = 'dir';
        break;
      case T.TYPE_FIFO:
        type = 'fifo';
        break;
      default: {
        const c = String.fromCharCode(h.typeflag);
        throw new UnsupportedArchiveError(name, `entry type '${c}' (${c === 'S' ? 'GNU sparse file' : 'unknown'}) is not supported`);
      }
    }
    if (type === 'link') decodeName(linkBuf, 'hard link target', at);
    this.pendingContent = size;
    this.pendingPad = T.padding(size);
    return {
      name,
      type,
      mode: h.mode & 0o7777,
      uid,
      gid,
      size: type === 'file' ? size : 0,
      mtimeSec,
      mtimeNsec,
      linkname: linkBuf,
      devmajor: h.devmajor,
      devminor: h.devminor,
      xattrs,
      offset: at,
    };
  }

  /** The current entry's content, in chunks of at most `max` bytes. */
  async *content(max = 1 << 20): AsyncGenerator<Buffer> {
    while (this.pendingContent > 0) {
      const c = await this.src.chunk(Math.min(max, this.pendingContent), 'file content');
      this.pendingContent -= c.length;
      yield c;
    }
  }

  private async skipRest(): Promise<void> {
    await this.src.skip(this.pendingContent + this.pendingPad, 'file content');
    this.pendingContent = 0;
    this.pendingPad = 0;
  }

  /** Call after next() returned null: the sha256 (hex) and length of the whole uncompressed stream. */
  digest(): { sha256: string; bytes: number } {
    return { sha256: this.src.hash.digest('hex'), bytes: this.src.total };
  }

  /** Releases the input (destroys the stream we read from). Safe to call twice. */
  async close(): Promise<void> {
    await this.src.close();
    this.closeInput();
  }
}
