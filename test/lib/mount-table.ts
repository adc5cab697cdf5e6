// The mount table (parsed by daemon/util/mountinfo.ts) and robust unmounting of what tests mounted.
import { readMountinfo, type MountEntry } from '../../daemon/util/mountinfo';
import { run } from './exec';

export type MountInfo = MountEntry;

export function listMounts(): MountInfo[] {
  return readMountinfo();
}

export function isMounted(mnt: string): boolean {
  return listMounts().some((m) => m.mountPoint === mnt);
}

export function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Unmount `mnt` (all stacked mounts on it): plain umount with a few retries, then lazy. Never throws. */
export function unmount(mnt: string): void {
  for (let i = 0; i < 50 && isMounted(mnt); i++) {
    // bounded: a hung FUSE daemon must not hang the test run
    const r = run('umount', [mnt], { timeout: 15_000 });
    if (r.status === 0) continue;
    if (i >= 4) {
      run('umount', ['-l', mnt], { timeout: 15_000 });
      const m = listMounts().find((x) => x.mountPoint === mnt);
      if (m && m.fsType.startsWith('fuse')) run('fusermount3', ['-uz', mnt], { timeout: 15_000 });
    } else {
      sleepMs(100);
    }
  }
}

/** Lazily unmount everything mounted at or below `dir`, deepest first (`lazyOnly`: skip the plain umount try). */
export function unmountUnder(dir: string, lazyOnly = false): void {
  const prefix = dir.endsWith('/') ? dir : dir + '/';
  const victims = listMounts()
    .map((m) => m.mountPoint)
    .filter((p) => p === dir || p.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
  for (const p of victims) {
    const r = lazyOnly ? { status: 1 } : run('umount', [p], { timeout: 15_000 });
    if (r.status !== 0) {
      run('umount', ['-l', p], { timeout: 15_000 });
      if (isMounted(p)) run('fusermount3', ['-uz', p], { timeout: 15_000 });
    }
  }
}

/**
 * Remove a tree with rm(1): unlike fs.rmSync it copes with paths longer than PATH_MAX (deep-path tests), and
 * --one-file-system keeps it from descending into anything still mounted below.
 */
export function rmTree(p: string): void {
  const r = run('rm', ['-rf', '--one-file-system', '--', p]);
  if (r.status !== 0) throw new Error(`rm -rf ${p}: ${r.stderr.trim()}`);
}
