// strata-mount as a command: how it mounts, fails, detaches and goes away.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run } from './lib/exec';
import { isMounted, missingCapability, mountStrata, strataProgram } from './lib/mount-union';
import { sleepMs } from './lib/mount-table';
import { makeWorkspace } from './lib/workspace';

const skip = missingCapability({ fuse: true });

function layers(ws: string): { lower: string; upper: string; work: string; mnt: string } {
  const d = { lower: path.join(ws, 'lower'), upper: path.join(ws, 'upper'), work: path.join(ws, 'work'), mnt: path.join(ws, 'mnt') };
  for (const p of Object.values(d)) fs.mkdirSync(p, { recursive: true });
  fs.writeFileSync(path.join(d.lower, 'file'), 'lower data\n');
  return d;
}

/** Pid of the detached process serving `mnt`. */
function servingPid(mnt: string): number | undefined {
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const args = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (args.includes('--serve-detached') && args.includes(mnt)) return Number(pid);
    } catch {
      // process went away
    }
  }
  return undefined;
}

function waitFor(cond: () => boolean, ms = 10_000): boolean {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    sleepMs(25);
  }
  return cond();
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

t.test('strata-mount', { skip: skip ?? false }, async (t) => {
  const prog = strataProgram();

  t.test('--version and --help', async (t) => {
    const v = run(prog, ['--version']);
    t.equal(v.status, 0);
    t.match(v.stdout, /strata-mount version \d+\.\d+\.\d+/);
    const h = run(prog, ['--help']);
    t.equal(h.status, 0);
    t.match(h.stdout, /lowerdir=/);
  });

  t.test('bad input fails with a message naming the problem', async (t) => {
    const ws = makeWorkspace(t, 'mntcmd');
    const d = layers(ws);
    const cases: [string[], RegExp][] = [
      [['-o', `lowerdir=${ws}/missing,upperdir=${d.upper},workdir=${d.work}`, d.mnt], /lower layer .*missing.*does not exist/],
      [['-o', `lowerdir=${d.lower},upperdir=${d.upper}`, d.mnt], /upperdir given without workdir/],
      [['-o', `lowerdir=${d.lower}`, `${ws}/nomnt`], /mountpoint .*nomnt does not exist/],
      [['-o', `upperdir=${d.upper},workdir=${d.work}`, d.mnt], /lowerdir= is required/],
      [['-o', `lowerdir=${d.lower},fsync=2`, d.mnt], /fsync takes 0 or 1/],
      [[d.mnt], /lowerdir= is required/],
      [['--bogus', d.mnt], /unknown flag --bogus/],
    ];
    for (const [args, re] of cases) {
      const r = run(prog, args);
      t.not(r.status, 0, `exit status for ${args.join(' ')}`);
      t.match(r.stderr, re, `message for ${args.join(' ')}`);
      t.notOk(isMounted(d.mnt), 'nothing mounted');
    }
  });

  t.test('workdir on another filesystem is refused', async (t) => {
    const ws = makeWorkspace(t, 'mntcmd');
    const d = layers(ws);
    const tmpfs = path.join(ws, 'tmpfs');
    fs.mkdirSync(tmpfs);
    t.equal(run('mount', ['-t', 'tmpfs', 'tmpfs', tmpfs]).status, 0);
    t.teardown(() => void run('umount', ['-l', tmpfs]));
    fs.mkdirSync(path.join(tmpfs, 'work'));
    const r = run(prog, ['-o', `lowerdir=${d.lower},upperdir=${d.upper},workdir=${tmpfs}/work`, d.mnt]);
    t.not(r.status, 0);
    t.match(r.stderr, /not on the same filesystem/);
  });

  t.test('detaches, and the server exits on umount', async (t) => {
    const ws = makeWorkspace(t, 'mntcmd');
    const d = layers(ws);
    mountStrata(t, { lowers: [d.lower], upper: d.upper, work: d.work, mnt: d.mnt });
    t.equal(fs.readFileSync(path.join(d.mnt, 'file'), 'utf8'), 'lower data\n');
    const pid = servingPid(d.mnt);
    t.ok(pid, 'a detached server runs');
    t.equal(run('umount', [d.mnt]).status, 0);
    t.ok(waitFor(() => !alive(pid!)), 'server exits after umount');
  });

  t.test('umount -l and fusermount3 -u end the server too', async (t) => {
    for (const how of [['umount', '-l'], ['fusermount3', '-u']]) {
      const ws = makeWorkspace(t, 'mntcmd');
      const d = layers(ws);
      mountStrata(t, { lowers: [d.lower], upper: d.upper, work: d.work, mnt: d.mnt });
      const pid = servingPid(d.mnt);
      t.ok(pid);
      t.equal(run(how[0], [how[1], d.mnt]).status, 0, how.join(' '));
      t.ok(waitFor(() => !alive(pid!)), `server exits after ${how.join(' ')}`);
      t.notOk(isMounted(d.mnt));
    }
  });

  t.test('SIGTERM unmounts cleanly', async (t) => {
    const ws = makeWorkspace(t, 'mntcmd');
    const d = layers(ws);
    mountStrata(t, { lowers: [d.lower], upper: d.upper, work: d.work, mnt: d.mnt });
    fs.writeFileSync(path.join(d.mnt, 'new'), 'kept\n');
    const pid = servingPid(d.mnt)!;
    process.kill(pid, 'SIGTERM');
    t.ok(waitFor(() => !isMounted(d.mnt) && !alive(pid)), 'unmounted and exited');
    t.equal(fs.readFileSync(path.join(d.upper, 'new'), 'utf8'), 'kept\n', 'data is in the upper dir');
  });

  t.test('without upperdir the mount is read-only', async (t) => {
    const ws = makeWorkspace(t, 'mntcmd');
    const d = layers(ws);
    mountStrata(t, { lowers: [d.lower], mnt: d.mnt });
    t.equal(fs.readFileSync(path.join(d.mnt, 'file'), 'utf8'), 'lower data\n');
    t.throws(() => fs.writeFileSync(path.join(d.mnt, 'x'), 'x'), { code: 'EROFS' });
    t.throws(() => fs.unlinkSync(path.join(d.mnt, 'file')), { code: 'EROFS' });
  });

  t.test('containers-storage options: empty items, volatile, squash, unknown ones warn', async (t) => {
    const ws = makeWorkspace(t, 'mntcmd');
    const d = layers(ws);
    fs.chownSync(path.join(d.lower, 'file'), 1234, 5678);
    fs.mkdirSync(d.mnt, { recursive: true });
    const opts = `lowerdir=${d.lower},upperdir=${d.upper},workdir=${d.work},,volatile,fsync=0,squash_to_root,uidmapping=0:1000:1,gidmapping=0:1000:1,xattr_permissions=2,noatime,fancy_opt=1`;
    t.teardown(() => void run('umount', ['-l', d.mnt]));
    const r = run(prog, ['-o', opts, d.mnt]);
    t.equal(r.status, 0, r.stderr);
    t.match(r.stderr, /option 'fancy_opt' is not supported and is ignored/);
    t.notMatch(r.stderr, /uidmapping|gidmapping|xattr_permissions/, 'the id mapping and xattr_permissions are honoured');
    const st = fs.statSync(path.join(d.mnt, 'file'));
    t.same([st.uid, st.gid], [0, 0], 'owners squashed to root (squash wins over the mappings)');
    t.match(fs.readFileSync('/proc/mounts', 'utf8'), new RegExp(`${d.mnt} fuse.strata [^ ]*noatime`));
  });

  t.test('lowerdir: escaped colons and symlinked layer paths', async (t) => {
    const ws = makeWorkspace(t, 'mntcmd');
    const odd = path.join(ws, 'a:b');
    fs.mkdirSync(odd);
    fs.writeFileSync(path.join(odd, 'odd'), 'colon\n');
    const real = path.join(ws, 'real');
    fs.mkdirSync(real);
    fs.writeFileSync(path.join(real, 'viasymlink'), 'link\n');
    fs.symlinkSync(real, path.join(ws, 'link'));
    const mnt = path.join(ws, 'mnt');
    mountStrata(t, { lowers: [odd.replace(':', '\\:'), path.join(ws, 'link')], mnt });
    t.same(fs.readdirSync(mnt).sort(), ['odd', 'viasymlink']);
  });

  t.test('redirect_dir=off: renaming a lower directory is EXDEV, as overlayfs without redirects', async (t) => {
    const ws = makeWorkspace(t, 'mntcmd');
    const d = layers(ws);
    fs.mkdirSync(path.join(d.lower, 'dir'));
    fs.writeFileSync(path.join(d.lower, 'dir', 'f'), 'in dir\n');
    mountStrata(t, { lowers: [d.lower], upper: d.upper, work: d.work, mnt: d.mnt, extraOpts: ['redirect_dir=off'] });
    t.throws(() => fs.renameSync(path.join(d.mnt, 'dir'), path.join(d.mnt, 'moved')), { code: 'EXDEV' });
    fs.mkdirSync(path.join(d.mnt, 'updir'));
    fs.renameSync(path.join(d.mnt, 'updir'), path.join(d.mnt, 'updir2'));
    t.ok(fs.existsSync(path.join(d.mnt, 'updir2')), 'an upper-only directory still moves');
    const r = run(prog, ['-o', `lowerdir=${d.lower},redirect_dir=maybe`, path.join(ws, 'x')]);
    t.match(r.stderr, /redirect_dir takes on, follow, off or nofollow/);
  });

  t.test('passthrough=0 serves data in the daemon', async (t) => {
    const ws = makeWorkspace(t, 'mntcmd');
    const d = layers(ws);
    const big = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
    fs.writeFileSync(path.join(d.lower, 'big'), big);
    mountStrata(t, { lowers: [d.lower], upper: d.upper, work: d.work, mnt: d.mnt, extraOpts: ['passthrough=0'] });
    t.ok(fs.readFileSync(path.join(d.mnt, 'big')).equals(big), 'read through the daemon');
    fs.appendFileSync(path.join(d.mnt, 'big'), 'tail');
    t.equal(fs.statSync(path.join(d.mnt, 'big')).size, big.length + 4);
    const fd = fs.openSync(path.join(d.mnt, 'big'), 'r+');
    fs.writeSync(fd, Buffer.from('HEAD'), 0, 4, 0);
    fs.closeSync(fd);
    const after = fs.readFileSync(path.join(d.upper, 'big'));
    t.equal(after.subarray(0, 4).toString(), 'HEAD');
    t.equal(after.subarray(-4).toString(), 'tail');
    t.ok(fs.readFileSync(path.join(d.lower, 'big')).equals(big), 'lower layer untouched');
  });
});
