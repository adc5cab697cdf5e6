// Mounting a FUSE filesystem without libfuse. With CAP_SYS_ADMIN over the mount
// namespace (root, or inside a user namespace that owns it, where rootless podman
// runs us) we open /dev/fuse and mount(2) ourselves; otherwise fusermount3 mounts
// and hands the /dev/fuse fd back over a Unix socket (libfuse's _FUSE_COMMFD protocol).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as native from '../../native-shims';
import { readMountinfo } from '../util/mountinfo';

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

/** A mounted FUSE connection: the /dev/fuse fd to serve and how it was mounted. */
export interface FuseConnection {
  fd: number;
  via: 'mount' | 'fusermount3';
}

export class MountError extends Error {}

const CAP_SYS_ADMIN = 21n;
const FUSERMOUNT = 'fusermount3';

/** The effective capability set of this process. */
function effectiveCaps(): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? BigInt('0x' + m[1]) : 0n;
}

/** CAP_SYS_ADMIN in our own user namespace (enough for mount(2) where that namespace owns the mount namespace). */
export function hasSysAdmin(): boolean {
  return ((effectiveCaps() >> CAP_SYS_ADMIN) & 1n) === 1n;
}

/** True in the initial user namespace (its uid_map is the identity over every id). */
export function inInitialUserNs(): boolean {
  try {
    const lines = fs.readFileSync('/proc/self/uid_map', 'utf8').trim().split('\n');
    return lines.length === 1 && lines[0].trim().split(/\s+/).join(' ') === '0 0 4294967295';
  } catch {
    return false;
  }
}

/**
 * Whether FUSE passthrough can work here: the kernel registers backing files only for
 * CAP_SYS_ADMIN in the initial user namespace (fuse-facts.md). Also what may write trusted.* xattrs.
 */
export function privilegedHost(): boolean {
  return inInitialUserNs() && hasSysAdmin();
}

function mountFlags(opts: FuseMountOptions): number {
  let flags = 0;
  if (opts.readOnly) flags |= native.MS_RDONLY;
  if (opts.noatime) flags |= native.MS_NOATIME;
  if (opts.nosuid) flags |= native.MS_NOSUID;
  if (opts.nodev) flags |= native.MS_NODEV;
  if (opts.noexec) flags |= native.MS_NOEXEC;
  return flags;
}

function sourceName(opts: FuseMountOptions): string {
  return opts.fsname.replace(/[\s,]/g, '_') || opts.subtype;
}

/** Opens the FUSE device; the returned fd is the connection once mounted. */
export function openFuseDevice(): number {
  try {
    return fs.openSync('/dev/fuse', fs.constants.O_RDWR);
  } catch (err) {
    throw new MountError(`cannot open /dev/fuse: ${(err as Error).message} (is the fuse module loaded, and /dev/fuse mode 0666 for unprivileged users?)`);
  }
}

/** mount(2) of an open /dev/fuse fd. user_id/group_id are ours, as ids of our own user namespace. */
function mountDirect(devFd: number, mountpoint: string, opts: FuseMountOptions): void {
  // default_permissions: the kernel checks modes itself, as overlayfs does.
  const data = `fd=${devFd},rootmode=40000,user_id=${process.geteuid!()},group_id=${process.getegid!()},default_permissions,allow_other`;
  native.mount(sourceName(opts), mountpoint, `fuse.${opts.subtype}`, mountFlags(opts), data);
}

/** allow_other through fusermount3 needs `user_allow_other` in /etc/fuse.conf unless we are root. */
function allowOtherPermitted(): boolean {
  if (process.geteuid?.() === 0) return true;
  try {
    return /^\s*user_allow_other\s*$/m.test(fs.readFileSync('/etc/fuse.conf', 'utf8'));
  } catch {
    return false;
  }
}

/** Mounts through fusermount3, which sends back the /dev/fuse fd (SCM_RIGHTS on _FUSE_COMMFD). */
function mountWithFusermount(mountpoint: string, opts: FuseMountOptions): number {
  const o = ['default_permissions', `fsname=${sourceName(opts)}`, `subtype=${opts.subtype}`];
  if (allowOtherPermitted()) o.push('allow_other');
  if (opts.readOnly) o.push('ro');
  if (opts.noatime) o.push('noatime');
  if (opts.nosuid) o.push('nosuid');
  if (opts.nodev) o.push('nodev');
  if (opts.noexec) o.push('noexec');
  const [ours, theirs] = native.socketpair();
  try {
    const r = spawnSync(FUSERMOUNT, ['-o', o.join(','), '--', mountpoint], {
      stdio: ['ignore', 'ignore', 'pipe', theirs],
      env: { ...process.env, _FUSE_COMMFD: '3' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    fs.closeSync(theirs); // so a fusermount3 that sent nothing reads as end of file
    if (r.error) throw new MountError(`cannot run ${FUSERMOUNT}: ${r.error.message} (install the fuse3 package)`);
    const fd = r.status === 0 ? native.recvFd(ours) : -1;
    if (fd < 0) throw new MountError(`${FUSERMOUNT} could not mount ${mountpoint}: ${(r.stderr || `exit status ${r.status}`).trim()}`);
    return fd;
  } finally {
    fs.closeSync(ours);
  }
}

/**
 * Mounts a FUSE filesystem at `mountpoint`: mount(2) when we hold CAP_SYS_ADMIN (in the initial
 * user namespace, or in one that owns our mount namespace), else, or when the kernel refuses
 * that with EPERM, through fusermount3.
 */
export function mountFuse(mountpoint: string, opts: FuseMountOptions): FuseConnection {
  if (hasSysAdmin()) {
    const devFd = openFuseDevice();
    try {
      mountDirect(devFd, mountpoint, opts);
      return { fd: devFd, via: 'mount' };
    } catch (err) {
      fs.closeSync(devFd);
      if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw new MountError(`mount of ${mountpoint} failed: ${(err as Error).message}`);
    }
  }
  return { fd: mountWithFusermount(mountpoint, opts), via: 'fusermount3' };
}

/** Unmounts; lazily (MNT_DETACH) when asked or when the mount is busy. Without the privilege, through `fusermount3 -u`. */
export function unmount(mountpoint: string, lazy = false): void {
  try {
    native.umount2(mountpoint, lazy ? native.MNT_DETACH : 0);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EBUSY' && !lazy) return unmount(mountpoint, true);
    if (code !== 'EPERM') throw err;
    const r = spawnSync(FUSERMOUNT, ['-u', ...(lazy ? ['-z'] : []), '--', mountpoint], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', timeout: 30_000 });
    if (r.status === 0) return;
    if (!lazy && /busy/i.test(r.stderr ?? '')) return unmount(mountpoint, true);
    throw Object.assign(new Error(`${FUSERMOUNT} -u ${mountpoint} failed: ${(r.error?.message ?? r.stderr ?? '').trim()}`), { code: 'EPERM' });
  }
}

/** True when `dir` is a mountpoint in this mount namespace. */
export function isMounted(dir: string): boolean {
  const target = dir.replace(/\/+$/, '') || '/';
  return readMountinfo().some((m) => m.mountPoint === target);
}
