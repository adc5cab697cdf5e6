// The command line of strata-mount, as containers-storage and users pass it to
// fuse-overlayfs: `-o opt[,opt...] MOUNTPOINT`.
import type { UnionConfig } from '../union/config';
import { splitLowerdir } from '../union/config';
import { IdMappingError, parseIdMapping } from '../union/idmap';
import type { UnionMountOptions } from '../mounts/union-mount';

export interface MountCommand {
  mountpoint: string;
  lowers: string[];
  upper?: string;
  work?: string;
  union: Omit<UnionConfig, 'lowers' | 'upper' | 'work'>;
  mount: UnionMountOptions;
  foreground: boolean;
  /** -d: log at debug level (implies -f). */
  debug: boolean;
  warnings: string[];
}

export class UsageError extends Error {}

/** Every option and flag parseMountArgs accepts (test/unit/mount-options.test.ts keeps them in step). */
export const USAGE = `usage: strata-mount [-f] [-d] -o lowerdir=L1[:L2...][,upperdir=U,workdir=W][,opts] [SOURCE] MOUNTPOINT
options: lowerdir= upperdir= workdir= ro noatime nosuid nodev noexec acl noacl fsname= volatile fsync=0
         squash_to_root squash_to_uid= squash_to_gid= uidmapping= gidmapping= xattr_permissions=
         redirect_dir=on|follow|off|nofollow xino=on|off|auto index=off metacopy=off userxattr passthrough=0
         accepted with no effect: allow_other default_permissions rw suid dev exec atime relatime async auto user nouser
         (a comma inside a value is written \\,; SOURCE, as fuse-overlayfs takes it, becomes fsname=)
flags:   -f, --foreground (stay in the foreground)  -d, --debug (foreground, debug log)  -V, --version  -h, --help`;

/** Splits an -o value on commas; `\,` keeps a literal comma (paths may hold one). */
function splitOptions(value: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    if (value[i] === '\\' && value[i + 1] === ',') {
      cur += ',';
      i++;
    } else if (value[i] === ',') {
      out.push(cur);
      cur = '';
    } else {
      cur += value[i];
    }
  }
  out.push(cur);
  return out;
}

function parseId(name: string, v: string): number {
  if (!/^\d+$/.test(v)) throw new UsageError(`${name} needs a numeric id, got '${v}'`);
  return Number(v);
}

// Options that set one mount switch.
export const MOUNT_SWITCHES: Record<string, Partial<UnionMountOptions>> = {
  ro: { readOnly: true },
  noatime: { noatime: true },
  nosuid: { nosuid: true },
  nodev: { nodev: true },
  noexec: { noexec: true },
  noacl: { posixAcl: false },
  acl: { posixAcl: true },
};

const REDIRECT_DIR: Record<string, Pick<UnionConfig, 'redirectDir' | 'followRedirects'>> = {
  on: { redirectDir: true, followRedirects: true },
  follow: { redirectDir: false, followRedirects: true },
  off: { redirectDir: false, followRedirects: true },
  nofollow: { redirectDir: false, followRedirects: false },
};

// Options with no effect here: accepted silently (they describe what we always do).
export const ALWAYS = new Set(['allow_other', 'default_permissions', 'rw', 'suid', 'dev', 'exec', 'atime', 'relatime', 'async', 'auto', 'user', 'nouser']);

