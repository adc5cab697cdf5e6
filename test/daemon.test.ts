// stratad end to end through the real strata CLI: storage, commit, volumes, crash recovery,
// shutdown, single-daemon lock, bad input, concurrency, socket permissions, output formats.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import BetterSqlite3 from 'better-sqlite3';
import type { ContainerInspect, ImageInspect, SystemDf, Volume } from '../daemon/model/types';
import type { ContainerRow } from '../cli/commands/containers';
import type { ImageRow } from '../cli/commands/images';
import type { VolumeListRow } from '../cli/commands/volumes';
import { type RunResult, runOk } from './lib/exec';
import { cleanEnv, ping, startDaemon, STRATAD, type Daemon } from './lib/daemon';
import { ok, fails, jsonLines } from './lib/expect';
import { missingCapability } from './lib/mount-union';
import { listMounts } from './lib/mount-table';
import { diffSnapshots, snapshot } from './lib/snapshot';
import { LayerIndex } from '../daemon/layer-index/reader';

const skip = missingCapability({ fuse: true });
const opts = { skip: skip ?? false };

const MOTD = 'welcome to strata\n';
const APP = '#!/bin/sh\necho app\n';
const SEED = 'seed data\n';

/** A rootfs tar built with GNU tar from a temp dir: /etc/motd, /bin/app, /data/seed. */
function baseTar(ws: string): string {
  const dir = path.join(ws, 'rootfs');
  fs.mkdirSync(path.join(dir, 'etc'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'bin'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'data'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'etc', 'motd'), MOTD);
  fs.writeFileSync(path.join(dir, 'bin', 'app'), APP, { mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'data', 'seed'), SEED);
  const tar = path.join(ws, 'base.tar');
  runOk('tar', ['--numeric-owner', '-C', dir, '-cf', tar, '.']);
  return tar;
}

function jsonOf<T>(t: Test, r: RunResult, what: string): T {
  const text = ok(t, r, what);
  return JSON.parse(text) as T;
}

const hex = (id: string) => id.replace(/^sha256:/, '');
const layerCount = (d: Daemon) => fs.readdirSync(path.join(d.root, 'layers')).length;
const tmpEntries = (d: Daemon) => fs.readdirSync(path.join(d.root, 'tmp'));
const mountsUnder = (dir: string) => listMounts().filter((m) => m.mountPoint === dir || m.mountPoint.startsWith(dir + '/'));

function errCode(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? String(e);
  }
}

async function daemonWithBase(t: Test, label: string): Promise<{ d: Daemon; imageId: string }> {
  const d = await startDaemon(t, { label });
  const imageId = ok(t, d.cli(['image', 'import', baseTar(d.ws), 'base:1']), 'image import');
  t.match(imageId, /^sha256:[0-9a-f]{64}$/, 'import prints the image id');
  return { d, imageId };
}

