// This mount namespace's mount table (/proc/self/mountinfo), and the FUSE connection control files
// (/sys/fs/fuse/connections/N/abort) that end a connection whatever still holds it.
import * as fs from 'node:fs';
import * as native from '../../native-shims';
import { readMountinfo, type MountEntry } from '../util/mountinfo';

export type { MountEntry };

export function mountTable(): MountEntry[] {
  return readMountinfo();
}

/** Mounts at `dir` or below it, deepest first. */
export function mountsAtOrBelow(dir: string, table = mountTable()): MountEntry[] {
  const d = dir.replace(/\/+$/, '') || '/';
  return table
    .filter((m) => m.mountPoint === d || d === '/' || m.mountPoint.startsWith(d + '/'))
    .sort((a, b) => b.mountPoint.length - a.mountPoint.length);
}

/** strata's own union mounts (stratad's containers and exports, strata-mount): fuse.strata. */
export function isStrataMount(m: MountEntry): boolean {
  return m.fsType === 'fuse.strata';
}

/** A FUSE mount whose server is gone: every access fails with ENOTCONN. */
export function isDeadFuse(mountPoint: string): boolean {
  try {
    fs.statSync(mountPoint);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOTCONN';
  }
}

const CONNECTIONS = '/sys/fs/fuse/connections';

/**
 * Aborts FUSE connection `dev`: requests in flight and later ones fail with ENOTCONN, in every
 * mount namespace that still holds a copy of the mount, and the server's reads end. Mounts the
 * fusectl filesystem first when the host has not (as systemd would have).
 */
function abortFuseConnection(dev: number): boolean {
  const file = `${CONNECTIONS}/${dev}/abort`;
  if (!fs.existsSync(file) && fs.existsSync(CONNECTIONS) && fs.readdirSync(CONNECTIONS).length === 0) {
    try {
      native.mount('fusectl', CONNECTIONS, 'fusectl', 0, '');
    } catch {
      // not permitted or already there
    }
  }
  try {
    fs.writeFileSync(file, '1');
    return true;
  } catch {
    return false;
  }
}

/** Whether the FUSE connection behind `devFd` (a /dev/fuse fd of ours) is still up: an ended one polls EPOLLERR. */
export function fuseConnectionUp(devFd: number): boolean {
  const ep = native.epollCreate();
  if (ep < 0) return true;
  try {
    if (native.epollCtl(ep, native.EPOLL_CTL_ADD, devFd, native.EPOLLIN) < 0) return false;
    const out = Buffer.alloc(8 * 64);
    const n = native.epollWait(ep, out, 0);
    return !(n > 0 && (out.readUInt32LE(0) & native.EPOLLERR) !== 0);
  } finally {
    fs.closeSync(ep);
  }
}

/**
 * Aborts our own FUSE connection `dev`, reached through `devFd`, only while it is still up: once
 * it has ended, its device number may already name another server's mount.
 */
export function abortOwnFuseConnection(devFd: number, dev: number): boolean {
  return fuseConnectionUp(devFd) && abortFuseConnection(dev);
}
