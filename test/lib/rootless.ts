// An unprivileged test user, as rootless containers need one: a fresh account with subordinate
// id ranges in /etc/subuid and /etc/subgid, its own home and XDG_RUNTIME_DIR, and /dev/fuse mode
// 0666 as a normal host has it (udev's default; this machine has 0600). Everything is put back
// by the teardown: /dev/fuse's mode, the id ranges, the account, and any process the account left.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { run, runOk, type RunResult } from './exec';
import { sleepMs } from './mount-table';
import type { TestLike } from './workspace';

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  runtimeDir: string;
  /** First subordinate uid and gid (the container's uid 1 maps there). */
  subuid: number;
  subgid: number;
  /** Runs a program as the user (login-like environment, cwd its home). */
  run(cmd: string, args: string[], env?: Record<string, string>, timeoutMs?: number): RunResult;
}

const SUB_COUNT = 65536;

/** Sets /dev/fuse to 0666 for the test and restores its mode in the teardown. */
export function hostLikeDevFuse(t: TestLike): void {
  const mode = fs.statSync('/dev/fuse').mode & 0o7777;
  if (mode === 0o666) return;
  fs.chmodSync('/dev/fuse', 0o666);
  t.teardown(() => fs.chmodSync('/dev/fuse', mode));
}

function readRanges(file: string): { name: string; start: number; count: number }[] {
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .map((l) => l.trim().split(':'))
    .filter((f) => f.length === 3)
    .map(([name, start, count]) => ({ name, start: Number(start), count: Number(count) }));
}

/** A range of SUB_COUNT ids above every range already handed out in both files. */
function freeSubRange(): number {
  let top = 200_000;
  for (const f of ['/etc/subuid', '/etc/subgid']) for (const r of readRanges(f)) top = Math.max(top, r.start + r.count);
  return top;
}

function removeRangeLines(file: string, name: string): void {
  if (!fs.existsSync(file)) return;
  const kept = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith(name + ':'));
  fs.writeFileSync(file, kept.length ? kept.join('\n') + '\n' : '');
}

/** Pids of the processes running as `uid`. */
function processesOf(uid: number): number[] {
  const out: number[] = [];
  for (const p of fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      const m = /^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m && Number(m[1]) === uid) out.push(Number(p));
    } catch {
      // gone
    }
  }
  return out;
}

/** Creates the user under `ws` (home and runtime dir inside it); removed in the teardown. */
export function createTestUser(t: TestLike, ws: string): TestUser {
  const name = `strt${crypto.randomBytes(3).toString('hex')}`;
  const home = path.join(ws, 'home');
  runOk('useradd', ['-M', '-d', home, '-s', '/bin/sh', '-K', 'SUB_UID_COUNT=0', '-K', 'SUB_GID_COUNT=0', name]);
  const uid = Number(runOk('id', ['-u', name]).trim());
  const gid = Number(runOk('id', ['-g', name]).trim());
  t.teardown(() => {
    // The account's leftovers (rootless podman's pause process, a mount server) are ours to end.
    for (let i = 0; i < 20; i++) {
      const pids = processesOf(uid);
      if (pids.length === 0) break;
      for (const pid of pids) {
        try {
          process.kill(pid, i < 10 ? 'SIGTERM' : 'SIGKILL');
        } catch {
          // already gone
        }
      }
      sleepMs(100);
    }
    run('userdel', ['-f', name]);
    removeRangeLines('/etc/subuid', name);
    removeRangeLines('/etc/subgid', name);
  });
  const sub = freeSubRange();
  fs.appendFileSync('/etc/subuid', `${name}:${sub}:${SUB_COUNT}\n`);
  fs.appendFileSync('/etc/subgid', `${name}:${sub}:${SUB_COUNT}\n`);
  const runtimeDir = path.join(ws, 'xdg');
  for (const d of [home, runtimeDir]) {
    fs.mkdirSync(d, { recursive: true, mode: 0o700 });
    fs.chownSync(d, uid, gid);
    fs.chmodSync(d, 0o700);
  }
  const baseEnv = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: home,
    USER: name,
    LOGNAME: name,
    LC_ALL: 'C',
    XDG_RUNTIME_DIR: runtimeDir,
  };
  return {
    name,
    uid,
    gid,
    home,
    runtimeDir,
    subuid: sub,
    subgid: sub,
    run(cmd, args, env = {}, timeoutMs = 120_000) {
      return run('setpriv', [`--reuid=${uid}`, `--regid=${gid}`, '--init-groups', '--reset-env', '--', 'env', ...Object.entries({ ...baseEnv, ...env }).map(([k, v]) => `${k}=${v}`), cmd, ...args], {
        cwd: home,
        timeout: timeoutMs,
        env: baseEnv,
      });
    },
  };
}