t.test('storage story: import, mount, copy-up, diff, volume, rm', opts, async (t) => {
  const { d } = await daemonWithBase(t, 'dstory');
  const img = jsonOf<ImageInspect[]>(t, d.cli(['image', 'inspect', 'base:1']), 'image inspect')[0]!;
  t.equal(img.Layers.length, 1, 'one layer');
  t.same(img.RootFS, { Type: 'layers', Layers: [img.Layers[0]!.DiffId] }, 'RootFS: the diff ids');
  const layerDir = path.join(d.root, 'layers', hex(img.Layers[0]!.Id));
  t.equal(img.GraphDriver.Data.LowerDir, layerDir, 'GraphDriver: the layer dirs');
  t.ok(fs.existsSync(layerDir), 'the layer dir is named by the layer id');
  const before = snapshot(layerDir);
  const indexFile = path.join(d.root, 'layer-index', hex(img.Layers[0]!.Id) + '.sidx');
  t.ok(LayerIndex.open(indexFile, layerDir).entries > 5, 'the imported layer was indexed as it entered the store');
  fs.writeFileSync(indexFile, 'damaged');

  const cid = ok(t, d.cli(['container', 'create', '--name', 'c1', '-v', 'vol1:/data', 'base:1']), 'create c1');
  t.match(cid, /^[0-9a-f]{64}$/);
  const mnt = ok(t, d.cli(['container', 'mount', 'c1']), 'mount c1');
  t.ok(path.isAbsolute(mnt) && mnt.startsWith(d.root), 'mountpoint under the root');
  t.equal(fs.readFileSync(path.join(mnt, 'etc/motd'), 'utf8'), MOTD, 'cat an image file through the mount');
  t.ok(LayerIndex.open(indexFile, layerDir).entries > 5, 'a damaged index is rebuilt when a mount needs it');
  t.equal(fs.readFileSync(path.join(mnt, 'bin/app'), 'utf8'), APP);
  t.equal(fs.statSync(path.join(mnt, 'bin/app')).mode & 0o777, 0o755, 'mode kept');

  fs.appendFileSync(path.join(mnt, 'etc/motd'), 'changed\n');
  fs.writeFileSync(path.join(mnt, 'new.txt'), 'new\n');
  fs.writeFileSync(path.join(mnt, 'data/written'), 'by c1\n');
  t.equal(fs.readFileSync(path.join(mnt, 'etc/motd'), 'utf8'), MOTD + 'changed\n', 'copy-up visible');

  const diff = ok(t, d.cli(['diff', 'c1']), 'diff').split('\n');
  t.same(diff, ['C /etc', 'C /etc/motd', 'A /new.txt'], 'diff lists exactly the changes (volume writes excluded)');

  t.same(diffSnapshots(before, snapshot(layerDir), ['before', 'after']), [], 'image layer unchanged byte for byte');

  const volData = path.join(d.root, 'volumes', 'vol1', '_data');
  t.equal(fs.readFileSync(path.join(volData, 'seed'), 'utf8'), SEED, 'the empty volume was filled with the image /data');
  t.equal(fs.readFileSync(path.join(volData, 'written'), 'utf8'), 'by c1\n', 'a write to /data lands in the volume');
  const ins = jsonOf<ContainerInspect[]>(t, d.cli(['container', 'inspect', 'c1']), 'container inspect')[0]!;
  const upper = ins.GraphDriver.Data.UpperDir!;
  t.notOk(fs.existsSync(path.join(upper, 'data', 'written')), "...and not in the container's upper");
  t.equal(fs.readFileSync(path.join(upper, 'new.txt'), 'utf8'), 'new\n', 'new file is in the upper');
  t.same(ins.Mounts, [{ Type: 'volume', Name: 'vol1', Source: volData, Destination: '/data', RW: true }]);
  t.same([ins.Name, ins.Config.Image, ins.State.Status, ins.State.Running, ins.Mountpoint, ins.GraphDriver.Data.MergedDir], ['c1', 'base:1', 'mounted', false, mnt, mnt]);
  t.equal(ins.GraphDriver.Data.LowerDir, layerDir);

  ok(t, d.cli(['rm', '-f', 'c1']), 'rm -f c1');
  t.same(mountsUnder(mnt), [], 'c1 unmounted (union and volume)');
  t.notOk(fs.existsSync(path.join(d.root, 'containers', cid)), 'container dir removed');
  fails(t, d.cli(['container', 'inspect', 'c1']), /no such container: c1/, 'inspect removed');

  ok(t, d.cli(['container', 'create', '--name', 'c2', '-v', 'vol1:/data', 'base:1']), 'create c2');
  const mnt2 = ok(t, d.cli(['container', 'mount', 'c2']), 'mount c2');
  t.equal(errCode(() => fs.statSync(path.join(mnt2, 'new.txt'))), 'ENOENT', "c1's new file is gone");
  t.equal(fs.readFileSync(path.join(mnt2, 'etc/motd'), 'utf8'), MOTD, "c1's change is gone");
  t.equal(fs.readFileSync(path.join(mnt2, 'data/written'), 'utf8'), 'by c1\n', 'c2 sees what c1 wrote to vol1');
  t.equal(fs.readFileSync(path.join(mnt2, 'data/seed'), 'utf8'), SEED);
  t.same(ok(t, d.cli(['diff', 'c2']), 'diff c2'), '', 'c2 has no changes');
});

