// Deterministic tar writer (ustar headers + pax extended headers when a field does not fit, for
// nanosecond mtimes and for xattrs). Hashes exactly the bytes it emits; the output stream is optional.
import * as crypto from 'node:crypto';
import type { Writable } from 'node:stream';
import { ArchiveError } from './errors';
import * as T from './tar-format';
import type { EntryAttrs, EntryType } from './tar-reader';

export interface WriteEntry extends EntryAttrs {
  /** Relative member name, without a trailing slash (added for directories). */
  name: string;
  /** Content size (regular files only). */
  size: number;
  /** Symlink target or hard-link member name. */
  linkname?: Buffer;
  devmajor?: number;
  devminor?: number;
  /** Extended attributes to record as SCHILY.xattr.<name>. */
  xattrs?: Array<[string, Buffer]>;
}

const TYPEFLAG: Record<EntryType, number> = {
  file: T.TYPE_FILE,
  dir: T.TYPE_DIR,
  symlink: T.TYPE_SYMLINK,
  link: T.TYPE_LINK,
  char: T.TYPE_CHAR,
  block: T.TYPE_BLOCK,
  fifo: T.TYPE_FIFO,
};

const FLUSH_AT = 256 * 1024;
const EMPTY = Buffer.alloc(0);

export class TarWriter {
  private pending: Buffer[] = [];
  private pendingLen = 0;
  private readonly hash = crypto.createHash('sha256');
  private bytes = 0;
  private error: Error | null = null;
  private contentLeft = 0;
  private contentSize = 0;
  private currentName = '';

  constructor(private readonly out: Writable | null) {
    out?.on('error', (e: Error) => {
      this.error ??= e;
    });
  }

  private push(b: Buffer): void {
    this.hash.update(b);
    this.bytes += b.length;
    this.pending.push(b);
    this.pendingLen += b.length;
  }

  private async flush(): Promise<void> {
    if (this.error) throw this.error;
    if (this.pendingLen === 0) return;
    const data = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending, this.pendingLen);
    this.pending = [];
    this.pendingLen = 0;
    const out = this.out;
    if (!out) return;
    if (out.destroyed) throw this.error ?? new ArchiveError('output stream was closed while writing the archive');
    if (!out.write(data)) {
      await new Promise<void>((resolve, reject) => {
        const done = (err?: Error): void => {
          out.off('drain', onDrain);
          out.off('error', onError);
          out.off('close', onClose);
          if (err) reject(err);
          else resolve();
        };
        const onDrain = (): void => done();
        const onError = (e: Error): void => done(e);
        const onClose = (): void => done(this.error ?? new ArchiveError('output stream was closed while writing the archive'));
        out.on('drain', onDrain);
        out.on('error', onError);
        out.on('close', onClose);
      });
    }
  }

  private async maybeFlush(): Promise<void> {
    if (this.pendingLen >= FLUSH_AT) await this.flush();
  }

  async addEntry(e: WriteEntry): Promise<void> {
    if (this.contentLeft !== 0) throw new ArchiveError(`internal: content of '${this.currentName}' not fully written`);
    const name = Buffer.from(e.type === 'dir' ? e.name + '/' : e.name, 'utf8');
    const linkname = e.linkname ?? EMPTY;
    const size = e.type === 'file' ? e.size : 0;
    const pax: Array<[string, Buffer]> = [];
    if (name.length > 100) pax.push(['path', name]);
    if (linkname.length > 100) pax.push(['linkpath', linkname]);
    if (e.uid > T.MAX_OCTAL_7) pax.push(['uid', Buffer.from(String(e.uid))]);
    if (e.gid > T.MAX_OCTAL_7) pax.push(['gid', Buffer.from(String(e.gid))]);
    if (size > T.MAX_OCTAL_11) pax.push(['size', Buffer.from(String(size))]);
    const mtimeFits = e.mtimeSec >= 0 && e.mtimeSec <= T.MAX_OCTAL_11;
    if (e.mtimeNsec !== 0 || !mtimeFits) pax.push(['mtime', Buffer.from(T.formatPaxTime(e.mtimeSec, e.mtimeNsec))]);
    for (const [k, v] of e.xattrs ?? []) pax.push(['SCHILY.xattr.' + k, v]);
    if (pax.length > 0) {
      pax.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      const body = Buffer.concat(pax.map(([k, v]) => T.paxRecord(k, v)));
      const base = e.name.slice(e.name.lastIndexOf('/') + 1);
      this.push(
        T.encodeHeader({
          name: Buffer.from('PaxHeaders.0/' + base, 'utf8').subarray(0, 100),
          mode: 0o644,
          uid: 0,
          gid: 0,
          size: body.length,
          mtime: 0,
          typeflag: T.TYPE_PAX,
          linkname: EMPTY,
          devmajor: 0,
          devminor: 0,
        }),
      );
      this.push(body);
      this.push(Buffer.alloc(T.padding(body.length)));
    }
    this.push(
      T.encodeHeader({
        name: name.subarray(0, 100),
        mode: e.mode,
        uid: e.uid > T.MAX_OCTAL_7 ? 0 : e.uid,
        gid: e.gid > T.MAX_OCTAL_7 ? 0 : e.gid,
        size: size > T.MAX_OCTAL_11 ? 0 : size,
        mtime: mtimeFits ? e.mtimeSec : 0,
        typeflag: TYPEFLAG[e.type],
        linkname: linkname.subarray(0, 100),
        devmajor: e.devmajor ?? 0,
        devminor: e.devminor ?? 0,
      }),
    );
    this.contentLeft = size;
    this.contentSize = size;
    this.currentName = e.name;
    if (size === 0) await this.maybeFlush();
  }

  /** Appends content of the current file entry. */
  async write(chunk: Buffer): Promise<void> {
    if (chunk.length > this.contentLeft) throw new ArchiveError(`internal: too much content for '${this.currentName}'`);
    this.contentLeft -= chunk.length;
    this.push(chunk);
    if (this.contentLeft === 0) this.push(Buffer.alloc(T.padding(this.contentSize)));
    await this.maybeFlush();
  }

  /** Writes the end-of-archive marker, flushes, optionally ends `out`, and returns the digest of all bytes. */
  async finish(endOutput: boolean): Promise<{ sha256: string; bytes: number }> {
    if (this.contentLeft !== 0) throw new ArchiveError(`internal: content of '${this.currentName}' not fully written`);
    this.push(Buffer.alloc(2 * T.BLOCK));
    await this.flush();
    const out = this.out;
    if (out && endOutput) {
      await new Promise<void>((resolve, reject) => {
        out.once('error', reject);
        out.end(() => resolve());
      });
      if (this.error) throw this.error;
    }
    return { sha256: this.hash.digest('hex'), bytes: this.bytes };
  }
}
