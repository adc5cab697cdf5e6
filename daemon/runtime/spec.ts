// OCI runtime bundles: the config.json runc reads, written for a container root
// that strata has already mounted (root.path = the merged union directory).
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Docker's default capability set. */
export const DEFAULT_CAPS = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

export interface ProcessUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  home: string;
}

export interface BundleSpec {
  /** The container's root: an already mounted directory. */
  rootfs: string;
  args: string[];
  env: string[];
  cwd: string;
  user: ProcessUser;
  terminal: boolean;
  hostNetwork: boolean;
  hostname: string;
}

function parsePasswd(text: string): { name: string; uid: number; gid: number; home: string }[] {
  return text
    .split('\n')
    .map((l) => l.split(':'))
    .filter((f) => f.length >= 7 && /^\d+$/.test(f[2]) && /^\d+$/.test(f[3]))
    .map((f) => ({ name: f[0], uid: Number(f[2]), gid: Number(f[3]), home: f[5] }));
}

function parseGroup(text: string): { name: string; gid: number; members: string[] }[] {
  return text
    .split('\n')
    .map((l) => l.split(':'))
    .filter((f) => f.length >= 3 && /^\d+$/.test(f[2]))
    .map((f) => ({ name: f[0], gid: Number(f[2]), members: (f[3] ?? '').split(',').filter(Boolean) }));
}

function readInRoot(rootfs: string, file: string): string {
  try {
    // The container's files are the user's: refuse to follow a symlink out of the root.
    const p = path.join(rootfs, file);
    if (fs.lstatSync(p).isSymbolicLink()) return '';
    return fs.readFileSync(p, 'utf8');
  } catch {
    return '';
  }
}

export class UserError extends Error {}

/**
 * Resolves USER / -u: "uid", "uid:gid", "name", "name:group" (names through the
 * rootfs's /etc/passwd and /etc/group, as docker does). Empty means root.
 */
export function resolveUser(rootfs: string, spec: string): ProcessUser {
  const s = spec.trim();
  if (s === '') return { uid: 0, gid: 0, additionalGids: [], home: '/root' };
  const [u, g] = s.split(':', 2);
  const passwd = parsePasswd(readInRoot(rootfs, 'etc/passwd'));
  const groups = parseGroup(readInRoot(rootfs, 'etc/group'));
  let uid: number;
  let gid = 0;
  let home = '/';
  let name: string | undefined;
  const entry = /^\d+$/.test(u) ? passwd.find((p) => p.uid === Number(u)) : passwd.find((p) => p.name === u);
  if (/^\d+$/.test(u)) {
    uid = Number(u);
    if (entry) ({ gid, home, name } = entry);
  } else {
    if (!entry) throw new UserError(`unable to find user ${u}: no matching entries in passwd file`);
    ({ uid, gid, home, name } = entry);
  }
  if (g !== undefined && g !== '') {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      const ge = groups.find((x) => x.name === g);
      if (!ge) throw new UserError(`unable to find group ${g}: no matching entries in group file`);
      gid = ge.gid;
    }
  }
  const additionalGids = name === undefined || (g !== undefined && g !== '') ? [] : groups.filter((x) => x.members.includes(name!) && x.gid !== gid).map((x) => x.gid);
  if (uid === 0 && home === '/') home = entry?.home ?? '/root';
  return { uid, gid, additionalGids, home: home || '/' };
}

/** Env with HOME and PATH filled in when the image does not set them. */
export function processEnv(env: string[], user: ProcessUser): string[] {
  const out = [...env];
  const has = (k: string) => out.some((e) => e.startsWith(k + '='));
  if (!has('PATH')) out.unshift('PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  if (!has('HOME')) out.push(`HOME=${user.home}`);
  return out;
}

/** Merges K=V lists: later keys replace earlier ones, order of first appearance kept. */
export function mergeEnv(...lists: string[][]): string[] {
  const m = new Map<string, string>();
  for (const l of lists) {
    for (const e of l) {
      const eq = e.indexOf('=');
      const k = eq < 0 ? e : e.slice(0, eq);
      m.set(k, eq < 0 ? '' : e.slice(eq + 1));
    }
  }
  return [...m].map(([k, v]) => `${k}=${v}`);
}

/** The OCI runtime config (runtime-spec 1.0) for one process in a prepared root. */
export function runtimeConfig(b: BundleSpec): Record<string, unknown> {
  const caps = b.user.uid === 0 ? DEFAULT_CAPS : [];
  const namespaces = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  if (!b.hostNetwork) namespaces.push({ type: 'network' });
  const mounts: Record<string, unknown>[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
  ];
  if (b.hostNetwork) {
    // Name resolution as on the host; only where the image has the file, so nothing is created in its layer.
    for (const f of ['/etc/resolv.conf', '/etc/hosts']) {
      if (fs.existsSync(f) && fs.existsSync(path.join(b.rootfs, f))) {
        mounts.push({ destination: f, type: 'bind', source: f, options: ['rbind', 'ro', 'nosuid', 'nodev'] });
      }
    }
  }
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: b.terminal,
      user: { uid: b.user.uid, gid: b.user.gid, additionalGids: b.user.additionalGids.length ? b.user.additionalGids : undefined },
      args: b.args,
      env: b.env,
      cwd: b.cwd || '/',
      capabilities: { bounding: DEFAULT_CAPS, effective: caps, permitted: caps, inheritable: [], ambient: [] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 20000, soft: 20000 }],
      noNewPrivileges: true,
    },
    root: { path: b.rootfs, readonly: false },
    hostname: b.hostname,
    mounts,
    linux: {
      namespaces,
      maskedPaths: [
        '/proc/asound',
        '/proc/acpi',
        '/proc/kcore',
        '/proc/keys',
        '/proc/latency_stats',
        '/proc/timer_list',
        '/proc/timer_stats',
        '/proc/sched_debug',
        '/proc/scsi',
        '/sys/firmware',
      ],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

/** Writes <bundle>/config.json (creating the bundle dir). */
export function writeBundle(bundle: string, b: BundleSpec): void {
  fs.mkdirSync(bundle, { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(runtimeConfig(b), null, 2), { mode: 0o600 });
}
