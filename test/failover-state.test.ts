// What the kernel still holds across a SIGKILL of stratad, beyond the workload of failover.test.ts:
// open files whose names are gone (unlinked, replaced by a rename, O_TMPFILE, a lower file
// whited out), the second names of hard-linked files, the nodes the kernel forgets after the
// takeover, and what `ps` and `inspect` say of a mount taken over and of one that is lost.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import type { Daemon } from './lib/daemon';
import { ok } from './lib/expect';
import { daemonWithContainers } from './lib/failover';
import { missingCapability } from './lib/mount-union';
import { dataFileContent } from './lib/workload';
import { Journal } from '../daemon/fuse/journal';
import type { ContainerInspect } from '../daemon/model/types';
import type { ContainerRow } from '../cli/commands/containers';

const skip = missingCapability({ fuse: true });
const opts = { skip: skip ?? false, timeout: 120_000 };
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));
const { O_RDWR, O_RDONLY, O_DIRECT } = fs.constants;
/** O_TMPFILE as Linux defines it (with O_DIRECTORY); Node has no constant for it. */
const O_TMPFILE = 0o20200000;

/** stratad killed with SIGKILL and started again: it takes the mounts over. */
async function crash(d: Daemon): Promise<void> {
  await d.kill('SIGKILL');
  await d.restart();
}

/** The held names (work/work/#held) of every container of the daemon. */
function heldNames(d: Daemon): string[] {
  const dir = path.join(d.root, 'containers');
  return fs.readdirSync(dir).flatMap((id) => {
    try {
      return fs.readdirSync(path.join(dir, id, 'work', 'work', '#held'));
    } catch {
      return [];
    }
  });
}

interface OpenFile {
  what: string;
  fd: number;
  content: Buffer;
}

t.test('files open with their names gone read, write and fstat after a takeover', opts, async (t) => {
  const { d, mnts } = await daemonWithContainers(t, 'fo-open');
  const m = mnts[0];
  const files: OpenFile[] = [];
  t.teardown(() => files.forEach((f) => fs.closeSync(f.fd)));
  const open = (what: string, p: string, flags: number, content: Buffer) => {
    const fd = fs.openSync(p, flags, 0o600);
    files.push({ what, fd, content });
    return fd;
  };
  // Open for writing (the kernel passes data through to the file; fstat and fsync come here), large
  // and small; open read-only (small: its data served by stratad, every read a request with O_DIRECT).
  for (const [name, size, flags] of [['small', 3000, O_RDWR], ['large', 1 << 20, O_RDWR], ['read-only', 3000, O_RDONLY | O_DIRECT]] as const) {
    const content = Buffer.alloc(size, name[0]);
    fs.writeFileSync(path.join(m, name), content);
    open(`unlinked ${name} file`, path.join(m, name), flags, content);
    fs.unlinkSync(path.join(m, name));
  }
  fs.writeFileSync(path.join(m, 'target'), 'replaced by a rename\n');
  open('file replaced by a rename', path.join(m, 'target'), O_RDONLY | O_DIRECT, Buffer.from('replaced by a rename\n'));
  fs.writeFileSync(path.join(m, 'new'), 'new\n');
  fs.renameSync(path.join(m, 'new'), path.join(m, 'target'));
  const lower = 'data/d0/e0/f0';
  open('lower file whited out', path.join(m, lower), O_RDONLY | O_DIRECT, Buffer.from(dataFileContent('d0/e0/f0')));
  fs.unlinkSync(path.join(m, lower));
  const tmpfd = open('O_TMPFILE', m, O_TMPFILE | O_RDWR, Buffer.from('never named\n'));
  fs.writeSync(tmpfd, 'never named\n', 0);
  t.equal(heldNames(d).length, files.length, 'each keeps a name in the work dir');

  for (let round = 1; round <= 2; round++) {
    await crash(d);
    for (const f of files) {
      const st = fs.fstatSync(f.fd);
      t.equal(st.nlink, 0, `${f.what}: fstat after takeover ${round}: no links`);
      t.equal(st.size, f.content.length, `${f.what}: size`);
      const back = Buffer.alloc(f.content.length);
      t.equal(fs.readSync(f.fd, back, 0, back.length, 0), f.content.length, `${f.what}: read`);
      t.ok(back.equals(f.content), `${f.what}: the right data`);
      if (f.what.startsWith('lower') || f.what.includes('read-only') || f.what.includes('rename')) continue;
      const more = Buffer.from(`written after takeover ${round}\n`);
      t.equal(fs.writeSync(f.fd, more, 0, more.length, f.content.length), more.length, `${f.what}: write`);
      fs.fsyncSync(f.fd);
      f.content = Buffer.concat([f.content, more]);
      t.equal(fs.fstatSync(f.fd).size, f.content.length, `${f.what}: size after the write`);
    }
  }
  // The O_TMPFILE gets a name after all: it is an ordinary file then, its held name gone.
  execFileSync('ln', ['-L', `/proc/${process.pid}/fd/${tmpfd}`, path.join(m, 'named')]);
  t.equal(fs.readFileSync(path.join(m, 'named'), 'utf8'), files.find((f) => f.fd === tmpfd)!.content.toString(), 'the O_TMPFILE, named');
  t.equal(fs.fstatSync(tmpfd).nlink, 1, 'one link: its own name');
  for (const f of files.splice(0)) fs.closeSync(f.fd);
  // The kernel sends RELEASE after close(2) returns.
  const deadline = Date.now() + 10_000;
  while (heldNames(d).length > 0 && Date.now() < deadline) await delay(50);
  t.same(heldNames(d), [], 'closed: no held name left');
});

