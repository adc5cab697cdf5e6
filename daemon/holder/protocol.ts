// The fd holder's wire protocol: one JSON object per SOCK_SEQPACKET message, file descriptors
// alongside as SCM_RIGHTS. Shared by the holder (main.ts) and its client (client.ts).
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

/** Large enough for any mount's state (a config with a long chain of lowers). */
export const MAX_MESSAGE = 1 << 20;

/** Sends one message with `fds`: 0, or -errno. */
export function sendMessage(sock: number, msg: HolderRequest | HolderReply, fds: number[] = []): number {
  const buf = Buffer.from(JSON.stringify(msg), 'utf8');
  if (buf.length > MAX_MESSAGE) return -90; // EMSGSIZE
  const n = native.sendmsgFds(sock, buf, buf.length, fds);
  return n < 0 ? n : 0;
}

/** Receives one message: null when the peer closed, -errno on failure. */
export function receiveMessage<T>(sock: number, buf: Buffer): { msg: T; fds: number[] } | null | number {
  const r = native.recvmsgFds(sock, buf);
  if (typeof r === 'number') return r;
  const [n, fds] = r;
  if (n === 0) {
    for (const fd of fds) closeQuietly(fd);
    return null;
  }
  try {
    return { msg: JSON.parse(buf.toString('utf8', 0, n)) as T, fds };
  } catch {
    for (const fd of fds) closeQuietly(fd);
    return -74; // EBADMSG
  }
}

export function closeQuietly(fd: number): void {
  try {
    require('node:fs').closeSync(fd);
  } catch {
    // already closed
  }
}
