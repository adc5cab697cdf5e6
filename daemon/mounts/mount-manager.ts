// Container root filesystems: a union mount per container, plus the volume and
// bind mounts placed inside it. Tracks what is mounted and undoes it in order.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../../native-shims';
import type { HolderClient } from '../holder/client';
import { unmount } from '../fuse/mount';
import { isDeadFuse, isStrataMount, mountsAtOrBelow, type MountEntry } from './mount-table';
import type { Logger } from '../log';
import { resolveConfig } from '../union/config';
import { startUnionMount, type HoldOptions, type RunningMount } from './union-mount';

export interface BindSpec {
  source: string;
  /** Absolute path inside the container root. */
  target: string;
  readonly: boolean;
}

interface Active {
  union: RunningMount;
  /** Bind mounts inside it, in the order made; null: taken over, read from the mount table when unmounting. */
  binds: string[] | null;
}

const MS_BIND = 4096;
const MS_REC = 16384;
const MS_REMOUNT = 32;

export class MountManager {
  private readonly active = new Map<string, Active>();
  /** Containers whose mount was taken over, or lost (for `ps`). */
  private readonly history = new Map<string, 'taken-over' | 'lost'>();
  private passthroughSeen = false;
  /** Where mounts are kept so that they outlive this process (null: they end with it). */
  private hold: { holder: HolderClient; journalDir: string } | null = null;

  constructor(
    private readonly log: Logger,
    /** Called when a mount ends without us (umount from outside, crash of its worker). */
    private readonly onLost: (id: string) => void,
    /** Log settings the mounts' worker threads use (the daemon's own). */
    private readonly workerLog: { level?: string; file?: string } = {},
  ) {}

  get count(): number {
    return this.active.size;
  }

  get passthrough(): boolean {
    return this.passthroughSeen;
  }

  isActive(id: string): boolean {
    return this.active.has(id);
  }

  /** From now on, mounts are kept in `holder` (their state journaled under `journalDir`). */
  keepIn(holder: HolderClient, journalDir: string): void {
    fs.mkdirSync(journalDir, { recursive: true, mode: 0o700 });
    this.hold = { holder, journalDir };
  }

  /** How a container's mount is kept in the holder. */
  holdFor(id: string): HoldOptions | undefined {
    return this.hold ? { holder: this.hold.holder, key: id, journal: path.join(this.hold.journalDir, id), owner: id } : undefined;
  }

  get workerLogSettings(): { level?: string; file?: string } {
    return this.workerLog;
  }

  /** How the container's mount came to be served, or went away (null: mounted here, or never). */
  mountStatus(id: string): 'taken-over' | 'lost' | null {
    return this.history.get(id) ?? null;
  }

  /** A mount that did not survive (recovery could not mount it again). */
  noteLost(id: string): void {
    this.history.set(id, 'lost');
  }

  /**
   * Sends what the container's mount still holds in the kernel's page cache (a served mount's
   * writeback cache) to its writable layer, which diff, commit and export read directly.
   */
  flush(id: string): void {
    const mnt = this.mountpointOf(id);
    if (mnt === undefined) return;
    const rc = native.syncfs(mnt);
    if (rc < 0) this.log.warn({ container: id, errno: -rc }, 'syncfs of the container mount failed');
  }

  mountpointOf(id: string): string | undefined {
    return this.active.get(id)?.union.mountpoint;
  }

  /** A mount another process served, now served here (takeover.ts). */
  adopt(id: string, union: RunningMount): void {
    this.passthroughSeen ||= union.passthrough;
    this.history.set(id, 'taken-over');
    this.track(id, { union, binds: null });
  }

  /** Reports a mount that ends without us (unmounted from outside, or its connection aborted). */
  private track(id: string, entry: Active): void {
    this.active.set(id, entry);
    const target = entry.union.mountpoint;
    entry.union.done.then(() => {
      if (this.active.get(id) === entry) {
        this.active.delete(id);
        entry.union.forget();
        this.history.set(id, 'lost');
        this.log.warn({ container: id, mountpoint: target }, 'container mount went away');
        this.onLost(id);
      }
    });
  }

  /** Live restore: this process stops serving, the mounts stay (kept by the holder for the next one). */
  leaveMounted(): void {
    this.active.clear();
  }

  /** Mounts lowers+upper at `target`, then each bind inside it; `prepare` runs between
   *  (to create mountpoints and fill empty volumes from the image). */
  async mount(
    id: string,
    layers: { lowers: string[]; upper: string; work: string; indexes?: (string | null)[] },
    target: string,
    binds: BindSpec[],
    prepare: (merged: string) => void,
  ): Promise<void> {
    // No redirects: a container's upper dir must hold every change by itself, as a layer (commit) needs.
    const cfg = resolveConfig({ lowers: layers.lowers, upper: layers.upper, work: layers.work, indexes: layers.indexes, redirectDir: false });
    this.history.delete(id);
    const union = await startUnionMount(cfg, target, { fsname: `strata-${id.slice(0, 12)}`, logLevel: this.workerLog.level, logFile: this.workerLog.file, hold: this.holdFor(id) });
    this.passthroughSeen ||= union.passthrough;
    const made: string[] = [];
    this.track(id, { union, binds: made });
    try {
      prepare(target);
      for (const b of binds) {
        const at = target + b.target;
        native.mount(b.source, at, '', MS_BIND | MS_REC, '');
        made.push(at);
        if (b.readonly) native.mount('', at, '', MS_BIND | MS_REMOUNT | native.MS_RDONLY, '');
      }
    } catch (err) {
      await this.unmount(id).catch(() => undefined);
      throw err;
    }
    this.log.info({ container: id, mountpoint: target, binds: binds.length, passthrough: union.passthrough }, 'container mounted');
  }

  async unmount(id: string): Promise<void> {
    const entry = this.active.get(id);
    if (entry === undefined) return;
    this.active.delete(id);
    const target = entry.union.mountpoint;
    // Deepest first; for a mount taken over, what the mount table shows inside it.
    const binds = entry.binds !== null ? [...entry.binds].reverse() : mountsAtOrBelow(target).map((m) => m.mountPoint).filter((m) => m !== target);
    for (const at of binds) {
      try {
        unmount(at);
      } catch (err) {
        this.log.warn({ container: id, at, err: String(err) }, 'bind unmount failed; detaching');
        unmount(at, true);
      }
    }
    await entry.union.unmount();
    this.log.info({ container: id, mountpoint: entry.union.mountpoint }, 'container unmounted');
  }

  /** Every mount at once (shutdown): each unmount is bounded in time, so the whole is too. */
  async unmountAll(): Promise<void> {
    await Promise.all([...this.active.keys()].map((id) => this.unmount(id).catch((err) => this.log.error({ container: id, err: String(err) }, 'unmount failed'))));
  }
}

/**
 * Clears what a crashed strata left at or below `dir`: strata's own FUSE mounts whose server is gone
 * (lazily, with whatever is mounted on them). Nothing else is ever unmounted. Returns the mounts
 * still at or below `dir` afterwards.
 */
export function clearStale(dir: string): MountEntry[] {
  for (const m of mountsAtOrBelow(dir)) {
    if (!isStrataMount(m) || !isDeadFuse(m.mountPoint)) continue;
    try {
      unmount(m.mountPoint, true);
    } catch {
      // already gone
    }
  }
  return mountsAtOrBelow(dir);
}