t.test('commit, history, system df, image rm', opts, async (t) => {
  const { d, imageId } = await daemonWithBase(t, 'dcommit');
  const baseLayer = jsonOf<ImageInspect[]>(t, d.cli(['image', 'inspect', 'base:1']), 'inspect base')[0]!.Layers[0]!;
  ok(t, d.cli(['container', 'create', '--name', 'c1', 'base:1']), 'create');
  const mnt = ok(t, d.cli(['container', 'mount', 'c1']), 'mount');
  fs.writeFileSync(path.join(mnt, 'extra.bin'), Buffer.alloc(3000, 7));
  const derivedId = ok(t, d.cli(['commit', '-m', 'add extra', '-c', 'RUN make extra', 'c1', 'derived:1']), 'commit');
  t.match(derivedId, /^sha256:[0-9a-f]{64}$/);
  t.not(derivedId, imageId);

  const hist = jsonOf<ImageInspect[]>(t, d.cli(['image', 'inspect', 'derived:1']), 'inspect derived')[0]!.History;
  t.equal(hist.length, 2, 'two history entries');
  t.equal(hist[0]!.Id, derivedId, 'top entry carries the image id');
  t.equal(hist[0]!.Comment, 'add extra');
  t.equal(hist[0]!.CreatedBy, 'RUN make extra');
  t.ok(hist[0]!.Size >= 3000, `committed layer size ${hist[0]!.Size} counts the new file`);
  t.equal(hist[1]!.Id, '<missing>');
  t.equal(hist[1]!.Comment, 'Imported from base.tar');
  const rows = jsonLines<Record<string, string>>(ok(t, d.cli(['history', '--no-trunc', '--format', 'json', 'derived:1']), 'history json'));
  t.same(rows.map((r) => [r.ID, r.CreatedBy, r.Comment]), [[derivedId, 'RUN make extra', 'add extra'], ['<missing>', '', 'Imported from base.tar']], 'history --format json: rows by docker names');
  const table = ok(t, d.cli(['history', 'derived:1']), 'history table').split('\n');
  t.match(table[0], /^IMAGE\s+CREATED\s+CREATED BY\s+SIZE\s+COMMENT$/);
  t.match(table[1], new RegExp(`^${hex(derivedId).slice(0, 12)}\\s+.*RUN make extra\\s+\\d+(\\.\\d+)?k?B\\s+add extra$`));

  const derived = jsonOf<ImageInspect[]>(t, d.cli(['image', 'inspect', 'derived:1']), 'inspect derived')[0]!;
  t.equal(derived.Layers.length, 2);
  t.equal(derived.Layers[0]!.Id, baseLayer.Id, 'derived image reuses the base layer');
  t.equal(derived.Parent, imageId);
  t.equal(layerCount(d), 2, 'two layer dirs');

  const df = jsonOf<SystemDf>(t, d.cli(['system', 'df', '-v', '--format', 'json']), 'df -v json');
  const topSize = derived.Layers[1]!.Size;
  t.equal(df.LayersSize, baseLayer.Size + topSize, 'shared layer counted once in the total');
  const dfBase = df.Images.find((i) => i.Id === imageId)!;
  const dfDerived = df.Images.find((i) => i.Id === derivedId)!;
  t.same([dfBase.SharedSize, dfBase.UniqueSize, dfBase.Containers], [baseLayer.Size, 0, 1]);
  t.same([dfDerived.SharedSize, dfDerived.UniqueSize, dfDerived.Containers], [baseLayer.Size, topSize, 0]);
  const dfv = ok(t, d.cli(['system', 'df', '-v']), 'df -v').split('\n');
  t.match(dfv.join('\n'), /REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE\s+SHARED SIZE\s+UNIQUE SIZE\s+CONTAINERS/);
  const row = (repo: string) => dfv.find((l) => l.startsWith(repo + ' '))!.trim().split(/\s{2,}/);
  t.equal(row('base')[5], `${baseLayer.Size}B`, 'base SHARED SIZE');
  t.equal(row('derived')[5], `${baseLayer.Size}B`, 'derived SHARED SIZE');
  t.equal(row('base')[7], '1', 'base has one container');

  fails(t, d.cli(['image', 'rm', 'base:1']), /image base:1 is in use by container\(s\) c1/, 'rm of an image in use');
  t.equal(layerCount(d), 2, 'nothing deleted');

  const rmDerived = ok(t, d.cli(['image', 'rm', 'derived:1']), 'rm derived').split('\n');
  t.same(rmDerived, ['Untagged: derived:1', `Deleted: ${derivedId}`, `Deleted: ${derived.Layers[1]!.Id}`], 'only the unshared layer goes');
  t.equal(layerCount(d), 1, 'base layer kept');
  t.same(fs.readdirSync(path.join(d.root, 'layer-index')), [hex(baseLayer.Id) + '.sidx'], "the removed layer's index went with it");
  t.ok(fs.existsSync(path.join(d.root, 'layers', hex(baseLayer.Id))));

  const forced = ok(t, d.cli(['image', 'rm', '-f', 'base:1']), 'rm -f of an image in use');
  t.same(forced.split('\n'), ['Untagged: base:1'], '-f only untags an image a container uses');
  const imgs = jsonLines<ImageRow>(ok(t, d.cli(['images', '--no-trunc', '--format', 'json']), 'images'));
  t.same(imgs.map((i) => [i.ID, i.Repository, i.Tag]), [[imageId, '<none>', '<none>']], 'the image stays, untagged');
  t.equal(fs.readFileSync(path.join(mnt, 'extra.bin')).length, 3000, 'the container still works');

  ok(t, d.cli(['rm', '-f', 'c1']), 'rm container');
  const rmBase = ok(t, d.cli(['rmi', imageId]), 'rm the unused image by id').split('\n');
  t.same(rmBase, [`Deleted: ${imageId}`, `Deleted: ${baseLayer.Id}`]);
  t.equal(layerCount(d), 0, 'no layer dirs left');
  t.same(ok(t, d.cli(['images', '-q']), 'images -q'), '');
});

