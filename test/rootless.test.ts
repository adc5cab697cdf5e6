// strata-mount without root: a plain user mounting through fusermount3, and rootless podman
// (inside its own user namespace) using strata-mount as its overlay mount program, checked against
// fuse-overlayfs doing the same. /dev/fuse is set 0666 as a normal host has it, and put back.
import t, { type Test } from 'tap';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hasCommand, run, type RunResult } from './lib/exec';
import { isMounted, missingCapability, mountKernelOverlay, strataProgram } from './lib/mount-union';
import { sleepMs } from './lib/mount-table';
import { buildBusyboxRootfs, findStaticBusybox } from './lib/base-image';
import { createTestUser, hostLikeDevFuse, type TestUser } from './lib/rootless';
import { makeWorkspace } from './lib/workspace';
import { S_IFMT, S_IFCHR } from '../daemon/util/file-mode';


function xattr(p: string, name: string): string | null {
  const r = run('getfattr', ['--absolute-names', '--only-values', '-h', '-n', name, p]);
  return r.status === 0 ? r.stdout : null;
}

function waitUnmounted(mnt: string, ms = 10_000): boolean {
  const end = Date.now() + ms;
  while (Date.now() < end && isMounted(mnt)) sleepMs(25);
  return !isMounted(mnt);
}

function expectOk(t: Test, r: RunResult, what: string): string {
  t.equal(r.status, 0, `${what}${r.status !== 0 ? `: ${r.stderr.trim()}` : ''}`);
  return r.stdout;
}

const skip = missingCapability({ fuse: true, overlay: true }) ?? (hasCommand('fusermount3') ? null : 'fusermount3 is not installed (fuse3)');

