// Unmount and shutdown while another mount namespace holds copies of the mounts (issue 9, point 9):
// strata detaches promptly, ends the FUSE connection so the copies fail with ENOTCONN instead of
// hanging, reports the state as it is, and stops with 50 mounts within 5 s.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import type { ContainerRow } from '../cli/commands/containers';
import { type RunResult, run, runOk } from './lib/exec';
import { startDaemon, type Daemon } from './lib/daemon';
import { missingCapability } from './lib/mount-union';
import { listMounts } from './lib/mount-table';
import { jsonLines, ok } from './lib/expect';
import { makeWorkspace } from './lib/workspace';
import { mountFuse, unmount as fuseUnmount } from '../daemon/fuse/mount';
import { abortOwnFuseConnection, fuseConnectionUp } from '../daemon/mounts/mount-table';
import * as native from '../native-shims';

const skip = missingCapability({ fuse: true });
const opts = { skip: skip ?? false };

async function daemonWithBase(t: Test, label: string): Promise<Daemon> {
  const d = await startDaemon(t, { label });
  const dir = path.join(d.ws, 'rootfs');
  fs.mkdirSync(path.join(dir, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'etc', 'motd'), 'hello\n');
  ok(t, d.cli(['image', 'import', dir, 'base:1']), 'import');
  return d;
}