t.test('volumes: labels, inspect fields, rm in use, prune, binds', opts, async (t) => {
  const { d } = await daemonWithBase(t, 'dvol');
  t.equal(ok(t, d.cli(['volume', 'create', '--label', 'team=storage', '--label', 'env=test', 'myvol']), 'create'), 'myvol');
  const v = jsonOf<Volume[]>(t, d.cli(['volume', 'inspect', 'myvol']), 'inspect')[0]!;
  for (const k of ['CreatedAt', 'Driver', 'Labels', 'Mountpoint', 'Name', 'Options', 'Scope']) t.ok(k in v, `inspect has ${k}`);
  t.match(v, { Name: 'myvol', Driver: 'local', Scope: 'local', Labels: { team: 'storage', env: 'test' }, Options: {} });
  t.equal(v.Mountpoint, path.join(d.root, 'volumes', 'myvol', '_data'));
  t.ok(fs.statSync(v.Mountpoint).isDirectory(), 'mountpoint exists');
  t.ok(!Number.isNaN(Date.parse(v.CreatedAt)), 'CreatedAt is a date');

  ok(t, d.cli(['container', 'create', '--name', 'user', '-v', 'myvol:/m', '-v', '/anon-used', 'base:1']), 'create user');
  fails(t, d.cli(['volume', 'rm', 'myvol']), /volume myvol is in use by container\(s\) [0-9a-f]{12}/, 'rm of a volume in use');
  ok(t, d.cli(['volume', 'create', 'unused']), 'create unused');
  ok(t, d.cli(['container', 'create', '--name', 'gone', '-v', '/anon-free', 'base:1']), 'create gone');
  const vols = () => jsonLines<VolumeListRow>(ok(t, d.cli(['volume', 'ls', '--format', 'json']), 'ls'));
  const anon = vols().filter((x) => x.Anonymous);
  t.equal(anon.length, 2, 'two anonymous volumes');
  for (const a of anon) t.match(a.Name, /^[0-9a-f]{64}$/);
  const goneMounts = jsonOf<ContainerInspect[]>(t, d.cli(['container', 'inspect', 'gone']), 'inspect gone')[0]!.Mounts;
  t.same(goneMounts.map((m) => [m.Type, m.Destination]), [['volume', '/anon-free']]);
  const anonFree = anon.find((x) => x.Name === goneMounts[0]!.Name)!;
  t.ok(anonFree, 'the anonymous volume of "gone" is listed');
  ok(t, d.cli(['rm', 'gone']), 'rm gone');
  t.ok(vols().some((x) => x.Name === anonFree.Name), 'rm keeps the anonymous volume (as docker rm without -v)');

  const prune = ok(t, d.cli(['volume', 'prune', '-f']), 'prune').split('\n');
  t.same(prune, ['Deleted Volumes:', anonFree.Name, '', 'Total reclaimed space: 0B'], 'prune removes the unused anonymous volume only');
  t.same(vols().map((x) => x.Name).sort(), [...anon.map((a) => a.Name).filter((n) => n !== anonFree.Name), 'myvol', 'unused'].sort());
  t.notOk(fs.existsSync(path.join(d.root, 'volumes', anonFree.Name)), 'its directory is gone');
  const pruneAll = ok(t, d.cli(['volume', 'prune', '-f', '-a']), 'prune -a').split('\n');
  t.same(pruneAll.slice(0, 3), ['Deleted Volumes:', 'unused', ''], 'prune -a removes every unused volume');
  t.same(vols().map((x) => x.Name).sort(), [anon.find((a) => a.Name !== anonFree.Name)!.Name, 'myvol'].sort(), 'volumes in use stay');
  fails(t, d.cli(['volume', 'rm', 'unused']), /no such volume: unused/, 'rm of a pruned volume');

  // Binds: -v creates a missing host dir; :ro gives EROFS inside.
  const host = path.join(d.ws, 'hostdir', 'sub');
  ok(t, d.cli(['container', 'create', '--name', 'b', '-v', `${host}:/hb:ro`, '-v', `${d.ws}/rw:/rw`, 'base:1']), 'create with binds');
  t.ok(fs.statSync(host).isDirectory(), 'missing bind source created');
  fs.writeFileSync(path.join(host, 'from-host'), 'h\n');
  const mnt = ok(t, d.cli(['container', 'mount', 'b']), 'mount b');
  t.equal(fs.readFileSync(path.join(mnt, 'hb', 'from-host'), 'utf8'), 'h\n', 'bind content visible');
  t.equal(errCode(() => fs.writeFileSync(path.join(mnt, 'hb', 'x'), 'x')), 'EROFS', 'write to a :ro bind is EROFS');
  t.notOk(fs.existsSync(path.join(host, 'x')));
  fs.writeFileSync(path.join(mnt, 'rw', 'y'), 'y\n');
  t.equal(fs.readFileSync(path.join(d.ws, 'rw', 'y'), 'utf8'), 'y\n', 'rw bind writes reach the host');

  fails(
    t,
    d.cli(['container', 'create', '--mount', `type=bind,source=${d.ws}/missing,target=/x`, 'base:1']),
    new RegExp(`bind source path does not exist: ${d.ws}/missing`),
    '--mount with a missing bind source',
  );
  t.notOk(fs.existsSync(path.join(d.ws, 'missing')), '--mount does not create it');
});

