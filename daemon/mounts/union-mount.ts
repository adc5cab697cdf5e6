// Runs one union filesystem: /dev/fuse opened and mount(2) here, the union served by the
// process's FUSE engine (a shared pool of threads). Used by strata-mount and stratad.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MountError, isMounted, mountFuse, privilegedHost, unmount, type FuseConnection } from '../fuse/mount';
import { FuseEngine, type ConnectionSpec, type EngineOptions, type ServedConnection } from '../fuse/engine';
import type { HolderClient } from '../holder/client';
import type { UnionConfig } from '../union/config';
import * as native from '../../native-shims';
import { abortOwnFuseConnection, isStrataMount, mountTable } from './mount-table';

export interface UnionMountOptions {
  fsname?: string;
  readOnly?: boolean;
  noatime?: boolean;
  nosuid?: boolean;
  nodev?: boolean;
  noexec?: boolean;
  /** Use FUSE passthrough when the kernel and our privileges allow (default true). */
  passthrough?: boolean;
  /** POSIX ACL support (default on; `noacl` turns it off, as for overlayfs). */
  posixAcl?: boolean;
  logLevel?: string;
  logFile?: string;
  /** Keep the connection in the fd holder, so that it outlives this process (takeover.ts). */
  hold?: HoldOptions;
}

export interface HoldOptions {
  holder: HolderClient;
  /** The holder's key for this mount. */
  key: string;
  /** The journal file of the connection's state. */
  journal: string;
  /** Kept with the connection and given back at a takeover (for the caller's own use). */
  owner: string;
}

/** What the holder keeps beside a connection's fd: all a new process needs to serve it. */
export interface HeldMountState {
  version: 1;
  owner: string;
  mountpoint: string;
  spec: Omit<ConnectionSpec, 'devFd'>;
  via: FuseConnection['via'];
}

/** How file data moves: the kernel's passthrough, or READ/WRITE served by the filesystem. */
export type DataPath = 'passthrough' | 'served';

export interface RunningMount {
  mountpoint: string;
  passthrough: boolean;
  dataPath: DataPath;
  /** mount(2) by us, or fusermount3 for an unprivileged caller. */
  via: FuseConnection['via'];
  /** Resolves when the FUSE connection ends (unmounted). */
  done: Promise<void>;
  /** Served from the journal of a process that is gone, rather than mounted here. */
  resumed: boolean;
  /**
   * Detaches the mount from this namespace (lazily when still busy after a short grace) and ends
   * the FUSE connection: if a copy of the mount in another namespace keeps it alive, the connection
   * is aborted (the copies then fail with ENOTCONN) rather than waited for. Bounded in time.
   */
  unmount(): Promise<void>;
  /** The fd holder lets go of the connection (it ended without us). */
  forget(): void;
}

/** How long a busy mount gets before it is detached lazily, and a detached one before its connection is aborted. */
const BUSY_GRACE_MS = 300;
const END_GRACE_MS = 500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function within(p: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)))]).finally(() => clearTimeout(timer));
}

/** umount2; while busy, retried for a short grace, then detached lazily. */
async function detach(target: string): Promise<void> {
  const deadline = Date.now() + BUSY_GRACE_MS;
  for (;;) {
    try {
      native.umount2(target, 0);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EINVAL' || code === 'ENOENT') return; // not mounted (any more)
      if (code !== 'EBUSY' || Date.now() >= deadline) break;
    }
    await sleep(25);
  }
  unmount(target, true);
}

let engine: FuseEngine | undefined;

/** Sets up the engine that serves this process's mounts (before the first mount; once). */
export function configureEngine(opts: EngineOptions): FuseEngine {
  if (engine) throw new Error('the FUSE engine is already running');
  engine = new FuseEngine(opts);
  return engine;
}

/** The engine serving this process's mounts; started with defaults (and the first mount's log settings) if not configured. */
export function fuseEngine(defaults: EngineOptions = {}): FuseEngine {
  engine ??= new FuseEngine(defaults);
  return engine;
}

const UNION_MODULE = path.join(__dirname, '..', 'union', 'index.js');

