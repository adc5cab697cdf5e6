// Start-up of stratad with an fd holder: the container mounts the holder kept alive (across a
// crash, a live-restore stop or an upgrade) are served again by this process. Each is resumed
// from its journal and the kernel resends what was in flight, so processes inside them see a
// pause. A kept mount that cannot be resumed is aborted (its waiting requests fail, it becomes a
// dead mount) and mounted afresh by the usual recovery.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { HolderClient } from '../holder/client';
import type { Logger } from '../log';
import type { MountManager } from './mount-manager';
import { abortOwnFuseConnection, isStrataMount, mountTable } from './mount-table';
import { resumeUnionMount, type HeldMountState } from './union-mount';
import { unmount } from '../fuse/mount';

export interface TakeoverResult {
  /** Containers whose mounts are served here again, with the time each took (ms). */
  resumed: { id: string; ms: number }[];
  /** Kept connections that could not be resumed (ended; their containers are remounted as after a loss). */
  lost: { key: string; reason: string }[];
  /** Wall time of the whole takeover (ms). */
  ms: number;
}

/** Ends a kept connection nobody will serve: aborted (waiting requests fail), lazily unmounted, let go. */
function abandon(holder: HolderClient, key: string, fd: number, mountpoint: string | undefined): void {
  if (mountpoint !== undefined) {
    const dev = mountTable().filter((m) => m.mountPoint === mountpoint && isStrataMount(m)).pop()?.dev;
    if (dev !== undefined) abortOwnFuseConnection(fd, dev);
    try {
      unmount(mountpoint, true);
    } catch {
      // not mounted any more
    }
  }
  fs.closeSync(fd);
  try {
    holder.del(key);
  } catch {
    // the holder is gone
  }
}

/**
 * Takes over every connection the holder keeps whose owner `known` accepts (a container that
 * still exists); the others are ended. All run at once: each goes to an engine thread.
 */
export async function takeOverMounts(holder: HolderClient, mounts: MountManager, known: (owner: string) => boolean, log: Logger): Promise<TakeoverResult> {
  const t0 = performance.now();
  const result: TakeoverResult = { resumed: [], lost: [], ms: 0 };
  const kept = holder.list();
  await Promise.all(
    kept.map(async (k) => {
      let state: HeldMountState | undefined;
      try {
        state = JSON.parse(k.state) as HeldMountState;
      } catch {
        state = undefined;
      }
      if (state?.version !== 1 || !known(state.owner)) {
        abandon(holder, k.key, k.fd, state?.mountpoint);
        result.lost.push({ key: k.key, reason: state ? `no container ${state.owner}` : 'unreadable state' });
        return;
      }
      const start = performance.now();
      try {
        const union = await resumeUnionMount(k.fd, state, { logLevel: mounts.workerLogSettings.level, logFile: mounts.workerLogSettings.file, hold: mounts.holdFor(state.owner) });
        mounts.adopt(state.owner, union);
        result.resumed.push({ id: state.owner, ms: Math.round(performance.now() - start) });
      } catch (err) {
        // resumeUnionMount has aborted and unmounted it, and closed the fd.
        result.lost.push({ key: k.key, reason: (err as Error).message });
      }
    }),
  );
  result.ms = Math.round(performance.now() - t0);
  if (kept.length > 0) log.info({ resumed: result.resumed.length, lost: result.lost, ms: result.ms }, 'mounts taken over');
  return result;
}

/** Takeovers so far on a storage root, and the last one (kept in a file: they span processes). */
export interface TakeoverStats {
  takeovers: number;
  last: { at: string; ms: number; mounts: number } | null;
}

export class TakeoverRecord {
  private readonly file: string;

  constructor(runDir: string) {
    this.file = path.join(runDir, 'takeovers.json');
  }

  read(): TakeoverStats {
    try {
      const s = JSON.parse(fs.readFileSync(this.file, 'utf8')) as TakeoverStats;
      if (typeof s.takeovers === 'number') return s;
    } catch {
      // none yet
    }
    return { takeovers: 0, last: null };
  }

  add(ms: number, mounts: number): TakeoverStats {
    const s = this.read();
    const next: TakeoverStats = { takeovers: s.takeovers + 1, last: { at: new Date().toISOString(), ms, mounts } };
    fs.writeFileSync(this.file + '.tmp', JSON.stringify(next));
    fs.renameSync(this.file + '.tmp', this.file);
    return next;
  }
}