t.test('SIGKILL: restart remounts mounted containers', opts, async (t) => {
  const { d } = await daemonWithBase(t, 'dkill');
  ok(t, d.cli(['container', 'create', '--name', 'c1', '-v', 'v:/data', 'base:1']), 'create');
  ok(t, d.cli(['container', 'create', '--name', 'idle', 'base:1']), 'create idle');
  const mnt = ok(t, d.cli(['container', 'mount', 'c1']), 'mount');
  fs.writeFileSync(path.join(mnt, 'kept'), 'kept\n');
  const r = await d.kill('SIGKILL');
  t.equal(r.signal, 'SIGKILL');
  // Kept by the fd holder, the mount stays (a stat in it would wait for the next stratad).
  t.ok(mountsUnder(mnt).some((m) => m.mountPoint === mnt), 'after kill -9 the mount is still there');

  await d.restart();
  t.equal(fs.readFileSync(path.join(mnt, 'etc/motd'), 'utf8'), MOTD, 'cat works after restart');
  t.equal(fs.readFileSync(path.join(mnt, 'kept'), 'utf8'), 'kept\n', 'writes before the crash are there');
  t.equal(fs.readFileSync(path.join(mnt, 'data/seed'), 'utf8'), SEED, 'the volume is mounted again');
  fs.writeFileSync(path.join(mnt, 'after'), 'a\n');
  const at = mountsUnder(mnt);
  t.same(at.map((m) => m.mountPoint.slice(mnt.length) || '/').sort(), ['/', '/data'], 'one union mount and one volume mount: no stale or duplicate ones');
  t.equal(at.find((m) => m.mountPoint === mnt)?.fsType, 'fuse.strata');
  const ps = jsonLines<ContainerRow>(ok(t, d.cli(['ps', '--format', 'json']), 'ps'));
  t.same(ps.map((c) => [c.Names, c.State, c.Mountpoint]), [['c1', 'mounted', mnt]], 'ps shows it mounted');
  const all = jsonLines<ContainerRow>(ok(t, d.cli(['ps', '-a', '--format', 'json']), 'ps -a'));
  t.equal(all.find((c) => c.Names === 'idle')?.State, 'created', 'the unmounted one stays unmounted');
  t.same(ok(t, d.cli(['diff', 'c1']), 'diff').split('\n'), ['A /after', 'A /kept']);
});

t.test('SIGTERM: exit 0, every mount gone, socket removed; then no daemon', opts, async (t) => {
  const { d } = await daemonWithBase(t, 'dterm');
  for (const n of ['a', 'b']) {
    ok(t, d.cli(['container', 'create', '--name', n, '-v', `vol-${n}:/data`, '-v', `${d.ws}/bind-${n}:/b`, 'base:1']), `create ${n}`);
    ok(t, d.cli(['container', 'mount', n]), `mount ${n}`);
  }
  t.equal(mountsUnder(d.root).length, 6, 'two unions, each with a volume and a bind');
  const r = await d.kill('SIGTERM');
  t.same(r, { code: 0, signal: null }, 'exit status 0');
  t.same(mountsUnder(d.root), [], 'no mounts left under the root');
  t.notOk(fs.existsSync(d.socket), 'socket removed');

  const c = d.cli(['ps']);
  fails(t, c, new RegExp(`cannot connect to the strata daemon at ${d.socket}: is stratad running\\?`), 'CLI with no daemon');
  t.equal(c.stderr.trim().split('\n').length, 1, 'a single line');
  fails(t, d.cli(['ps'], { noSocket: true, env: { STRATA_SOCKET: path.join(d.ws, 'nope.sock') } }), /nope\.sock: is stratad running/, '$STRATA_SOCKET used');
});

t.test('one daemon per root', opts, async (t) => {
  const d = await startDaemon(t, { label: 'dlock' });
  const daemonRun = (args: string[]) => {
    const [cmd, argv] = cleanEnv([STRATAD(), ...args, '--log-level', 'warn']);
    return spawnSync(cmd, argv, { encoding: 'utf8', timeout: 30_000 });
  };
  const second = daemonRun(['--root', d.root, '--socket', path.join(d.ws, 'other.sock')]);
  t.equal(second.status, 1, 'second daemon on the same root exits 1');
  t.match(second.stderr, new RegExp(`another stratad \\(pid ${d.pid}\\) is already using ${d.root}`), 'names the holder');
  t.notOk(fs.existsSync(path.join(d.ws, 'other.sock')), 'it left no socket');
  const sameSock = daemonRun(['--root', path.join(d.ws, 'root2'), '--socket', d.socket]);
  t.equal(sameSock.status, 1, 'a daemon on a live socket exits 1');
  t.match(sameSock.stderr, /another daemon is already listening on .*strata\.sock/);
  t.ok(await ping(d.socket), 'the first daemon still answers');
  t.ok(fs.existsSync(d.socket), 'its socket is still there');
  t.same(fs.readdirSync(d.ws).filter((n) => n.startsWith('.stratad-')), [], 'the refused daemons left no staging dir');
});