t.test('strata-mount as a plain user, through fusermount3', { skip: skip ?? false }, async (t) => {
  const ws = makeWorkspace(t, 'rootless');
  hostLikeDevFuse(t);
  const user = createTestUser(t, ws);
  const dir = path.join(ws, 'u');
  const d = { lower: `${dir}/lower`, upper: `${dir}/upper`, work: `${dir}/work`, mnt: `${dir}/mnt` };
  for (const p of Object.values(d)) fs.mkdirSync(p, { recursive: true });
  fs.writeFileSync(`${d.lower}/kept`, 'lower\n');
  fs.writeFileSync(`${d.lower}/gone`, 'lower\n');
  fs.mkdirSync(`${d.lower}/dir`);
  fs.writeFileSync(`${d.lower}/dir/old`, 'old\n');
  // Served reads (no passthrough here): readahead windows answered by the read-offload thread.
  const data = crypto.randomBytes(6 * 1024 * 1024 + 12345);
  fs.writeFileSync(`${d.lower}/data`, data);
  run('chown', ['-R', `${user.uid}:${user.gid}`, dir]);
  // Someone else's private directory in a lower layer: visible, not listable (its user.* xattrs unreadable).
  fs.mkdirSync(`${d.lower}/private`, { mode: 0o700 });
  const prog = strataProgram();

  const v = expectOk(t, user.run(prog, ['--version']), '--version as the user');
  t.match(v, /data path: served .*1 MiB requests, page cache kept/, '--version names the served data path');
  t.match(v, /mounts with: fusermount3/);

  const log = `${dir}/mount.log`;
  const m = user.run(prog, ['-o', `lowerdir=${d.lower},upperdir=${d.upper},workdir=${d.work}`, d.mnt], { STRATA_LOG_LEVEL: 'debug', STRATA_LOG_FILE: log });
  t.teardown(() => void run('umount', ['-l', d.mnt]));
  expectOk(t, m, 'mount as the user');
  t.ok(isMounted(d.mnt), 'mounted');
  const entry = fs.readFileSync('/proc/mounts', 'utf8').split('\n').find((l) => l.split(' ')[1] === d.mnt) ?? '';
  t.match(entry, new RegExp(`fuse\\.strata .*user_id=${user.uid},group_id=${user.gid}`), 'a user mount made by fusermount3');
  t.match(fs.readFileSync(log, 'utf8'), /"dataPath":"served[^"]*","via":"fusermount3".*"msg":"mounted"/, 'the log names the data path and the mount method');

  const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
  const reads = [
    'sleep 1', // the read-offload thread starts with the mount; until it is up, READs are answered inline
    `cd ${d.mnt}`,
    'sha256sum < data',
    'dd if=data bs=100000 skip=7 count=20 2>/dev/null | sha256sum',
    'tail -c 777 data | sha256sum',
    // two readers at once, each over its own readahead
    '(sha256sum < data > r1 & sha256sum < data > r2 & wait); cat r1 r2; rm r1 r2',
  ].join('\n');
  const want = [sha(data), sha(data.subarray(700000, 2700000)), sha(data.subarray(data.length - 777)), sha(data), sha(data)].map((h) => `${h}  -`).join('\n') + '\n';
  t.equal(expectOk(t, user.run('sh', ['-c', reads]), 'served reads'), want, 'served reads return the file, whole, in ranges and side by side');

  const script = [
    'set -e',
    `cd ${d.mnt}`,
    'cat kept',
    'printf "new data\\n" > new',
    'dd if=/dev/zero of=big bs=1M count=3 2>/dev/null',
    'echo more >> kept',
    'rm gone',
    'rm -r dir',
    'mkdir dir',
    'echo fresh > dir/f',
    'mv new renamed',
  ].join('\n');
  // Only the user sees into its mount (no user_allow_other in /etc/fuse.conf): look as the user.
  const look = `cd ${d.mnt} && ls -1 . && ls -1 dir && cat kept renamed && wc -c < big`;
  const out = expectOk(t, user.run('sh', ['-c', `${script}\n${look}`]), 'writes as the user');
  t.equal(out, 'lower\nbig\ndata\ndir\nkept\nprivate\nrenamed\nf\nlower\nmore\nnew data\n3145728\n', 'the merged view after the writes');
  const priv = user.run('sh', ['-c', `stat -c '%a %u' ${d.mnt}/private; ls ${d.mnt}/private`]);
  t.equal(priv.stdout, '700 0\n', 'a private lower dir of root shows with its owner');
  t.match(priv.stderr, /Permission denied/, 'and cannot be listed');
  expectOk(t, user.run('fusermount3', ['-u', d.mnt]), 'fusermount3 -u as the user');
  t.ok(waitUnmounted(d.mnt), 'unmounted');
  // The count is logged as the session ends, which may be just after the mount is gone.
  let served: RegExpExecArray | null = null;
  for (const end = Date.now() + 10_000; served === null && Date.now() < end; sleepMs(50)) served = /"offloadedReads":(\d+)/.exec(fs.readFileSync(log, 'utf8'));
  t.ok(served !== null && Number(served[1]) > 0, `readahead READs went to the read-offload thread (${served?.[1]})`);

  // The upper dir, as an unprivileged writer leaves it: owned by the user, whiteouts as 0/0
  // devices (allowed unprivileged), opacity as user.overlay.opaque (trusted.* needs CAP_SYS_ADMIN).
  const gone = fs.lstatSync(`${d.upper}/gone`);
  t.equal(gone.mode & S_IFMT, S_IFCHR, 'whiteout for a removed lower file');
  t.equal(gone.rdev, 0);
  t.equal(xattr(`${d.upper}/dir`, 'user.overlay.opaque'), 'y', 'the recreated dir is opaque in user.overlay.*');
  t.equal(xattr(`${d.upper}/dir`, 'trusted.overlay.opaque'), null, 'no trusted.* marker');
  for (const f of ['kept', 'renamed', 'big', 'dir', 'dir/f']) t.equal(fs.lstatSync(`${d.upper}/${f}`).uid, user.uid, `${f} owned by the user`);

  // Kernel overlayfs with userxattr reads the layers as strata showed them.
  const k = { work: `${dir}/kwork`, mnt: `${dir}/kmnt` };
  fs.mkdirSync(k.work);
  mountKernelOverlay(t, { lowers: [d.lower], upper: d.upper, work: k.work, mnt: k.mnt, programDefaults: true, extraOpts: ['userxattr'] });
  t.same(fs.readdirSync(k.mnt).sort(), ['big', 'data', 'dir', 'kept', 'private', 'renamed'], 'the kernel (userxattr) sees the same names');
  t.same(fs.readdirSync(`${k.mnt}/dir`), ['f'], 'and the opaque dir');
  t.equal(fs.readFileSync(`${k.mnt}/renamed`, 'utf8'), 'new data\n');
  run('umount', [k.mnt]);

  // And strata, mounted by the user again, reads the kernel's and its own markers.
  expectOk(t, user.run(prog, ['-o', `lowerdir=${d.lower},upperdir=${d.upper},workdir=${d.work}`, d.mnt]), 'second mount');
  t.equal(expectOk(t, user.run('sh', ['-c', look]), 'look again'), 'big\ndata\ndir\nkept\nprivate\nrenamed\nf\nlower\nmore\nnew data\n3145728\n', 'the same view');
  expectOk(t, user.run('fusermount3', ['-u', d.mnt]), 'second unmount');
  t.ok(waitUnmounted(d.mnt));
});

