// The tar wire format (POSIX ustar + pax extended headers, GNU long names on input): 512-byte headers,
// numeric fields, pax records. Pure functions over Buffers; no I/O.
import { CorruptArchiveError } from './errors';

export const BLOCK = 512;

export const TYPE_FILE = 0x30; // '0'
export const TYPE_FILE_OLD = 0x00; // '\0' (pre-POSIX regular file)
export const TYPE_LINK = 0x31; // '1'
export const TYPE_SYMLINK = 0x32; // '2'
export const TYPE_CHAR = 0x33; // '3'
export const TYPE_BLOCK = 0x34; // '4'
export const TYPE_DIR = 0x35; // '5'
export const TYPE_FIFO = 0x36; // '6'
export const TYPE_CONTIGUOUS = 0x37; // '7'
export const TYPE_PAX = 0x78; // 'x'
export const TYPE_PAX_GLOBAL = 0x67; // 'g'
export const TYPE_GNU_LONGNAME = 0x4c; // 'L'
export const TYPE_GNU_LONGLINK = 0x4b; // 'K'

/** A decoded 512-byte header, before pax / GNU long-name overrides. */
export interface RawHeader {
  name: Buffer;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  typeflag: number;
  linkname: Buffer;
  devmajor: number;
  devminor: number;
}

/** Padding needed after `size` bytes of content. */
export function padding(size: number): number {
  const r = size % BLOCK;
  return r === 0 ? 0 : BLOCK - r;
}

function cstr(block: Buffer, off: number, len: number): Buffer {
  const field = block.subarray(off, off + len);
  const nul = field.indexOf(0);
  return Buffer.from(nul === -1 ? field : field.subarray(0, nul));
}

/** Parses an octal (space/NUL padded) or base-256 numeric field. */
function num(block: Buffer, off: number, len: number, what: string, at: number): number {
  const f = block.subarray(off, off + len);
  if (f[0] & 0x80) {
    // base-256 (GNU / star): big-endian two's complement, first byte's top bit is the marker
    let v = 0n;
    for (let i = 0; i < f.length; i++) v = (v << 8n) | BigInt(i === 0 ? f[0] & 0x7f : f[i]);
    // 0xff.. marks a negative number: the whole field is big-endian two's complement
    if (f[0] & 0x40) v -= 1n << BigInt(8 * f.length - 1);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new CorruptArchiveError(`${what} field out of range`, at);
    }
    return Number(v);
  }
  let s = f.toString('latin1');
  const nul = s.indexOf('\0');
  if (nul !== -1) s = s.slice(0, nul);
  s = s.trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new CorruptArchiveError(`invalid ${what} field (not an octal number): not a tar archive, or a damaged one`, at);
  return parseInt(s, 8);
}

function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

/**
 * Decodes a header block. Returns null for an all-zero block (end-of-archive marker).
 * `at` is the block's offset in the stream, for error messages.
 */
export function decodeHeader(block: Buffer, at: number): RawHeader | null {
  if (isZeroBlock(block)) return null;
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i];
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  const want = num(block, 148, 8, 'checksum', at);
  if (want !== unsigned && want !== signed) {
    throw new CorruptArchiveError('header checksum mismatch (not a tar archive, or data corrupted)', at);
  }
  const magic = block.subarray(257, 263).toString('latin1');
  let name = cstr(block, 0, 100);
  if (magic === 'ustar\0') {
    const prefix = cstr(block, 345, 155);
    if (prefix.length > 0) name = Buffer.concat([prefix, Buffer.from('/'), name]);
  }
  return {
    name,
    mode: num(block, 100, 8, 'mode', at),
    uid: num(block, 108, 8, 'uid', at),
    gid: num(block, 116, 8, 'gid', at),
    size: num(block, 124, 12, 'size', at),
    mtime: num(block, 136, 12, 'mtime', at),
    typeflag: block[156],
    linkname: cstr(block, 157, 100),
    devmajor: magic.startsWith('ustar') ? num(block, 329, 8, 'devmajor', at) : 0,
    devminor: magic.startsWith('ustar') ? num(block, 337, 8, 'devminor', at) : 0,
  };
}