t.test('bad input: names, references, missing objects, hostile tars', opts, async (t) => {
  const { d } = await daemonWithBase(t, 'dbad');
  fails(t, d.cli(['container', 'create', '--name', 'bad name', 'base:1']), /invalid container name "bad name": only \[a-zA-Z0-9\]\[a-zA-Z0-9_.-\] are allowed/, 'bad container name');
  fails(t, d.cli(['container', 'create', '--name', '.x', 'base:1']), /invalid container name "\.x"/, 'container name starting with a dot');
  fails(t, d.cli(['volume', 'create', 'bad/vol']), /invalid volume name "bad\/vol": only \[a-zA-Z0-9\]/, 'bad volume name');
  fails(t, d.cli(['container', 'create', '-v', '_bad:/x', 'base:1']), /invalid volume name "_bad"/, 'bad -v volume name');
  const tar = path.join(d.ws, 'base.tar');
  fails(t, d.cli(['image', 'import', tar, 'Upper/case']), /invalid reference "Upper\/case": repository name components must be lowercase/, 'uppercase repo');
  fails(t, d.cli(['image', 'import', tar, 'good:bad!tag']), /invalid reference "good:bad!tag": tag "bad!tag" must match/, 'bad tag');
  fails(t, d.cli(['image', 'tag', 'base:1', 'x:.dot']), /tag "\.dot" must match/, 'tag starting with a dot');
  fails(t, d.cli(['container', 'create', '-v', 'v:relative', 'base:1']), /-v target "relative" must be an absolute path/, 'relative -v target');
  t.same(jsonLines<VolumeListRow>(ok(t, d.cli(['volume', 'ls', '--format', 'json']), 'ls')).map((v) => v.Name), [], 'failed creates made no volumes');
  t.same(jsonLines<ContainerRow>(ok(t, d.cli(['ps', '-a', '--format', 'json']), 'ps')).length, 0, '...and no containers');

  ok(t, d.cli(['container', 'create', '--name', 'taken', 'base:1']), 'create taken');
  fails(t, d.cli(['container', 'create', '--name', 'taken', 'base:1']), /the container name "taken" is already in use/, 'duplicate container name');
  fails(t, d.cli(['container', 'mount', 'nosuch']), /no such container: nosuch/, 'missing container');
  fails(t, d.cli(['image', 'inspect', 'nosuch:1']), /no such image: nosuch:1/, 'missing image');
  fails(t, d.cli(['container', 'create', 'nosuch:1']), /no such image: nosuch:1/, 'create from a missing image');
  fails(t, d.cli(['volume', 'inspect', 'nosuchvol']), /no such volume: nosuchvol/, 'missing volume');
  fails(t, d.cli(['image', 'import', path.join(d.ws, 'nope.tar'), 'x:1']), /import source .*nope\.tar does not exist/, 'missing import source');

  // Hostile tars (python's tarfile writes what GNU tar refuses to).
  const outside = path.join(d.ws, 'outside');
  fs.mkdirSync(outside);
  const evilAbs = path.join(d.ws, 'evil-abs');
  const py = String.raw`
import io, sys, tarfile
def add(tf, name, data=b'evil', typ=tarfile.REGTYPE, link=''):
  ti = tarfile.TarInfo(name); ti.type = typ; ti.linkname = link; ti.mode = 0o644
  if typ == tarfile.REGTYPE:
      ti.size = len(data); tf.addfile(ti, io.BytesIO(data))
  else:
      tf.addfile(ti)
ws, outside, abs_ = sys.argv[1], sys.argv[2], sys.argv[3]
cases = {
'dotdot': [('ok', b'ok'), ('../evil-dd', b'e'), ('a/../../../evil-dd2', b'e')],
'abs': [('ok', b'ok'), (abs_, b'e')],
'symlink': [('ok', b'ok'), ('link', None, tarfile.SYMTYPE, outside), ('link/file', b'e')],
'hardlink': [('ok', b'ok'), ('hl', None, tarfile.LNKTYPE, '../../../../../etc/passwd')],
}
for n, ents in cases.items():
  with tarfile.open('%s/%s.tar' % (ws, n), 'w', format=tarfile.GNU_FORMAT) as tf:
      for e in ents:
          if e[1] is None: add(tf, e[0], typ=e[2], link=e[3])
          else: add(tf, e[0], e[1])
`;
  runOk('python3', ['-c', py, d.ws, outside, evilAbs]);
  const layersBefore = layerCount(d);
  const outsideCandidates = () =>
    [
      path.join(outside, 'file'),
      evilAbs,
      path.join(d.root, 'evil-dd'),
      path.join(d.root, 'evil-dd2'),
      path.join(d.root, 'tmp', 'evil-dd'),
      path.join(d.root, 'layers', 'evil-dd'),
      path.join(d.root, 'layers', 'evil-dd2'),
      path.join(d.ws, 'evil-dd'),
      path.join(d.ws, 'evil-dd2'),
    ].filter((p) => fs.existsSync(p));
  for (const name of ['dotdot', 'abs', 'symlink', 'hardlink']) {
    const r = d.cli(['image', 'import', path.join(d.ws, `${name}.tar`), `evil-${name}:1`]);
    t.same(outsideCandidates(), [], `${name}: nothing written outside the layer dir`);
    t.same(fs.readdirSync(outside), [], `${name}: the symlink target dir is untouched`);
    t.same(tmpEntries(d), [], `${name}: no temp dirs left`);
    if (r.status !== 0) {
      t.equal(r.status, 1, `${name}: refused with exit 1`);
      t.match(r.stderr, /^Error: unsafe archive member/, `${name}: message (${r.stderr.trim()})`);
      fails(t, d.cli(['image', 'inspect', `evil-${name}:1`]), /no such image/, `${name}: no image`);
      t.equal(layerCount(d), layersBefore, `${name}: no leftover layer dir`);
    } else {
      // Imported: every member must have landed inside the layer.
      const img = jsonOf<ImageInspect[]>(t, d.cli(['image', 'inspect', `evil-${name}:1`]), `${name}: inspect`)[0]!;
      const dir = path.join(d.root, 'layers', hex(img.Layers[0]!.Id));
      const files = runOk('find', [dir, '-printf', '%P %y\n']).trim().split('\n').sort();
      t.comment(`${name} imported safely: ${files.join(', ')}`);
      t.ok(files.includes('ok f'), `${name}: layer holds its content`);
      if (name === 'abs') t.ok(fs.existsSync(path.join(dir, evilAbs)), 'absolute member rooted at the layer');
      ok(t, d.cli(['rmi', `evil-${name}:1`]), `${name}: rmi`);
    }
  }
});

