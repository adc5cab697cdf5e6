// Mounting a FUSE filesystem without libfuse: open /dev/fuse, then mount(2) with its fd.
import * as fs from 'node:fs';
import * as native from '../../native-shims';

export interface FuseMountOptions {
  /** Shown as the mount source in /proc/mounts. */
  fsname: string;
  /** Mount type becomes fuse.<subtype>. */
  subtype: string;
  readOnly?: boolean;
  noatime?: boolean;
  nosuid?: boolean;
  nodev?: boolean;
  noexec?: boolean;
}

export class MountError extends Error {}

/** Opens the FUSE device; the returned fd is the connection once mounted. */
export function openFuseDevice(): number {
  try {
    return fs.openSync('/dev/fuse', fs.constants.O_RDWR);
  } catch (err) {
    throw new MountError(`cannot open /dev/fuse: ${(err as Error).message} (is the fuse module loaded?)`);
  }
}

export function mountFuse(devFd: number, mountpoint: string, opts: FuseMountOptions): void {
  let flags = 0;
  if (opts.readOnly) flags |= native.MS_RDONLY;
  if (opts.noatime) flags |= native.MS_NOATIME;
  if (opts.nosuid) flags |= native.MS_NOSUID;
  if (opts.nodev) flags |= native.MS_NODEV;
  if (opts.noexec) flags |= native.MS_NOEXEC;
  // default_permissions: the kernel checks modes itself, as overlayfs does.
  const data = `fd=${devFd},rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other`;
  const source = opts.fsname.replace(/[\s,]/g, '_') || opts.subtype;
  try {
    native.mount(source, mountpoint, `fuse.${opts.subtype}`, flags, data);
  } catch (err) {
    throw new MountError(`mount of ${mountpoint} failed: ${(err as Error).message}`);
  }
}

/** Unmounts; lazily (MNT_DETACH) when asked or when the mount is busy. */
export function unmount(mountpoint: string, lazy = false): void {
  try {
    native.umount2(mountpoint, lazy ? native.MNT_DETACH : 0);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EBUSY' && !lazy) return unmount(mountpoint, true);
    throw err;
  }
}

/** True when `dir` is a mountpoint in this mount namespace. */
export function isMounted(dir: string): boolean {
  const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  const target = dir.replace(/\/+$/, '') || '/';
  for (const line of mounts.split('\n')) {
    const f = line.split(' ');
    if (f.length > 4 && unescapeMountPath(f[4]) === target) return true;
  }
  return false;
}

function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}