export function parseMountArgs(argv: string[]): MountCommand {
  const opts: string[] = [];
  const positional: string[] = [];
  let foreground = false;
  let debug = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-o') {
      if (i + 1 >= argv.length) throw new UsageError('-o needs a value');
      opts.push(...splitOptions(argv[++i]));
    } else if (a.startsWith('-o') && a.length > 2) {
      opts.push(...splitOptions(a.slice(2)));
    } else if (a === '-f' || a === '--foreground') {
      foreground = true;
    } else if (a === '-d' || a === '--debug') {
      foreground = true;
      debug = true;
    } else if (a.startsWith('-') && a !== '-') {
      throw new UsageError(`unknown flag ${a}`);
    } else {
      positional.push(a);
    }
  }
  // fuse-overlayfs also takes `source mountpoint`; the source is only a name.
  if (positional.length === 0) throw new UsageError('missing MOUNTPOINT');
  if (positional.length > 2) throw new UsageError(`too many arguments: ${positional.join(' ')}`);
  const cmd: MountCommand = {
    mountpoint: positional[positional.length - 1],
    lowers: [],
    union: {},
    mount: {},
    foreground,
    debug,
    warnings: [],
  };
  if (positional.length === 2) cmd.mount.fsname = positional[0];
  for (const opt of opts) {
    if (opt === '') continue; // containers-storage leaves empty items
    const eq = opt.indexOf('=');
    const key = eq < 0 ? opt : opt.slice(0, eq);
    const val = eq < 0 ? '' : opt.slice(eq + 1);
    if (eq < 0 && key in MOUNT_SWITCHES) {
      Object.assign(cmd.mount, MOUNT_SWITCHES[key]);
      continue;
    }
    switch (key) {
      case 'lowerdir':
        cmd.lowers = splitLowerdir(val);
        break;
      case 'upperdir':
        cmd.upper = val;
        break;
      case 'workdir':
        cmd.work = val;
        break;
      case 'volatile':
        cmd.union.noFsync = true;
        break;
      case 'fsync':
        if (val === '0') cmd.union.noFsync = true;
        else if (val !== '1') throw new UsageError(`fsync takes 0 or 1, got '${val}'`);
        break;
      case 'squash_to_root':
        cmd.union.squashUid = 0;
        cmd.union.squashGid = 0;
        break;
      case 'squash_to_uid':
        cmd.union.squashUid = parseId(key, val);
        break;
      case 'squash_to_gid':
        cmd.union.squashGid = parseId(key, val);
        break;
      case 'uidmapping':
      case 'gidmapping':
        try {
          cmd.union[key === 'uidmapping' ? 'uidMapping' : 'gidMapping'] = parseIdMapping(val);
        } catch (err) {
          if (err instanceof IdMappingError) throw new UsageError(`${key}: ${err.message}`);
          throw err;
        }
        break;
      case 'xattr_permissions':
        if (!['0', '1', '2'].includes(val)) throw new UsageError(`xattr_permissions takes 0, 1 or 2, got '${val}'`);
        cmd.union.xattrPermissions = Number(val);
        break;
      case 'fsname':
        cmd.mount.fsname = val;
        break;
      case 'redirect_dir':
        // As overlayfs: on creates and follows redirects; follow and off (redirect_always_follow) only
        // follow them; nofollow ignores them.
        if (!(val in REDIRECT_DIR)) throw new UsageError(`redirect_dir takes on, follow, off or nofollow, got '${val}'`);
        Object.assign(cmd.union, REDIRECT_DIR[val]);
        break;
      case 'index':
      case 'metacopy':
        // Off by default in overlayfs here too; strata has neither the index nor metacopy-only copy-up.
        if (val !== 'off') throw new UsageError(`${key}=${val} is not supported (only ${key}=off)`);
        break;
      case 'xino':
        // strata always reports unique inode numbers (xino-style high bits), as xino=on would.
        if (!['on', 'off', 'auto'].includes(val)) throw new UsageError(`xino takes on, off or auto, got '${val}'`);
        cmd.union.xino = val === 'on';
        break;
      case 'userxattr':
        // Overlay markers as user.overlay.* (the default without the privilege for trusted.*).
        cmd.union.userxattr = true;
        break;
      case 'passthrough':
        cmd.mount.passthrough = val !== '0' && val !== 'off';
        break;
      default:
        if (ALWAYS.has(key)) break;
        // context=, ... : not honoured.
        cmd.warnings.push(`option '${key}' is not supported and is ignored`);
    }
  }
  if (cmd.lowers.length === 0) throw new UsageError('lowerdir= is required');
  return cmd;
}
