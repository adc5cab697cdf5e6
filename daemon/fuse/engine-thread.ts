// One thread of the FUSE engine: serves every connection it is given, waiting on all their
// /dev/fuse fds with one epoll. Idle connections cost no CPU; a request is read (non-blocking),
// served and answered before the next readiness event is looked at. The engine (engine.ts)
// hands connections over by message, and wakes this thread through an eventfd it also waits on.
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as native from '../../native-shims';
import { FuseSession, newSessionBuffers } from './session';
import { Journal, type JournalState } from './journal';
import type { FuseFilesystem } from './filesystem';
import { createLogger } from '../log';
import { IdleCollector } from './idle-gc';

const E = os.constants.errno;

export interface EngineThreadInput {
  /** Messages from the engine (EngineCommand) arrive on this port; the eventfd says when. */
  port: MessagePort;
  wakeFd: number;
  logLevel?: string;
  logFile?: string;
}

/** A connection to serve: a mounted /dev/fuse fd and the filesystem to build for it. */
export interface AttachCommand {
  type: 'attach';
  id: number;
  devFd: number;
  /** Absolute path of a module exporting `createFilesystem(config, log): FuseFilesystem`. */
  module: string;
  config: unknown;
  passthrough: boolean;
  posixAcl?: boolean;
  /** Journal file of the connection's state (journal.ts), for a takeover by another process. */
  journal?: string;
  /** The connection was served by a process that is gone: resume from the journal instead of waiting for INIT. */
  resume?: boolean;
}

/** quit: the process is exiting; return to Node so it can stop this thread (a thread blocked in epoll_wait cannot be). */
export type EngineCommand = AttachCommand | { type: 'detach'; id: number } | { type: 'quit' };

export type EngineEvent =
  | { type: 'ready'; id: number; passthrough: boolean; minor: number; resumed: boolean }
  | { type: 'error'; id: number; message: string }
  /** The connection is no longer served (unmounted, failed or detached): its fd may be closed. */
  | { type: 'ended'; id: number };

interface Served {
  id: number;
  session: FuseSession;
}

function main(): void {
  // Errors carry errnos to the kernel, not stacks to people: skip the costly stack capture.
  Error.stackTraceLimit = 0;
  const input = workerData as EngineThreadInput;
  const log = createLogger('strata-fuse', { level: input.logLevel, file: input.logFile });
  const post = (m: EngineEvent) => parentPort?.postMessage(m);
  const buffers = newSessionBuffers();
  const byFd = new Map<number, Served>();
  const byId = new Map<number, Served>();

  const epfd = native.epollCreate();
  if (epfd < 0) throw new Error(`epoll_create1 failed: errno ${-epfd}`);
  const watch = (fd: number) => native.epollCtl(epfd, native.EPOLL_CTL_ADD, fd, native.EPOLLIN);
  if (watch(input.wakeFd) < 0) throw new Error('cannot watch the engine eventfd');

  const end = (s: Served) => {
    native.epollCtl(epfd, native.EPOLL_CTL_DEL, s.session.deviceFd, 0);
    byFd.delete(s.session.deviceFd);
    byId.delete(s.id);
    s.session.end();
    s.session.journal?.remove(); // the connection is over: nothing left to take over
    post({ type: 'ended', id: s.id });
  };

  const attach = (c: AttachCommand) => {
    let fsys: FuseFilesystem;
    let journal: Journal | undefined;
    let state: JournalState | undefined;
    try {
      if (c.journal !== undefined) {
        if (c.resume) state = Journal.read(c.journal);
        else fs.rmSync(c.journal, { force: true }); // left by an earlier connection
        journal = new Journal(c.journal);
      }
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const mod = require(c.module) as { createFilesystem(config: unknown, log: unknown): FuseFilesystem };
      fsys = mod.createFilesystem(c.config, log);
      // One thread serves many fds: a read must never wait for a request that was interrupted away.
      const fl = native.fcntl(c.devFd, native.F_GETFL, 0);
      if (fl < 0 || native.fcntl(c.devFd, native.F_SETFL, fl | native.O_NONBLOCK) < 0) throw new Error(`fcntl on /dev/fuse fd failed: errno ${-fl}`);
    } catch (err) {
      journal?.close();
      post({ type: 'error', id: c.id, message: (err as Error).message });
      post({ type: 'ended', id: c.id });
      return;
    }
    const session = new FuseSession(
      c.devFd,
      fsys,
      {
        passthrough: c.passthrough,
        posixAcl: c.posixAcl,
        writebackCache: process.env.STRATA_WRITEBACK_CACHE !== '0', // 0: writes wait for their WRITE (A/B runs)
        onReady: (info) => post({ type: 'ready', id: c.id, ...info, resumed: false }),
        log: (level, msg, fields) => log[level]({ mount: c.id, ...fields }, msg),
        journal,
      },
      buffers,
    );
    const s = { id: c.id, session };
    if (state !== undefined) {
      try {
        if (session.resume(state)) {
          journal!.compact(); // what was restored, without the history that led to it
          post({ type: 'ready', id: c.id, passthrough: session.passthrough, minor: state.init!.minor, resumed: true });
        }
      } catch (err) {
        log.error({ mount: c.id, err: (err as Error).message }, 'takeover of a FUSE connection failed');
        post({ type: 'error', id: c.id, message: `takeover failed: ${(err as Error).message}` });
        session.end();
        journal?.close();
        post({ type: 'ended', id: c.id });
        return;
      }
    }
    byFd.set(c.devFd, s);
    byId.set(c.id, s);
    const r = watch(c.devFd);
    if (r < 0) {
      post({ type: 'error', id: c.id, message: `epoll_ctl on /dev/fuse fd failed: errno ${-r}` });
      byFd.delete(c.devFd);
      byId.delete(c.id);
      session.end();
      post({ type: 'ended', id: c.id });
    }
  };

  const wakeBuf = Buffer.alloc(8);
  let quit = false;
  const commands = () => {
    native.readInto(input.wakeFd, wakeBuf); // resets the eventfd; the port holds the messages
    for (let m = receiveMessageOnPort(input.port); m; m = receiveMessageOnPort(input.port)) {
      const c = m.message as EngineCommand;
      if (c.type === 'attach') attach(c);
      else if (c.type === 'quit') quit = true;
      else {
        const s = byId.get(c.id);
        if (s) end(s);
      }
    }
  };

  const serve = (s: Served) => {
    try {
      if (s.session.serveOne() === 'ended') end(s);
    } catch (err) {
      log.error({ mount: s.id, err: (err as Error).message }, 'FUSE session ended with an error');
      post({ type: 'error', id: s.id, message: (err as Error).message });
      end(s);
    }
  };

  const events = Buffer.alloc(64 * 8);
  const collector = new IdleCollector();
  while (!quit) {
    const n = native.epollWait(epfd, events, collector.timeout());
    if (n < 0) {
      if (-n === E.EINTR) continue;
      throw new Error(`epoll_wait failed: errno ${-n}`);
    }
    if (n === 0) collector.idle();
    else collector.busy();
    for (let i = 0; i < n && !quit; i++) {
      const fd = events.readInt32LE(i * 8 + 4);
      if (fd === input.wakeFd) commands();
      else {
        const s = byFd.get(fd);
        if (s) serve(s); // absent: ended earlier in this batch
      }
    }
  }
  fs.closeSync(epfd);
  // The connections stay (the holder keeps them for the next process): so do their journals.
  for (const s of byId.values()) s.session.journal?.close();
  process.exit(0); // in a worker: ends this thread only
}

main();
