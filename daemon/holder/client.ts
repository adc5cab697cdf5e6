// stratad's side of the fd holder (strata-holder.c, built next to this file): connects to the holder of its storage root, starting
// one when there is none, and keeps each mount's /dev/fuse fd there. Calls are synchronous: the
// holder answers at once, and they come at mount, unmount and start-up only.
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../../native-shims';
import { MAX_MESSAGE, closeQuietly, receiveMessage, sendMessage, type HolderReply, type HolderRequest } from './protocol';

export class HolderError extends Error {}

export interface KeptConnection {
  key: string;
  state: string;
  fd: number;
}

/** The holder program: `make build` compiles strata-holder.c into dist/daemon/holder/. */
const HOLDER_PROGRAM = path.join(__dirname, 'strata-holder');
const START_WAIT_MS = 5_000;
/** Longest Unix socket path (sun_path less its NUL). */
const SUN_PATH_MAX = 107;

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** The holder's socket for a storage root: in the root, or under /run/strata when that path is too long. */
export function holderSocketPath(rootDir: string): string {
  const inRoot = path.join(rootDir, 'holder.sock');
  if (inRoot.length <= SUN_PATH_MAX) return inRoot;
  return `/run/strata/holder-${crypto.createHash('sha256').update(rootDir).digest('hex').slice(0, 16)}.sock`;
}

export class HolderClient {
  private sock = -1;
  private readonly buf = Buffer.alloc(MAX_MESSAGE);
  /** The holder's pid (for `strata info`). */
  pid = 0;

  private constructor(readonly socketPath: string) {}

  /** A holder that is already running for this socket, or null (none: mounts did not survive). */
  static existing(socketPath: string): HolderClient | null {
    const c = new HolderClient(socketPath);
    return c.tryConnect() ? c : null;
  }

  /** Connects to the holder, starting one if none runs. */
  static connect(socketPath: string): HolderClient {
    const c = new HolderClient(socketPath);
    if (c.tryConnect()) return c;
    c.start();
    return c;
  }

  private tryConnect(): boolean {
    if (!fs.existsSync(this.socketPath)) return false;
    const s = native.seqpacketSocket();
    if (native.connectUnix(s, this.socketPath) !== 0) {
      closeQuietly(s);
      return false;
    }
    this.sock = s;
    try {
      this.pid = this.request({ op: 'hello' }).pid;
      return true;
    } catch {
      this.close(); // a holder on its way out
      return false;
    }
  }

  /** Starts a holder in its own session (so nothing sent to stratad's group reaches it), and connects. */
  private start(): void {
    fs.mkdirSync(path.dirname(this.socketPath), { recursive: true, mode: 0o700 });
    if (!fs.existsSync(HOLDER_PROGRAM)) throw new HolderError(`the fd holder program ${HOLDER_PROGRAM} is missing (make build compiles it)`);
    const child = spawn(HOLDER_PROGRAM, [this.socketPath], { detached: true, stdio: 'ignore' });
    child.on('error', () => undefined); // reported below: the holder does not answer
    child.unref();
    const deadline = Date.now() + START_WAIT_MS;
    while (Date.now() < deadline) {
      if (this.tryConnect()) return;
      sleepSync(10);
    }
    throw new HolderError(`the fd holder did not start on ${this.socketPath}`);
  }

  private send(req: HolderRequest, fds: number[] = []): void {
    if (this.sock < 0) throw new HolderError('not connected to the fd holder');
    const r = sendMessage(this.sock, req, fds);
    if (r < 0) throw new HolderError(`the fd holder is gone (errno ${-r})`);
  }

  private receive(): { msg: HolderReply; fds: number[] } {
    const m = receiveMessage<HolderReply>(this.sock, this.buf);
    if (m === null) throw new HolderError('the fd holder closed the connection');
    if (typeof m === 'number') throw new HolderError(`reading from the fd holder failed (errno ${-m})`);
    if (m.msg.op === 'error') throw new HolderError(`fd holder: ${m.msg.message}`);
    return m;
  }

  private request(req: HolderRequest, fds: number[] = []): Extract<HolderReply, { op: 'ok' }> {
    this.send(req, fds);
    const { msg, fds: extra } = this.receive();
    for (const fd of extra) closeQuietly(fd);
    if (msg.op !== 'ok') throw new HolderError(`unexpected reply from the fd holder: ${msg.op}`);
    return msg;
  }

  /** Keeps `fd` (a copy: the caller's stays open) under `key`. */
  put(key: string, state: string, fd: number): void {
    this.request({ op: 'put', key, state }, [fd]);
  }

  del(key: string): void {
    this.request({ op: 'del', key });
  }

  /** Every kept connection, each with a fresh fd of its own (the holder keeps its copy). */
  list(): KeptConnection[] {
    this.send({ op: 'list' });
    const out: KeptConnection[] = [];
    for (;;) {
      const { msg, fds } = this.receive();
      if (msg.op === 'end') return out;
      if (msg.op !== 'entry' || fds.length !== 1) {
        for (const fd of fds) closeQuietly(fd);
        throw new HolderError(`unexpected reply from the fd holder: ${msg.op}`);
      }
      out.push({ key: msg.key, state: msg.state, fd: fds[0] });
    }
  }

  /** True while the holder answers. */
  alive(): boolean {
    try {
      this.request({ op: 'hello' });
      return true;
    } catch {
      return false;
    }
  }

  close(): void {
    if (this.sock >= 0) closeQuietly(this.sock);
    this.sock = -1;
  }
}