/** A process in a new private mount namespace (a copy of every mount there is now), until killed. */
async function holdCopies(t: Test): Promise<ChildProcess> {
  const p = spawn('unshare', ['-m', '--propagation', 'private', 'sleep', '120'], { stdio: 'ignore' });
  t.teardown(() => {
    p.kill('SIGKILL');
  });
  // wait until sleep runs in its own namespace
  for (let i = 0; i < 100; i++) {
    try {
      if (fs.readlinkSync(`/proc/${p.pid}/ns/mnt`) !== fs.readlinkSync('/proc/self/ns/mnt') && fs.readFileSync(`/proc/${p.pid}/comm`, 'utf8').trim() === 'sleep') return p;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('unshare did not start');
}

let probe = 0;
/**
 * Looks up a name never asked before under `dir` inside the namespace of `pid`, so the kernel must
 * ask the filesystem (no cached entry): a live mount answers "No such file or directory", an ended
 * one "Transport endpoint is not connected". Bounded: a hung mount must not hang the test.
 */
function probeIn(pid: number, dir: string): string {
  return run('timeout', ['5', 'nsenter', '-t', String(pid), '-m', 'stat', path.join(dir, `probe-${process.pid}-${probe++}`)]).stderr;
}

const LIVE = /No such file or directory/;
const ENDED = /Transport endpoint is not connected/;

const ps = (d: Daemon) => jsonLines<ContainerRow>(ok(t, d.cli(['ps', '-a', '--format', 'json']), 'ps'));

t.test('unmount while another namespace holds a copy: prompt, the copy gets ENOTCONN, state as it is', opts, async (t) => {
  const d = await daemonWithBase(t, 'u-copy');
  ok(t, d.cli(['container', 'create', '--name', 'c', 'base:1']), 'create');
  const merged = ok(t, d.cli(['container', 'mount', 'c']), 'mount');
  const holder = await holdCopies(t);
  t.match(probeIn(holder.pid!, merged), LIVE, 'the copy works while mounted');
  const t0 = Date.now();
  ok(t, d.cli(['container', 'unmount', 'c']), 'unmount');
  const ms = Date.now() - t0;
  t.ok(ms < 3000, `unmount returns promptly (${ms} ms)`);
  t.notOk(listMounts().some((m) => m.mountPoint === merged), 'gone from the host');
  t.match(probeIn(holder.pid!, merged), ENDED, 'the copy fails with ENOTCONN');
  t.equal(ps(d)[0].State, 'created', 'ps: not mounted');
  // mounted again, then taken off the host from outside strata while the copy holds it
  const again = ok(t, d.cli(['container', 'mount', 'c']), 'mount again');
  const holder2 = await holdCopies(t);
  runOk('umount', ['-l', again]);
  t.equal(ps(d)[0].State, 'created', 'ps: a mount that left the host is not reported as mounted');
  let ended = false;
  for (let i = 0; i < 60 && !ended; i++) {
    ended = ENDED.test(probeIn(holder2.pid!, again));
    if (!ended) await new Promise((r) => setTimeout(r, 100));
  }
  t.ok(ended, 'and its connection is ended, so the copy does not keep it alive');
  t.equal(ok(t, d.cli(['container', 'mount', 'c']), 'mount once more'), again, 'it can be mounted again');
  ok(t, d.cli(['container', 'unmount', 'c']), 'unmount');
});

t.test('SIGTERM with 50 mounts, copies held elsewhere: exit 0 within 5 s, nothing left mounted', opts, async (t) => {
  t.setTimeout(300_000);
  const d = await daemonWithBase(t, 'u-stop');
  const ids: string[] = [];
  for (let i = 0; i < 50; i += 10) {
    const batch = await Promise.all(Array.from({ length: 10 }, (_, k) => d.cliAsync(['container', 'create', '--name', `c${i + k}`, 'base:1'])));
    for (const r of batch) ids.push(ok(t, r, 'create'));
  }
  for (let i = 0; i < 50; i += 10) {
    const batch = await Promise.all(ids.slice(i, i + 10).map((id) => d.cliAsync(['container', 'mount', id])));
    for (const r of batch) ok(t, r, 'mount');
  }
  const strataMounts = () => listMounts().filter((m) => m.fsType === 'fuse.strata' && m.mountPoint.startsWith(d.root + '/'));
  t.equal(strataMounts().length, 50, '50 mounts');
  const holder = await holdCopies(t);
  const t0 = Date.now();
  const exit = await d.kill('SIGTERM', 20_000);
  const ms = Date.now() - t0;
  t.equal(exit.code, 0, 'exit 0');
  t.ok(ms < 5000, `stopped within 5 s (${ms} ms)`);
  t.same(strataMounts(), [], 'no mount left on the host');
  t.match(probeIn(holder.pid!, path.join(d.root, 'containers', ids[0], 'merged')), ENDED, 'the copies fail with ENOTCONN, they do not hang');
});

// A FUSE device number is the kernel's to give again once a connection has ended: strata aborts a
// connection by that number only while its own connection is still up, never another server's.
t.test("aborting an ended connection by its old device number leaves another server's mount alone", opts, async (t) => {
  const ws = makeWorkspace(t, 'u-abort');
  const ours = path.join(ws, 'ours');
  const theirs = path.join(ws, 'theirs');
  for (const d of [ours, theirs, path.join(ws, 'lower'), path.join(ws, 'upper'), path.join(ws, 'work')]) fs.mkdirSync(d);
  fs.writeFileSync(path.join(ws, 'lower', 'f'), 'theirs\n');
  const conn = mountFuse(ours, { fsname: 'strata', subtype: 'strata' });
  const probeFd = native.fcntl(conn.fd, native.F_DUPFD_CLOEXEC, 0);
  t.teardown(() => {
    fs.closeSync(probeFd);
    fs.closeSync(conn.fd);
  });
  t.ok(fuseConnectionUp(probeFd), 'a mounted connection is up');
  fuseUnmount(ours, true);
  t.notOk(fuseConnectionUp(probeFd), 'after the unmount it has ended');
  runOk('fuse-overlayfs', ['-o', `lowerdir=${path.join(ws, 'lower')},upperdir=${path.join(ws, 'upper')},workdir=${path.join(ws, 'work')}`, theirs]);
  const dev = listMounts().find((m) => m.mountPoint === theirs)?.dev;
  t.ok(dev !== undefined, "another server's mount, perhaps under our old number");
  t.notOk(abortOwnFuseConnection(probeFd, dev!), 'not aborted: our connection is gone');
  t.equal(fs.readFileSync(path.join(theirs, 'f'), 'utf8'), 'theirs\n', 'the other mount still serves');
});