export async function startUnionMount(cfg: UnionConfig, mountpoint: string, opts: UnionMountOptions = {}): Promise<RunningMount> {
  const target = path.resolve(mountpoint);
  let st: fs.Stats;
  try {
    st = fs.statSync(target);
  } catch {
    throw new MountError(`mountpoint ${mountpoint} does not exist`);
  }
  if (!st.isDirectory()) throw new MountError(`mountpoint ${mountpoint} is not a directory`);
  // Mounted before it is served: the kernel queues INIT until someone reads it.
  const conn = mountFuse(target, {
    fsname: opts.fsname ?? 'strata',
    subtype: 'strata',
    readOnly: opts.readOnly || cfg.upper === undefined,
    noatime: opts.noatime,
    nosuid: opts.nosuid,
    nodev: opts.nodev,
    noexec: opts.noexec,
  });
  const devFd = conn.fd;
  const spec: ConnectionSpec = {
    devFd,
    module: UNION_MODULE,
    // Without the privilege for trusted.* xattrs, overlay markers go to user.overlay.*.
    config: { ...cfg, userxattr: cfg.userxattr ?? !privilegedHost() },
    // Passthrough needs CAP_SYS_ADMIN in the initial user namespace: detected, never a failure.
    passthrough: (opts.passthrough ?? true) && privilegedHost(),
    posixAcl: opts.posixAcl,
    journal: opts.hold?.journal,
  };
  if (opts.hold) {
    // Kept before INIT is served: from here on a crash leaves the mount waiting, not dead.
    const { devFd: _fd, ...rest } = spec;
    const state: HeldMountState = { version: 1, owner: opts.hold.owner, mountpoint: target, spec: rest, via: conn.via };
    try {
      opts.hold.holder.put(opts.hold.key, JSON.stringify(state), devFd);
    } catch (err) {
      unmount(target, true);
      fs.closeSync(devFd);
      throw new MountError(`cannot keep the mount in the fd holder: ${(err as Error).message}`);
    }
  }
  const probeFd = dupProbe(devFd);
  const served = fuseEngine({ logLevel: opts.logLevel, logFile: opts.logFile }).serve(spec);
  return running(target, conn.via, probeFd, served, opts.hold);
}

/**
 * Serves a connection kept by the fd holder for a process that is gone (crashed, stopped with
 * live restore, or upgraded): its nodes and handles come from the journal, and the requests it
 * left unanswered are sent again by the kernel.
 */
export async function resumeUnionMount(devFd: number, state: HeldMountState, opts: Pick<UnionMountOptions, 'logLevel' | 'logFile' | 'hold'> = {}): Promise<RunningMount> {
  const probeFd = dupProbe(devFd);
  const served = fuseEngine({ logLevel: opts.logLevel, logFile: opts.logFile }).serve({ ...state.spec, devFd, resume: true });
  return running(state.mountpoint, state.via, probeFd, served, opts.hold);
}

/**
 * A copy of a connection's fd, taken before the engine owns the fd: it tells whether our connection
 * is still up before we abort it by device number (a number the kernel gives the next FUSE mount
 * once ours has ended). Closed before the engine lets go of its fd, since the last close of a
 * /dev/fuse file is what ends a connection the kernel no longer ends by itself.
 */
function dupProbe(devFd: number): number {
  return native.fcntl(devFd, native.F_DUPFD_CLOEXEC, 0);
}

async function running(target: string, via: FuseConnection['via'], probe: number, served: ServedConnection, hold: HoldOptions | undefined): Promise<RunningMount> {
  const done = served.ended;
  const connDev = mountTable().filter((m) => m.mountPoint === target && isStrataMount(m)).pop()?.dev;
  let probeFd = probe;
  const closeProbe = () => {
    if (probeFd >= 0) fs.closeSync(probeFd);
    probeFd = -1;
  };
  const abortOurs = () => {
    if (connDev !== undefined && probeFd >= 0) abortOwnFuseConnection(probeFd, connDev);
  };
  void done.then(closeProbe, closeProbe);
  const forget = () => {
    try {
      hold?.holder.del(hold.key);
    } catch {
      // the holder is gone: nothing kept there any more
    }
  };
  const info = await served.ready.catch(async (err: Error) => {
    // Requests waiting on a connection nobody will serve would wait for ever: fail them.
    abortOurs();
    if (isMounted(target)) unmount(target, true);
    closeProbe();
    served.detach();
    await done;
    forget();
    throw new MountError(err.message);
  });
  return {
    mountpoint: target,
    passthrough: info.passthrough,
    dataPath: info.passthrough ? 'passthrough' : 'served',
    via,
    done,
    resumed: info.resumed,
    async unmount() {
      try {
        if (isMounted(target)) await detach(target);
        if (await within(done, END_GRACE_MS)) return;
        // Still served: a copy of the mount lives in another mount namespace (or a lazy detach left users).
        abortOurs();
        if (await within(done, END_GRACE_MS)) return;
        closeProbe();
        served.detach();
        await within(done, END_GRACE_MS);
      } finally {
        forget();
      }
    },
    forget,
  };
}
