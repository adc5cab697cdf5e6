// Container root filesystems: a union mount per container, plus the volume and
// bind mounts placed inside it. Tracks what is mounted and undoes it in order.
import * as fs from 'node:fs';
import * as native from '../../native-shims';
import { isMounted, unmount } from '../fuse/mount';
import type { Logger } from '../log';
import { resolveConfig } from '../union/config';
import { startUnionMount, type RunningMount } from './union-mount';

export interface BindSpec {
  source: string;
  /** Absolute path inside the container root. */
  target: string;
  readonly: boolean;
}

interface Active {
  union: RunningMount;
  binds: string[];
}

const MS_BIND = 4096;
const MS_REC = 16384;
const MS_REMOUNT = 32;

export class MountManager {
  private readonly active = new Map<string, Active>();
  private passthroughSeen = false;

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

  /** Mounts lowers+upper at `target`, then each bind inside it; `prepare` runs between
   *  (to create mountpoints and fill empty volumes from the image). */
  async mount(
    id: string,
    layers: { lowers: string[]; upper: string; work: string },
    target: string,
    binds: BindSpec[],
    prepare: (merged: string) => void,
  ): Promise<void> {
    clearStale(target);
    fs.mkdirSync(target, { recursive: true });
    // No redirects: a container's upper dir must hold every change by itself, as a layer (commit) needs.
    const cfg = resolveConfig({ lowers: layers.lowers, upper: layers.upper, work: layers.work, redirectDir: false });
    const union = await startUnionMount(cfg, target, { fsname: `strata-${id.slice(0, 12)}`, logLevel: this.workerLog.level, logFile: this.workerLog.file });
    this.passthroughSeen ||= union.passthrough;
    const entry: Active = { union, binds: [] };
    this.active.set(id, entry);
    union.done.then(() => {
      if (this.active.get(id) === entry) {
        this.active.delete(id);
        this.log.warn({ container: id, mountpoint: target }, 'container mount went away');
        this.onLost(id);
      }
    });
    try {
      prepare(target);
      for (const b of binds) {
        const at = target + b.target;
        native.mount(b.source, at, '', MS_BIND | MS_REC, '');
        entry.binds.push(at);
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
    for (const at of [...entry.binds].reverse()) {
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

  async unmountAll(): Promise<void> {
    for (const id of [...this.active.keys()]) {
      await this.unmount(id).catch((err) => this.log.error({ container: id, err: String(err) }, 'unmount failed'));
    }
  }
}

/** Lazily unmounts whatever is mounted at or below `dir` (a crashed daemon's dead FUSE mounts). */
export function clearStale(dir: string): string[] {
  const target = dir.replace(/\/+$/, '');
  const mounts = fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === target || p.startsWith(target + '/'))
    .sort((a, b) => b.length - a.length);
  for (const p of mounts) {
    try {
      unmount(p, true);
    } catch {
      // already gone
    }
  }
  return mounts.filter((p) => !isMounted(p));
}