/** Parses pax extended header records ("<len> <key>=<value>\n"); values stay raw bytes. */
export function decodePax(buf: Buffer, at: number): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  while (pos < buf.length) {
    if (buf[pos] === 0) break; // some writers NUL-pad the record area
    const sp = buf.indexOf(0x20, pos);
    if (sp === -1) throw new CorruptArchiveError('malformed pax record (no length)', at);
    const lenStr = buf.subarray(pos, sp).toString('latin1');
    if (!/^[0-9]+$/.test(lenStr)) throw new CorruptArchiveError(`malformed pax record length (not a decimal number)`, at);
    const len = parseInt(lenStr, 10);
    const end = pos + len;
    if (len <= sp - pos + 1 || end > buf.length || buf[end - 1] !== 0x0a) {
      throw new CorruptArchiveError('malformed pax record', at);
    }
    const rec = buf.subarray(sp + 1, end - 1);
    const eq = rec.indexOf(0x3d);
    if (eq === -1) throw new CorruptArchiveError('malformed pax record (no "=")', at);
    const key = rec.subarray(0, eq).toString('utf8');
    out.set(key, Buffer.from(rec.subarray(eq + 1)));
    pos = end;
  }
  return out;
}

/** One pax record, length prefix included. */
export function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(' ' + key + '='), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

/** Parses a pax time "[-]sec[.frac]" into seconds and nanoseconds (0 <= nsec < 1e9). */
export function parsePaxTime(s: string, at: number): { sec: number; nsec: number } {
  const m = /^(-?)([0-9]+)(?:\.([0-9]*))?$/.exec(s);
  if (!m) throw new CorruptArchiveError(`invalid pax time (not a decimal time)`, at);
  let sec = parseInt(m[2], 10);
  let nsec = m[3] ? parseInt((m[3] + '000000000').slice(0, 9), 10) : 0;
  if (m[1] === '-') {
    sec = -sec;
    if (nsec > 0) {
      sec -= 1;
      nsec = 1e9 - nsec;
    }
  }
  return { sec, nsec };
}

/** Formats seconds + nanoseconds as a pax time; fraction only when non-zero, trailing zeros trimmed. */
export function formatPaxTime(sec: number, nsec: number): string {
  if (nsec === 0) return String(sec);
  let s = sec;
  let n = nsec;
  let sign = '';
  if (s < 0) {
    sign = '-';
    s = -s - 1;
    n = 1e9 - n;
  }
  return `${sign}${s}.${String(n).padStart(9, '0').replace(/0+$/, '')}`;
}

/** Fields written into a ustar header block (name and linkname <= 100 bytes; the caller
 *  uses pax otherwise): the same fields a decoded header has. */
export type HeaderFields = RawHeader;

export const MAX_OCTAL_7 = 0o7777777;
export const MAX_OCTAL_11 = 0o77777777777;

function putOctal(block: Buffer, off: number, len: number, v: number): void {
  // len-1 octal digits followed by NUL, as GNU tar and Go write them
  block.write(v.toString(8).padStart(len - 1, '0'), off, len - 1, 'latin1');
  block[off + len - 1] = 0;
}

export function encodeHeader(h: HeaderFields): Buffer {
  const block = Buffer.alloc(BLOCK);
  h.name.copy(block, 0, 0, Math.min(100, h.name.length));
  putOctal(block, 100, 8, h.mode & 0o7777);
  putOctal(block, 108, 8, h.uid);
  putOctal(block, 116, 8, h.gid);
  putOctal(block, 124, 12, h.size);
  putOctal(block, 136, 12, h.mtime);
  block[156] = h.typeflag;
  h.linkname.copy(block, 157, 0, Math.min(100, h.linkname.length));
  block.write('ustar\x0000', 257, 8, 'latin1');
  putOctal(block, 329, 8, h.devmajor);
  putOctal(block, 337, 8, h.devminor);
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i];
  block.write(sum.toString(8).padStart(6, '0'), 148, 6, 'latin1');
  block[154] = 0;
  block[155] = 0x20;
  return block;
}