t.test('second names of hard-linked files after a takeover', opts, async (t) => {
  const { d, mnts } = await daemonWithContainers(t, 'fo-links');
  const m = mnts[0];
  fs.writeFileSync(path.join(m, 'a'), 'linked\n');
  fs.linkSync(path.join(m, 'a'), path.join(m, 'b'));
  fs.mkdirSync(path.join(m, 'sub'));
  fs.linkSync(path.join(m, 'a'), path.join(m, 'sub', 'c'));
  t.equal(fs.statSync(path.join(m, 'b')).nlink, 3, 'three names');
  await crash(d);
  // The kernel still has b and sub/c cached, all on one node: removing the primary name must leave them served.
  fs.unlinkSync(path.join(m, 'a'));
  t.equal(fs.readFileSync(path.join(m, 'b'), 'utf8'), 'linked\n', 'b reads after a is gone');
  t.equal(fs.statSync(path.join(m, 'sub', 'c')).nlink, 2, 'sub/c: two names left');
  await crash(d);
  fs.renameSync(path.join(m, 'b'), path.join(m, 'sub', 'b2'));
  fs.unlinkSync(path.join(m, 'sub', 'c'));
  t.equal(fs.readFileSync(path.join(m, 'sub', 'b2'), 'utf8'), 'linked\n', 'the renamed second name reads after the other is gone');
  fs.appendFileSync(path.join(m, 'sub', 'b2'), 'more\n');
  t.equal(fs.statSync(path.join(m, 'sub', 'b2')).nlink, 1, 'one name left');
  await crash(d);
  t.equal(fs.readFileSync(path.join(m, 'sub', 'b2'), 'utf8'), 'linked\nmore\n', 'after a third takeover');
});

t.test('nodes the kernel forgets after a takeover are freed', opts, async (t) => {
  const { d, mnts } = await daemonWithContainers(t, 'fo-forget');
  const m = mnts[0];
  const id = (JSON.parse(ok(t, d.cli(['container', 'inspect', 'w0']), 'inspect')) as ContainerInspect[])[0].Id;
  // The journal mirrors the node table (a node freed is a DROP there): the nodes of many/f*.
  const named = () => [...Journal.read(path.join(d.root, 'run', 'journals', id)).nodes.values()].filter((n) => /^f\d+$/.test(n.name)).length;
  fs.mkdirSync(path.join(m, 'many'));
  // Open, so that nothing else (a cache drop on the host) makes the kernel forget them first.
  const fds: number[] = [];
  t.teardown(() => fds.forEach((fd) => fs.closeSync(fd)));
  for (let i = 0; i < 300; i++) {
    fs.writeFileSync(path.join(m, 'many', `f${i}`), `${i}\n`);
    fds.push(fs.openSync(path.join(m, 'many', `f${i}`), 'r'));
  }
  await crash(d);
  t.equal(named(), 300, 'the nodes are taken over');
  for (const fd of fds.splice(0)) fs.closeSync(fd);
  t.equal(named(), 300, 'closed, they stay while the kernel holds them');
  // Removed, the kernel evicts their inodes and FORGETs them.
  for (let i = 0; i < 300; i++) fs.unlinkSync(path.join(m, 'many', `f${i}`));
  fs.rmdirSync(path.join(m, 'many'));
  const deadline = Date.now() + 10_000;
  while (named() > 0 && Date.now() < deadline) await delay(100);
  t.equal(named(), 0, 'the kernel forgot them: freed');
  // What the kernel still holds is still served, through one more takeover.
  await crash(d);
  t.equal(fs.readFileSync(path.join(m, 'etc', 'motd'), 'utf8'), 'failover\n', 'served after another takeover');
});

t.test('ps and inspect: a mount taken over, a mount lost', opts, async (t) => {
  const { d, mnts } = await daemonWithContainers(t, 'fo-ps');
  const inspect = (name: string) => (JSON.parse(ok(t, d.cli(['container', 'inspect', name]), `inspect ${name}`)) as ContainerInspect[])[0];
  t.equal(inspect('w0').State.MountStatus, null, 'mounted here: no mount status');
  await crash(d);
  const rows = () => ok(t, d.cli(['ps', '-a', '--format', 'json']), 'ps').trim().split('\n').map((l) => JSON.parse(l) as ContainerRow);
  t.same(rows().map((r) => r.Status), Array(mnts.length).fill('Mounted (taken over)'), 'ps: taken over');
  t.equal(inspect('w0').State.MountStatus, 'taken-over', 'inspect: taken over');
  execFileSync('umount', ['-l', mnts[1]]);
  const deadline = Date.now() + 10_000;
  while (rows().find((r) => r.Names === 'w1')?.Status !== 'Lost' && Date.now() < deadline) await delay(100);
  t.equal(rows().find((r) => r.Names === 'w1')?.Status, 'Lost', 'ps: the mount unmounted from outside is Lost');
  t.equal(inspect('w1').State.MountStatus, 'lost', 'inspect: lost');
  t.equal(inspect('w1').State.Status, 'created', 'inspect: no longer mounted');
});
