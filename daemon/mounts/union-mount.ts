// Runs one union filesystem: /dev/fuse opened here, the FUSE loop and the union
// in a worker thread, mount(2) from this thread. Used by strata-mount and stratad.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { MountError, isMounted, mountFuse, privilegedHost, unmount, type FuseConnection } from '../fuse/mount';
import type { WorkerInput, WorkerMessage } from '../fuse/worker';
import type { UnionConfig } from '../union/config';

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
  /** Unmounts (lazily if busy) and waits for the worker to finish. */
  unmount(): Promise<void>;
}

const WORKER = path.join(__dirname, '..', 'fuse', 'worker.js');
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
  // Mounted before the worker starts: the kernel queues INIT until someone reads it.
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
  const input: WorkerInput = {
    devFd,
    module: UNION_MODULE,
    // Without the privilege for trusted.* xattrs, overlay markers go to user.overlay.*.
    config: { ...cfg, userxattr: cfg.userxattr ?? !privilegedHost() },
    // Passthrough needs CAP_SYS_ADMIN in the initial user namespace: detected, never a failure.
    passthrough: (opts.passthrough ?? true) && privilegedHost(),
    posixAcl: opts.posixAcl,
    logLevel: opts.logLevel,
    logFile: opts.logFile,
  };
  const worker = new Worker(WORKER, { workerData: input });
  let readyResolve!: (v: { passthrough: boolean }) => void;
  let readyReject!: (e: Error) => void;
  const ready = new Promise<{ passthrough: boolean }>((res, rej) => {
    readyResolve = res;
    readyReject = rej;
  });
  const done = new Promise<void>((resolve) => {
    worker.on('message', (m: WorkerMessage) => {
      if (m.type === 'ready') readyResolve({ passthrough: m.passthrough });
      else if (m.type === 'error') readyReject(new MountError(m.message));
    });
    worker.on('error', (err) => readyReject(err));
    worker.on('exit', () => {
      readyReject(new MountError('filesystem worker exited before the mount was ready'));
      try {
        fs.closeSync(devFd);
      } catch {
        // already closed
      }
      resolve();
    });
  });
  const info = await ready.catch(async (err: Error) => {
    if (isMounted(target)) unmount(target, true);
    await worker.terminate();
    throw err;
  });
  return {
    mountpoint: target,
    passthrough: info.passthrough,
    dataPath: info.passthrough ? 'passthrough' : 'served',
    via: conn.via,
    done,
    async unmount() {
      if (isMounted(target)) unmount(target);
      await done;
    },
  };
}
