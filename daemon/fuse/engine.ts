// The FUSE engine: a small fixed pool of threads (engine-thread.ts) that serves every
// FUSE connection of the process. A connection costs its fd and its filesystem's state in
// the thread that serves it, never a thread of its own. Threads start as connections
// arrive, up to the pool size; each connection goes to the thread serving the fewest; a
// thread left with nothing to serve ends (an idle engine holds no thread and no fd).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import * as native from '../../native-shims';
import type { AttachCommand, EngineCommand, EngineEvent, EngineThreadInput } from './engine-thread';

export interface EngineOptions {
  /** Serving threads (default: the number of CPUs). */
  threads?: number;
  logLevel?: string;
  logFile?: string;
}

export type ConnectionSpec = Omit<AttachCommand, 'type' | 'id'>;

export interface ServedConnection {
  /** Resolves once INIT is answered (the mount is live); rejects if serving could not start. */
  ready: Promise<{ passthrough: boolean; minor: number; resumed: boolean }>;
  /** Resolves when the connection is no longer served; its fd is closed by then. */
  ended: Promise<void>;
  /** Stops serving it (for a connection the kernel no longer ends by itself). */
  detach(): void;
}

interface Pending {
  thread: EngineThread;
  devFd: number;
  readyResolve(v: { passthrough: boolean; minor: number; resumed: boolean }): void;
  readyReject(e: Error): void;
  endedResolve(): void;
}

interface EngineThread {
  worker: Worker;
  port: MessagePort;
  wakeFd: number;
  served: Set<number>;
  alive: boolean;
}

const THREAD_MODULE = path.join(__dirname, 'engine-thread.js');
const ONE = Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]);

export class FuseEngine {
  readonly size: number;
  private readonly threads: EngineThread[] = [];
  private readonly conns = new Map<number, Pending>();
  private nextId = 1;

  constructor(private readonly opts: EngineOptions = {}) {
    const n = opts.threads ?? os.availableParallelism();
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`FUSE engine threads must be a positive integer, not ${n}`);
    this.size = n;
    // process.exit waits for worker threads to return to JS: wake them so they do.
    process.once('exit', () => this.stop());
  }

  /** Stops every thread (connections left are no longer read; the process is ending). */
  stop(): void {
    for (const t of this.threads) this.send(t, { type: 'quit' });
  }

  /**
   * Stops every thread once it has answered the request it is serving, and resolves when all
   * have ended (within `limitMs`): the connections, unread, are left to whoever takes them over.
   */
  async quit(limitMs = 2_000): Promise<void> {
    const exits = this.threads.map((t) => new Promise<void>((resolve) => t.worker.once('exit', () => resolve())));
    this.stop();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(exits), new Promise<void>((r) => (timer = setTimeout(r, limitMs)))]);
    clearTimeout(timer);
  }

  /** Threads running now and the connections they serve. */
  stats(): { threads: number; connections: number } {
    return { threads: this.threads.length, connections: this.conns.size };
  }

  /** Serves a mounted /dev/fuse fd; the engine closes it when serving ends. */
  serve(spec: ConnectionSpec): ServedConnection {
    const thread = this.pick();
    const id = this.nextId++;
    let conn!: Pending;
    const ready = new Promise<{ passthrough: boolean; minor: number; resumed: boolean }>((readyResolve, readyReject) => {
      conn = { thread, devFd: spec.devFd, readyResolve, readyReject, endedResolve: () => undefined };
    });
    const ended = new Promise<void>((r) => (conn.endedResolve = r));
    ready.catch(() => undefined); // the caller may only await `ended`
    this.conns.set(id, conn);
    thread.served.add(id);
    this.send(thread, { type: 'attach', id, ...spec });
    return {
      ready,
      ended,
      detach: () => {
        if (this.conns.has(id) && thread.alive) this.send(thread, { type: 'detach', id });
      },
    };
  }

  private send(t: EngineThread, c: EngineCommand): void {
    t.port.postMessage(c);
    fs.writeSync(t.wakeFd, ONE);
  }

  private pick(): EngineThread {
    if (this.threads.length < this.size) return this.spawn();
    return this.threads.reduce((a, b) => (b.served.size < a.served.size ? b : a));
  }

  private spawn(): EngineThread {
    const wakeFd = native.eventfd();
    if (wakeFd < 0) throw new Error(`eventfd failed: errno ${-wakeFd}`);
    const { port1, port2 } = new MessageChannel();
    const input: EngineThreadInput = { port: port2, wakeFd, logLevel: this.opts.logLevel, logFile: this.opts.logFile };
    const worker = new Worker(THREAD_MODULE, { workerData: input, transferList: [port2] });
    const t: EngineThread = { worker, port: port1, wakeFd, served: new Set(), alive: true };
    worker.on('message', (m: EngineEvent) => this.onEvent(t, m));
    const lost = (why: string) => {
      if (!t.alive) return;
      this.retire(t);
      for (const id of [...t.served]) {
        this.conns.get(id)?.readyReject(new Error(`FUSE engine thread ${why}`));
        this.finish(t, id);
      }
    };
    worker.on('error', (err) => lost(`failed: ${err.message}`));
    worker.on('exit', (code) => {
      lost(`exited (${code})`);
      port1.close();
      fs.closeSync(wakeFd);
    });
    this.threads.push(t);
    return t;
  }

  /** Out of the pool: new connections go elsewhere. */
  private retire(t: EngineThread): void {
    t.alive = false;
    this.threads.splice(this.threads.indexOf(t), 1);
  }

  private onEvent(t: EngineThread, m: EngineEvent): void {
    const conn = this.conns.get(m.id);
    if (!conn) return;
    if (m.type === 'ready') conn.readyResolve({ passthrough: m.passthrough, minor: m.minor, resumed: m.resumed });
    else if (m.type === 'error') conn.readyReject(new Error(m.message));
    else this.finish(t, m.id);
  }

  private finish(t: EngineThread, id: number): void {
    const conn = this.conns.get(id);
    if (!conn) return;
    this.conns.delete(id);
    t.served.delete(id);
    conn.readyReject(new Error('the FUSE connection ended before it was ready'));
    try {
      fs.closeSync(conn.devFd);
    } catch {
      // already closed
    }
    if (t.served.size === 0 && t.alive) {
      this.retire(t);
      this.send(t, { type: 'quit' });
    }
    conn.endedResolve();
  }
}
