// The fd holder's wire protocol (the holder is daemon/holder/strata-holder.c): one SOCK_SEQPACKET
// message per request or reply, a 16-byte header (op, key length, count, pid: u32 each, in the
// machine's byte order) then the key then the state or message; fds go alongside as SCM_RIGHTS.
import * as fs from 'node:fs';
import * as native from '../../native-shims';

/** Requests a client sends; each gets one reply, `list` a series of `entry` then `end`. */
export type HolderRequest =
  | { op: 'hello' }
  /** Keep this fd (sent along) under `key`, replacing what was kept there; `state` is opaque to the holder. */
  | { op: 'put'; key: string; state: string }
  /** Close and forget what is kept under `key`. */
  | { op: 'del'; key: string }
  /** Send back every kept fd with its key and state. */
  | { op: 'list' };

export type HolderReply =
  | { op: 'ok'; pid: number; entries: number }
  | { op: 'error'; message: string }
  | { op: 'entry'; key: string; state: string }
  | { op: 'end'; count: number };

/** The largest message the holder reads (a config with a long chain of lowers fits). */
export const MAX_MESSAGE = 1 << 20;
const HEADER = 16;

const OPS = { hello: 1, put: 2, del: 3, list: 4, ok: 16, error: 17, entry: 18, end: 19 } as const;

function encode(msg: HolderRequest | HolderReply): Buffer {
  const key = 'key' in msg ? Buffer.from(msg.key, 'utf8') : Buffer.alloc(0);
  const body = Buffer.from('state' in msg ? msg.state : 'message' in msg ? msg.message : '', 'utf8');
  const h = Buffer.alloc(HEADER);
  h.writeUInt32LE(OPS[msg.op], 0);
  h.writeUInt32LE(key.length, 4);
  h.writeUInt32LE('entries' in msg ? msg.entries : 'count' in msg ? msg.count : 0, 8);
  h.writeUInt32LE('pid' in msg ? msg.pid : 0, 12);
  return Buffer.concat([h, key, body]);
}

function decode(buf: Buffer, n: number): HolderRequest | HolderReply | null {
  if (n < HEADER) return null;
  const op = buf.readUInt32LE(0);
  const keyLen = buf.readUInt32LE(4);
  if (keyLen > n - HEADER) return null;
  const key = buf.toString('utf8', HEADER, HEADER + keyLen);
  const rest = buf.toString('utf8', HEADER + keyLen, n);
  switch (op) {
    case OPS.hello:
      return { op: 'hello' };
    case OPS.put:
      return { op: 'put', key, state: rest };
    case OPS.del:
      return { op: 'del', key };
    case OPS.list:
      return { op: 'list' };
    case OPS.ok:
      return { op: 'ok', entries: buf.readUInt32LE(8), pid: buf.readUInt32LE(12) };
    case OPS.error:
      return { op: 'error', message: rest };
    case OPS.entry:
      return { op: 'entry', key, state: rest };
    case OPS.end:
      return { op: 'end', count: buf.readUInt32LE(8) };
    default:
      return null;
  }
}

/** Sends one message with `fds`: 0, or -errno. */
export function sendMessage(sock: number, msg: HolderRequest | HolderReply, fds: number[] = []): number {
  const buf = encode(msg);
  if (buf.length > MAX_MESSAGE) return -90; // EMSGSIZE
  const n = native.sendmsgFds(sock, buf, buf.length, fds);
  return n < 0 ? n : 0;
}

/** Receives one message: null when the peer closed, -errno on failure. */
export function receiveMessage<T extends HolderRequest | HolderReply>(sock: number, buf: Buffer): { msg: T; fds: number[] } | null | number {
  const r = native.recvmsgFds(sock, buf);
  if (typeof r === 'number') return r;
  const [n, fds] = r;
  if (n === 0) {
    for (const fd of fds) closeQuietly(fd);
    return null;
  }
  const msg = decode(buf, n);
  if (msg === null) {
    for (const fd of fds) closeQuietly(fd);
    return -74; // EBADMSG
  }
  return { msg: msg as T, fds };
}

export function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // already closed
  }
}