// --- rootless podman ---------------------------------------------------------------------------

const PODMAN_STEPS = {
  // Files owned by container uids 0 and 1000, a deleted image file and image dir, a dir deleted and made again (opaque).
  change: [
    'set -e',
    'echo root-file > /f0',
    'echo user-file > /f1000 && chown 1000:1000 /f1000',
    'mkdir /d1000 && chown 1000:1000 /d1000 && touch /d1000/inner && chown 1000:50 /d1000/inner',
    'echo appended >> /etc/passwd',
    'rm /etc/group',
    'rm -r /opt',
    'rm -r /home && mkdir -p /home/fresh',
  ].join('\n'),
  // Owners and names without times (they differ from run to run).
  show: "ls -ln / /d1000 /etc /home | awk 'NF < 3 {print; next} {print $1, $3, $4, $NF}'; cat /f0 /f1000; tail -n 1 /etc/passwd",
};

function podmanSkipReason(): string | null {
  if (skip) return skip;
  for (const c of ['podman', 'runc', 'newuidmap', 'fuse-overlayfs']) if (!hasCommand(c)) return `${c} is not installed`;
  if (findStaticBusybox() === null) return 'no static busybox (busybox-static)';
  return null;
}

interface PodmanResult {
  /** The container root's filesystem type (which mount program served it). */
  rootType: string;
  firstRun: string;
  rerun: string;
  /** Upper dir entries (but opaque markers): relative path, kind, host-side uid and gid as the user's (u) or in its subordinate range (s+N). */
  upper: string[];
}

function hostOwner(id: number, own: number, sub: number): string {
  if (id === own) return 'u';
  if (id >= sub && id < sub + 65536) return `s+${id - sub}`;
  return String(id);
}

function listUpper(dir: string, user: TestUser): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      // fuse-overlayfs 1.10 marks every new directory opaque with `.wh..wh..opq` (and a `.wh..opq`
      // whiteout); kernel overlayfs and strata need no marker in a directory with nothing below it.
      if (name.startsWith('.wh.')) continue;
      const r = rel ? `${rel}/${name}` : name;
      const st = fs.lstatSync(path.join(dir, r));
      const kind = st.isCharacterDevice() ? 'whiteout' : st.isDirectory() ? 'dir' : 'file';
      out.push(`${r} ${kind} ${hostOwner(st.uid, user.uid, user.subuid)} ${hostOwner(st.gid, user.gid, user.subgid)}`);
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