t.test('concurrency: parallel volume and container creates', opts, async (t) => {
  const { d } = await daemonWithBase(t, 'dconc');
  const N = 10;
  const calls: Promise<RunResult>[] = [];
  for (let i = 0; i < N; i++) {
    calls.push(d.cliAsync(['volume', 'create', '--label', `i=${i}`, `cv${i}`]));
    calls.push(d.cliAsync(['container', 'create', '--name', `cc${i}`, '-v', `cv${i}:/data`, '-v', `/anon${i}`, 'base:1']));
  }
  const results = await Promise.all(calls);
  results.forEach((r, i) => t.equal(r.status, 0, `call ${i} succeeded${r.status ? ': ' + r.stderr.trim() : ''}`));
  const vols = jsonLines<VolumeListRow>(ok(t, d.cli(['volume', 'ls', '--format', 'json']), 'volume ls'));
  const named = vols.filter((v) => !v.Anonymous);
  t.same(named.map((v) => v.Name).sort(), [...Array(N).keys()].map((i) => `cv${i}`).sort(), 'all named volumes listed');
  t.equal(vols.filter((v) => v.Anonymous).length, N, 'one anonymous volume per container');
  for (const v of named) t.equal(v.Links, 1, `${v.Name} used by one container`);
  const cs = jsonLines<ContainerRow>(ok(t, d.cli(['ps', '-a', '--format', 'json']), 'ps -a'));
  t.same(cs.map((c) => c.Names).sort(), [...Array(N).keys()].map((i) => `cc${i}`).sort(), 'all containers listed');
  t.equal(fs.readdirSync(path.join(d.root, 'containers')).length, N, 'one dir per container');
  t.equal(fs.readdirSync(path.join(d.root, 'volumes')).length, 2 * N, 'one dir per volume');
  // The same container mounted by several calls at once: one union mount, every call prints its mountpoint.
  const same = await Promise.all([...Array(4).keys()].map(() => d.cliAsync(['container', 'mount', 'cc0'])));
  same.forEach((r, i) => t.equal(r.status, 0, `concurrent mount ${i} of cc0${r.status ? ': ' + r.stderr.trim() : ''}`));
  const mp = same[0]!.stdout.trim();
  t.same(new Set(same.map((r) => r.stdout.trim())).size, 1, 'all print the same mountpoint');
  t.equal(listMounts().filter((m) => m.mountPoint === mp).length, 1, 'mounted once');
  t.same(mountsUnder(mp).map((m) => m.mountPoint.slice(mp.length)).sort(), ['', '/anon0', '/data'], 'with its volumes once each');
  t.ok(fs.readFileSync(path.join(mp, 'etc/motd'), 'utf8') === MOTD, 'and it works');
  // Parallel mounts of all of them.
  const mounts = await Promise.all(cs.map((c) => d.cliAsync(['container', 'mount', c.Names])));
  mounts.forEach((r, i) => t.equal(r.status, 0, `mount ${i}${r.status ? ': ' + r.stderr.trim() : ''}`));
  const q = ok(t, d.cli(['ps', '-q']), 'ps -q').split('\n');
  t.equal(q.length, N, 'all mounted');

  const db = new BetterSqlite3(path.join(d.root, 'strata.db'), { readonly: true, fileMustExist: true });
  try {
    t.equal(db.pragma('integrity_check', { simple: true }), 'ok', 'sqlite integrity_check');
    t.same(db.pragma('foreign_key_check'), [], 'no foreign key violations');
    const cv = db.prepare('SELECT count(*) AS n FROM container_volumes').get() as { n: number };
    t.equal(cv.n, 2 * N, 'container_volumes has both volumes of each container');
  } finally {
    db.close();
  }
});

t.test('socket permissions', opts, async (t) => {
  const d = await startDaemon(t, { label: 'dperm' });
  const st = fs.statSync(d.socket);
  t.ok(st.isSocket(), 'a socket');
  t.equal((st.mode & 0o777).toString(8), '660', 'mode 0660');
  t.equal(st.uid, 0, 'owned by root');
  t.same(fs.readdirSync(d.ws).filter((n) => n.startsWith('.stratad-')), [], 'no staging dir left behind');
  const r = d.cli(['ps'], { asUser: true });
  fails(t, r, new RegExp(`permission denied while connecting to the strata daemon at ${d.socket}`), 'unprivileged CLI');
  t.ok(ok(t, d.cli(['info']), 'root CLI').includes('Storage Driver: strata-fuse'), 'root is served');
});

