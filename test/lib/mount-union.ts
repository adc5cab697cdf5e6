// Mounting the union under test (strata-mount) and the kernel overlayfs oracle; the test run's capabilities.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run } from './exec';
import { isMounted, listMounts, rmTree, sleepMs, unmount, unmountUnder } from './mount-table';
import { TEST_ROOT, TestLike } from './workspace';
import { testEnv } from './env';

export { unmount, isMounted } from './mount-table';

export interface MountSpec {
  /** lower layers, topmost first (same order as lowerdir=) */
  lowers: string[];
  upper?: string;
  work?: string;
  mnt: string;
  /** extra comma-separated -o options */
  extraOpts?: string[];
  /** extra environment for the mount program (e.g. STRATA_LOG_LEVEL) */
  env?: Record<string, string>;
  /** mount with each program's own defaults instead of the oracle options below */
  programDefaults?: boolean;
  /** strata only: serve the lowers' metadata from indexes kept (and built) in this dir */
  indexDir?: string;
}

/** Whether differential tests index the lowers by default: STRATA_TEST_INDEX=1 runs them all with indexes. */
export const INDEX_BY_DEFAULT = process.env.STRATA_TEST_INDEX === '1';

/** Repository root (directory holding package.json + Makefile), found upwards from this file. */
export function repoRoot(): string {
  let d = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(d, 'package.json')) && fs.existsSync(path.join(d, 'Makefile'))) return d;
    const up = path.dirname(d);
    if (up === d) return path.resolve(__dirname, '..', '..', '..');
    d = up;
  }
}

/** The mount program under test: $STRATA_MOUNT_PROGRAM or <repo>/bin/strata-mount. */
export function strataProgram(): string {
  return process.env.STRATA_MOUNT_PROGRAM || path.join(repoRoot(), 'bin', 'strata-mount');
}

/** Kernel overlay options used for the oracle (redirect_dir=on so lower dirs can be renamed). */
export const KERNEL_OPTS = ['redirect_dir=on', 'index=off', 'metacopy=off', 'xino=off'];
/** The same behaviour asked of strata (its other defaults already match the kernel's). */
export const STRATA_OPTS = ['redirect_dir=on'];

function layerOpts(spec: MountSpec): string[] {
  const o = [`lowerdir=${spec.lowers.join(':')}`];
  if (spec.upper) {
    if (!spec.work) throw new Error('upperdir requires workdir');
    o.push(`upperdir=${spec.upper}`, `workdir=${spec.work}`);
  }
  return o;
}

function waitMounted(mnt: string, ms: number): boolean {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (isMounted(mnt)) return true;
    sleepMs(20);
  }
  return isMounted(mnt);
}

function registerUnmount(t: TestLike | undefined, mnt: string): void {
  if (!t) return;
  t.teardown(() => {
    try {
      unmount(mnt);
    } catch (e) {
      console.error(`# unmount of ${mnt} failed: ${String(e)}`);
    }
  });
}

/** Mount the union under test. Throws with the program's stderr if it fails or the mount never appears. */
export function mountStrata(t: TestLike | undefined, spec: MountSpec): void {
  const prog = strataProgram();
  fs.mkdirSync(spec.mnt, { recursive: true });
  const index = spec.indexDir ? [`index_dir=${spec.indexDir}`] : [];
  const opts = [...layerOpts(spec), ...(spec.programDefaults ? [] : STRATA_OPTS), ...index, ...(spec.extraOpts ?? [])].join(',');
  registerUnmount(t, spec.mnt);
  const env = testEnv(spec.env);
  const r = run(prog, ['-o', opts, spec.mnt], { timeout: 30_000, env });
  if (r.status !== 0) {
    throw new Error(`${prog} -o ${opts} ${spec.mnt} exited ${r.status}: ${r.stderr.trim()}`);
  }
  if (!waitMounted(spec.mnt, 10_000)) {
    throw new Error(`${prog} exited 0 but ${spec.mnt} is not mounted`);
  }
}

/** Mount kernel overlayfs as the oracle. */
export function mountKernelOverlay(t: TestLike | undefined, spec: MountSpec): void {
  fs.mkdirSync(spec.mnt, { recursive: true });
  const opts = [...layerOpts(spec), ...(spec.programDefaults ? [] : KERNEL_OPTS), ...(spec.extraOpts ?? [])].join(',');
  registerUnmount(t, spec.mnt);
  const r = run('mount', ['-t', 'overlay', 'overlay', '-o', opts, spec.mnt]);
  if (r.status !== 0) {
    throw new Error(`mount -t overlay -o ${opts} ${spec.mnt} failed: ${r.stderr.trim()}`);
  }
}

/** pid embedded in a workspace name (`<label>-<pid>-<hex>`), if any */
function ownerPid(workspaceName: string): number | null {
  const m = /-(\d+)-[0-9a-f]+$/.exec(workspaceName);
  return m ? Number(m[1]) : null;
}

/** The process exists (EPERM: it does, as another user's). */
export function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Lazily unmount every fuse/overlay mount below /tmp/strata-test left by a crashed run and delete leftovers.
 * Workspaces whose creating process is still alive (a concurrent run) are left alone.
 */
export function clearStaleMounts(): { unmounted: string[]; removed: string[] } {
  const prefix = TEST_ROOT + '/';
  const unmounted: string[] = [];
  const removed: string[] = [];
  if (!fs.existsSync(TEST_ROOT)) return { unmounted, removed };
  const isLive = (name: string) => {
    const pid = ownerPid(name);
    return pid !== null && alive(pid);
  };
  const stale = listMounts()
    .filter((m) => m.mountPoint.startsWith(prefix) && (m.fsType === 'overlay' || m.fsType.startsWith('fuse')))
    .filter((m) => !isLive(m.mountPoint.slice(prefix.length).split('/')[0] ?? ''));
  for (const m of stale) unmounted.push(m.mountPoint);
  for (const name of fs.readdirSync(TEST_ROOT)) {
    if (isLive(name)) continue;
    const p = path.join(TEST_ROOT, name);
    unmountUnder(p);
    try {
      rmTree(p);
      removed.push(p);
    } catch (e) {
      console.error(`# could not remove stale ${p}: ${String(e)}`);
    }
  }
  return { unmounted, removed };
}

export interface Capabilities {
  fuse: boolean;
  overlay: boolean;
  root: boolean;
}

export function capabilities(): Capabilities {
  let overlay = false;
  try {
    overlay = /\toverlay$/m.test(fs.readFileSync('/proc/filesystems', 'utf8'));
  } catch {
    overlay = false;
  }
  if (!overlay) overlay = run('modprobe', ['overlay']).status === 0 && /\toverlay$/m.test(fs.readFileSync('/proc/filesystems', 'utf8'));
  return { fuse: fs.existsSync('/dev/fuse'), overlay, root: process.getuid?.() === 0 };
}

/**
 * Returns a reason string when the machine lacks what the test needs (skip), or null.
 * Absence of the program under test is NOT a reason to skip: that must fail.
 */
export function missingCapability(needs: { fuse?: boolean; overlay?: boolean }): string | null {
  const c = capabilities();
  if (!c.root) return 'tests need root (mount, mknod, trusted.* xattrs)';
  if (needs.fuse && !c.fuse) return '/dev/fuse is not present';
  if (needs.overlay && !c.overlay) return 'kernel overlayfs is not available (/proc/filesystems)';
  return null;
}