/** The acceptance scenario with one mount program, in a storage of its own. */
function podmanScenario(t: Test, user: TestUser, base: string, tar: string, mountProgram: string): PodmanResult | null {
  const store = path.join(base, path.basename(mountProgram));
  // podman refuses a runroot path longer than 50 characters: that one lives in /tmp.
  const runroot = fs.mkdtempSync('/tmp/strata-runroot-');
  t.teardown(() => fs.rmSync(runroot, { recursive: true, force: true }));
  for (const d of [store, runroot]) {
    fs.mkdirSync(d, { recursive: true });
    fs.chownSync(d, user.uid, user.gid);
  }
  const global = [
    '--root', `${store}/root`,
    '--runroot', runroot,
    '--tmpdir', `${store}/tmp`,
    '--storage-driver', 'overlay',
    '--storage-opt', `overlay.mount_program=${mountProgram}`,
    '--runtime', 'runc',
    '--cgroup-manager', 'cgroupfs',
    '--events-backend', 'file',
  ];
  const podman = (args: string[], what: string): string | null => {
    const r = user.run('podman', [...global, ...args], {}, 180_000);
    if (r.status !== 0) {
      t.fail(`${path.basename(mountProgram)}: ${what} failed (${r.status}): ${r.stderr.trim()}`);
      return null;
    }
    return r.stdout;
  };
  t.teardown(() => {
    user.run('podman', [...global, 'rm', '-af']);
    user.run('podman', [...global, 'rmi', '-af']);
  });
  if (podman(['import', tar, 'base:1'], 'import') === null) return null;
  const firstRun = podman(['run', '--name', 'c1', '--network', 'none', 'base:1', 'sh', '-c', `${PODMAN_STEPS.change}\n${PODMAN_STEPS.show}`], 'run');
  if (firstRun === null) return null;
  const upperDir = podman(['inspect', 'c1', '--format', '{{.GraphDriver.Data.UpperDir}}'], 'inspect')?.trim();
  if (!upperDir) return null;
  const upper = listUpper(upperDir, user);
  if (podman(['commit', 'c1', 'changed:1'], 'commit') === null) return null;
  const rerun = podman(['run', '--rm', '--network', 'none', 'changed:1', 'sh', '-c', PODMAN_STEPS.show], 're-run of the committed image');
  if (rerun === null) return null;
  const rootType = podman(['run', '--rm', '--network', 'none', 'base:1', 'awk', '$2 == "/" { print $3 }', '/proc/mounts'], 'run (root fs type)');
  if (rootType === null) return null;
  return { rootType: rootType.trim(), firstRun, rerun, upper };
}

const podmanSkip = podmanSkipReason();
if (podmanSkip) console.log(`# skipping rootless podman: ${podmanSkip}`);
t.test('rootless podman on strata-mount matches fuse-overlayfs', { skip: podmanSkip ?? false }, async (t) => {
  t.setTimeout(600_000);
  const ws = makeWorkspace(t, 'rootless');
  hostLikeDevFuse(t);
  const user = createTestUser(t, ws);
  const base = path.join(ws, 'podman');
  fs.mkdirSync(base);
  const tar = buildBusyboxRootfs(base);
  fs.chownSync(base, user.uid, user.gid);
  fs.chmodSync(tar, 0o644);

  // Whether rootless podman itself runs here (with the reference mount program).
  const oracle = podmanScenario(t, user, base, tar, '/usr/bin/fuse-overlayfs');
  if (oracle === null) return;
  const strata = podmanScenario(t, user, base, tar, strataProgram());
  if (strata === null) return;

  t.equal(oracle.rootType, 'fuse.fuse-overlayfs', 'the reference ran on fuse-overlayfs');
  t.equal(strata.rootType, 'fuse.strata', 'the containers ran on strata-mount');
  t.match(oracle.firstRun, /^-rw-r--r-- 0 0 f0$/m, 'the reference shows uid 0 files');
  t.match(oracle.firstRun, /^-rw-r--r-- 1000 1000 f1000$/m, 'and uid 1000 files');
  t.equal(strata.firstRun, oracle.firstRun, 'the container sees the same files, owners and deletions');
  t.equal(strata.rerun, oracle.rerun, 'the committed image re-runs the same');
  t.match(strata.rerun, /^drwxr-xr-x 1000 1000 d1000$/m, 'owners survive the commit');
  t.notMatch(strata.rerun, / opt$/m, 'the deleted dir stays deleted');
  t.notMatch(strata.rerun, / group$/m, 'the deleted file stays deleted');
  t.match(strata.rerun, /^\/home:\ntotal \d+\ndrwxr-xr-x 0 0 fresh\n/m, 'the recreated dir hides what it replaced');
  t.same(strata.upper, oracle.upper, 'the upper dirs hold the same entries with the same host-side owners');
  t.ok(strata.upper.includes('f1000 file s+999 s+999'), 'container uid 1000 is subordinate id 999 on the host');
  t.ok(strata.upper.includes('f0 file u u'), 'container uid 0 is the user on the host');
});