t.test('--format json and -q on ps, images, volume ls', opts, async (t) => {
  const { d, imageId } = await daemonWithBase(t, 'dfmt');
  ok(t, d.cli(['image', 'tag', 'base:1', 'other:2']), 'tag');
  const c1 = ok(t, d.cli(['container', 'create', '--name', 'm1', '-v', 'fv:/data', 'base:1']), 'create m1');
  const c2 = ok(t, d.cli(['container', 'create', '--name', 'idle', 'other:2']), 'create idle');
  const mnt = ok(t, d.cli(['container', 'mount', 'm1']), 'mount');

  const ps = jsonLines<ContainerRow>(ok(t, d.cli(['ps', '--format', 'json']), 'ps json'));
  t.same(ps.map((c) => ({ ID: c.ID, Names: c.Names, Image: c.Image, State: c.State, Status: c.Status, Mountpoint: c.Mountpoint })), [
    { ID: c1.slice(0, 12), Names: 'm1', Image: 'base:1', State: 'mounted', Status: 'Mounted', Mountpoint: mnt },
  ], 'ps --format json: docker\'s row fields, one object per line');
  t.ok(ps[0]!.CreatedAt && /B$/.test(ps[0]!.Size));
  t.equal(jsonLines<ContainerRow>(ok(t, d.cli(['ps', '--no-trunc', '--format', 'json']), 'ps json --no-trunc'))[0]!.ID, c1, '--no-trunc: the full id');
  const api = jsonOf<ContainerInspect[]>(t, d.cli(['container', 'inspect', 'm1']), 'inspect m1')[0]!;
  t.same([api.Id, api.Image, api.Config.Image], [c1, imageId, 'base:1'], 'inspect: Image is the id, Config.Image the reference');
  t.same(ok(t, d.cli(['ps', '-q']), 'ps -q'), c1.slice(0, 12), 'ps -q: short id of mounted only');
  t.same(ok(t, d.cli(['ps', '-a', '-q', '--no-trunc']), 'ps -aq').split('\n').sort(), [c1, c2].sort(), 'ps -a -q --no-trunc: full ids');
  const table = ok(t, d.cli(['ps', '-a']), 'ps -a table').split('\n');
  t.match(table[0], /^CONTAINER ID\s+IMAGE\s+CREATED\s+STATUS\s+MOUNTPOINT\s+NAMES$/);
  t.equal(table.length, 3);

  const imgs = jsonLines<ImageRow>(ok(t, d.cli(['images', '--format', 'json']), 'images json'));
  t.same(imgs.map((i) => [i.ID, `${i.Repository}:${i.Tag}`]).sort(), [[hex(imageId).slice(0, 12), 'base:1'], [hex(imageId).slice(0, 12), 'other:2']], 'one row per tag');
  t.equal(ok(t, d.cli(['images', '-q']), 'images -q'), hex(imageId).slice(0, 12), 'images -q: one id for two tags');
  t.equal(ok(t, d.cli(['image', 'ls', '-q', '--no-trunc']), 'image ls -q --no-trunc'), imageId);
  const itable = ok(t, d.cli(['images']), 'images table').split('\n');
  t.match(itable[0], /^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$/);
  t.equal(itable.length, 3, 'one row per tag');

  ok(t, d.cli(['volume', 'create', 'second']), 'volume create');
  const vols = jsonLines<VolumeListRow>(ok(t, d.cli(['volume', 'ls', '--format', 'json']), 'volume ls json'));
  t.same(vols.map((v) => [v.Name, v.Driver, v.Links]).sort(), [['fv', 'local', 1], ['second', 'local', 0]]);
  t.same(ok(t, d.cli(['volume', 'ls', '-q']), 'volume ls -q').split('\n').sort(), ['fv', 'second']);
  const vtable = ok(t, d.cli(['volume', 'ls']), 'volume ls table').split('\n');
  t.match(vtable[0], /^DRIVER\s+VOLUME NAME$/);
  t.equal(vtable.length, 3);
});

t.test('a lower directory moved in a container is whole in the committed image', opts, async (t) => {
  const d = await startDaemon(t);
  const ws = d.ws;
  ok(t, d.cli(['image', 'import', baseTar(ws), 'base:1']), 'import');
  ok(t, d.cli(['container', 'create', '--name', 'mv', 'base:1']), 'create');
  const merged = ok(t, d.cli(['container', 'mount', 'mv']), 'mount').trim();
  // Container mounts run without redirect_dir: rename(2) of a lower dir is EXDEV, mv copies.
  t.equal(errCode(() => fs.renameSync(path.join(merged, 'etc'), path.join(merged, 'etc2'))), 'EXDEV', 'rename(2) of a lower dir');
  runOk('mv', [path.join(merged, 'etc'), path.join(merged, 'etc2')]);
  t.equal(fs.readFileSync(path.join(merged, 'etc2/motd'), 'utf8'), MOTD, 'moved with its lower content');
  ok(t, d.cli(['commit', 'mv', 'moved:1']), 'commit');
  ok(t, d.cli(['container', 'create', '--name', 'check', 'moved:1']), 'create from the commit');
  const m2 = ok(t, d.cli(['container', 'mount', 'check']), 'mount').trim();
  t.equal(fs.readFileSync(path.join(m2, 'etc2/motd'), 'utf8'), MOTD, 'the committed layer holds the moved content');
  t.notOk(fs.existsSync(path.join(m2, 'etc')), 'the old name is gone');
});
