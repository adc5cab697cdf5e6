// A small busybox image for build/run tests: a static busybox with its applets as
// symlinks, /etc/passwd and /etc/group (root, user 1000), tarred and `strata image import`ed.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hasCommand, runOk } from './exec';
import type { Daemon } from './daemon';

export function findStaticBusybox(): string | null {
  for (const c of ['/bin/busybox', '/usr/bin/busybox']) {
    try {
      if (!fs.statSync(c).isFile()) continue;
      const out = runOk('file', ['-L', c]);
      if (/statically linked|static-pie/.test(out)) return c;
    } catch {
      // next
    }
  }
  return null;
}

/** Builds the busybox rootfs under `dir` and tars it; returns the tar's path. */
export function buildBusyboxRootfs(dir: string): string {
  const busybox = findStaticBusybox();
  if (busybox === null) throw new Error('no statically linked busybox (install busybox-static)');
  const rootfs = path.join(dir, 'rootfs');
  for (const sub of ['bin', 'etc', 'tmp', 'dev', 'proc', 'sys', 'root', 'opt', 'home/user']) fs.mkdirSync(path.join(rootfs, sub), { recursive: true });
  fs.chmodSync(path.join(rootfs, 'tmp'), 0o1777);
  fs.copyFileSync(busybox, path.join(rootfs, 'bin/busybox'));
  fs.chmodSync(path.join(rootfs, 'bin/busybox'), 0o755);
  for (const applet of runOk(busybox, ['--list']).split('\n').filter(Boolean)) {
    if (applet !== 'busybox') fs.symlinkSync('busybox', path.join(rootfs, 'bin', applet));
  }
  fs.writeFileSync(path.join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n');
  fs.writeFileSync(path.join(rootfs, 'etc/group'), 'root:x:0:\nuser:x:1000:\nstaff:x:50:user\n');
  fs.chownSync(path.join(rootfs, 'home/user'), 1000, 1000);
  const tar = path.join(dir, 'base.tar');
  runOk('tar', ['-C', rootfs, '-cf', tar, '.']);
  return tar;
}

/** Builds the rootfs under `dir` and imports it into the daemon as `ref`. Returns the image id. */
export function importBusyboxImage(d: Daemon, dir: string, ref = 'base'): string {
  const tar = buildBusyboxRootfs(dir);
  const r = d.cli(['image', 'import', tar, ref]);
  if (r.status !== 0) throw new Error(`image import failed: ${r.stderr}`);
  return r.stdout.trim();
}

/** Why tests that run containers through runc cannot run here, or false when they can. */
export function runtimeSkipReason(): string | false {
  if (process.geteuid?.() !== 0) return 'needs root';
  if (!fs.existsSync('/dev/fuse')) return 'no /dev/fuse';
  if (!hasCommand('runc')) return 'runc is not installed';
  if (findStaticBusybox() === null) return 'no static busybox (busybox-static)';
  return false;
}
