// image save / load and container export, end to end through stratad and the strata CLI:
// round trips between fresh daemon roots (OCI layout and docker-archive), corrupt and unsafe
// archives, and interop with the real tools (skopeo, podman, umoci).
import t, { type Test } from 'tap';
import { jsonLines } from './lib/expect';
import { repoRoot } from './lib/mount-union';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import type { ContainerInspect, ImageInspect } from '../daemon/model/types';
import type { ImageRow } from '../cli/commands/images';
import { failsWith, ok } from './lib/assert';
import { hasCommand, run, runOk, type RunResult } from './lib/exec';
import { startDaemon, type Daemon } from './lib/daemon';
import { missingCapability } from './lib/mount-union';
import { listMounts } from './lib/mount-table';
import { diffSnapshots, snapshot, type Snapshot } from './lib/snapshot';
import { makeWorkspace } from './lib/workspace';

const skip = missingCapability({ fuse: true });

function findStaticBusybox(): string | null {
  for (const c of ['/bin/busybox', '/usr/bin/busybox']) {
    try {
      const b = fs.readFileSync(c);
      if (b.readUInt32BE(0) === 0x7f454c46 && !b.includes(Buffer.from('/lib64/ld-linux')) && !b.includes(Buffer.from('/lib/ld-linux'))) return c;
    } catch {
      /* next */
    }
  }
  return null;
}

/** A small rootfs: busybox (when a static one exists) + files the scenario changes. */
function makeRootfs(ws: string): string {
  const dir = path.join(ws, 'rootfs');
  for (const d of ['bin', 'etc', 'data/dir', 'data/keep', 'tmp', 'dev', 'proc', 'sys', 'run']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.chmodSync(path.join(dir, 'tmp'), 0o1777);
  const bb = findStaticBusybox();
  if (bb) {
    fs.copyFileSync(bb, path.join(dir, 'bin/busybox'));
    fs.chmodSync(path.join(dir, 'bin/busybox'), 0o755);
    for (const a of ['sh', 'cat', 'ls', 'rm', 'mkdir', 'echo']) fs.symlinkSync('busybox', path.join(dir, 'bin', a));
  }
  fs.writeFileSync(path.join(dir, 'etc/motd'), 'hello from strata\n');
  fs.writeFileSync(path.join(dir, 'etc/a'), 'a\n');
  fs.writeFileSync(path.join(dir, 'etc/b'), 'b\n');
  for (const f of ['etc/hosts', 'etc/hostname', 'etc/resolv.conf', 'run/.containerenv']) fs.writeFileSync(path.join(dir, f), '');
  fs.writeFileSync(path.join(dir, 'data/dir/x'), 'x\n');
  fs.writeFileSync(path.join(dir, 'data/dir/y'), 'y\n');
  fs.writeFileSync(path.join(dir, 'data/keep/k'), 'k\n', { mode: 0o640 });
  fs.chownSync(path.join(dir, 'data/keep/k'), 123, 456);
  fs.linkSync(path.join(dir, 'data/keep/k'), path.join(dir, 'data/keep/k2'));
  return dir;
}

const CHANGES = 'rm /etc/a; rm -rf /data/dir; mkdir /data/dir; echo z > /data/dir/z; echo new > /new.txt';

function sha256File(p: string): string {
  return createHash('sha256').update(fs.readFileSync(p)).digest('hex');
}

function inspect(d: Daemon, ref: string): ImageInspect {
  const r = d.cli(['image', 'inspect', ref]);
  if (r.status !== 0) throw new Error(`inspect ${ref}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as ImageInspect[])[0];
}

/** Snapshot of a mounted tree, comparable across tools: the root entry and mtimes left out. */
function view(dir: string, mtime = false): Snapshot {
  const s = snapshot(dir, { mtime, ignoreXattr: (n) => n.startsWith('trusted.overlay.') || n.startsWith('security.') });
  delete s['.'];
  return s;
}

/** Creates a container of `ref` in `d`, mounts it, returns its merged root snapshot, unmounts and removes it. */
function mountedView(t: Test, d: Daemon, ref: string, name: string, mtime = false): Snapshot {
  ok(t, d.cli(['container', 'create', '--name', name, ref]), `create ${name}`);
  const mnt = ok(t, d.cli(['container', 'mount', name]), `mount ${name}`);
  const s = view(mnt, mtime);
  ok(t, d.cli(['container', 'rm', '-f', name]), `rm ${name}`);
  return s;
}

/** Builds img:2 in `d`: base:1 imported from a directory, plus a commit deleting a file and replacing a dir. */
function buildImage(t: Test, d: Daemon, rootfs: string): { id: string; merged: Snapshot; container: string } {
  ok(t, d.cli(['image', 'import', rootfs, 'base:1']), 'import rootfs');
  ok(t, d.cli(['container', 'create', '--name', 'c1', 'base:1']), 'create c1');
  const mnt = ok(t, d.cli(['container', 'mount', 'c1']), 'mount c1');
  runOk('sh', ['-c', CHANGES.replace(/ \//g, ` ${mnt}/`)]);
  const merged = view(mnt, true);
  t.notOk(fs.existsSync(path.join(mnt, 'etc/a')), 'etc/a deleted in c1');
  t.same(fs.readdirSync(path.join(mnt, 'data/dir')), ['z'], 'data/dir replaced in c1');
  const id = ok(t, d.cli(['commit', 'c1', 'img:2']), 'commit c1');
  return { id, merged, container: 'c1' };
}

/** Saves img:2 as an OCI archive and as a docker-archive in `ws`. */
function saveBothFormats(t: Test, d: Daemon, ws: string): { oci: string; docker: string } {
  const oci = path.join(ws, 'img.oci.tar');
  const docker = path.join(ws, 'img.docker.tar');
  ok(t, d.cli(['save', '-o', oci, 'img:2']), 'save oci-archive');
  ok(t, d.cli(['save', '--format', 'docker-archive', '-o', docker, 'img:2']), 'save docker-archive');
  return { oci, docker };
}

function layerDir(d: Daemon, layerId: string): string {
  return path.join(d.root, 'layers', layerId.replace(/^sha256:/, ''));
}

/** No image, no layer dir, nothing in tmp, no stray side files. */
function assertEmpty(t: Test, d: Daemon, what: string): void {
  const imgs = jsonLines<ImageRow>(ok(t, d.cli(['image', 'ls', '--format', 'json']), 'image ls'));
  t.same(imgs, [], `${what}: no image`);
  t.same(fs.readdirSync(path.join(d.root, 'layers')), [], `${what}: no layer dirs`);
  t.same(fs.readdirSync(path.join(d.root, 'tmp')), [], `${what}: temp dir empty`);
  for (const side of ['layer-tars', 'image-configs']) {
    const p = path.join(d.root, side);
    if (fs.existsSync(p)) t.same(fs.readdirSync(p), [], `${what}: no ${side} left`);
  }
}

t.test('save -> load round trip into a fresh root (oci-archive and docker-archive)', { skip: skip ?? false }, async (t) => {
  t.setTimeout(300_000);
  const d1 = await startDaemon(t, { label: 'io-src' });
  const ws = makeWorkspace(t, 'io-rt');
  const { id, merged } = buildImage(t, d1, makeRootfs(ws));
  const src = inspect(d1, 'img:2');
  t.equal(src.Id, id, 'commit printed the image id');

  const oci = path.join(ws, 'img.oci.tar');
  const docker = path.join(ws, 'img.docker.tar');
  const so = ok(t, d1.cli(['image', 'save', '-o', oci, 'img:2']), 'save oci-archive');
  t.match(so, /Saving layer sha256:[0-9a-f]{12} \(/, 'save prints a step line per layer');
  t.match(so, /Saved img:2 to /, 'save prints a summary');
  ok(t, d1.cli(['image', 'save', '--format', 'docker-archive', '-o', docker, 'img:2']), 'save docker-archive');
  t.same(fs.readdirSync(ws).filter((f) => f.includes('.strata-')), [], 'no temp files left next to the outputs');

  // The OCI layout is self-consistent: blob names are digests, layer digests = the image's diff ids.
  const x = path.join(ws, 'x');
  fs.mkdirSync(x);
  runOk('tar', ['-C', x, '-xf', oci]);
  for (const b of fs.readdirSync(path.join(x, 'blobs/sha256'))) t.equal(sha256File(path.join(x, 'blobs/sha256', b)), b, `blob ${b.slice(0, 12)} digest`);
  const index = JSON.parse(fs.readFileSync(path.join(x, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations: Record<string, string> }[] };
  t.same(index.manifests[0].annotations, { 'io.containerd.image.name': 'img:2', 'org.opencontainers.image.ref.name': '2' }, 'index.json names the image');
  const manifest = JSON.parse(fs.readFileSync(path.join(x, 'blobs/sha256', index.manifests[0].digest.slice(7)), 'utf8')) as {
    config: { digest: string };
    layers: { digest: string; mediaType: string }[];
  };
  t.equal(manifest.config.digest, id, 'config digest = image id');
  t.same(manifest.layers.map((l) => l.digest), src.Layers.map((l) => l.DiffId), 'layer blob digests = diff ids');
  const topTar = path.join(x, 'blobs/sha256', manifest.layers[1].digest.slice(7));
  const names = runOk('tar', ['-tf', topTar]).split('\n').filter(Boolean);
  t.ok(names.includes('etc/.wh.a'), 'top layer: OCI whiteout for etc/a');
  t.ok(names.includes('data/dir/.wh..wh..opq'), 'top layer: opaque marker for data/dir');
  const dj = JSON.parse(runOk('tar', ['-xOf', docker, 'manifest.json'])) as { Config: string; RepoTags: string[]; Layers: string[] }[];
  t.same(dj[0].RepoTags, ['img:2'], 'docker manifest.json RepoTags');
  t.equal(dj[0].Config, `${id.slice(7)}.json`, 'docker manifest.json Config');
  t.ok(dj[0].Layers.every((l) => /^[0-9a-f]{64}\/layer\.tar$/.test(l)), 'docker layers are <id>/layer.tar');

  for (const [label, file] of [['oci-archive', oci], ['docker-archive', docker]] as const) {
    const d2 = await startDaemon(t, { label: `io-dst-${label}` });
    const out = ok(t, d2.cli(['image', 'load', '-i', file]), `load ${label}`);
    t.match(out, /Loading layer sha256:[0-9a-f]{12} \(/, `${label}: a step line per layer`);
    t.match(out, /^Loaded image: img:2$/m, `${label}: prints the loaded name`);
    const dst = inspect(d2, 'img:2');
    t.equal(dst.Id, src.Id, `${label}: same image id`);
    t.same(dst.Layers.map((l) => l.DiffId), src.Layers.map((l) => l.DiffId), `${label}: same diff ids`);
    t.same(dst.Layers.map((l) => l.Id), src.Layers.map((l) => l.Id), `${label}: same chain ids`);
    t.same(dst.Config, src.Config, `${label}: same config`);
    t.equal(dst.Created, src.Created, `${label}: same created time`);
    // whiteout and opaque dir survive in overlay format
    const top = layerDir(d2, dst.Layers[1].Id);
    const wh = fs.lstatSync(path.join(top, 'etc/a'));
    t.ok(wh.isCharacterDevice() && wh.rdev === 0, `${label}: etc/a is a 0/0 whiteout in the layer`);
    t.equal(runOk('getfattr', ['--only-values', '-n', 'trusted.overlay.opaque', path.join(top, 'data/dir')]), 'y', `${label}: data/dir is opaque in the layer`);
    t.same(diffSnapshots(mountedView(t, d2, 'img:2', 'v', true), merged, ['loaded', 'source']), [], `${label}: mounted image shows the same files as the source container`);

    // loading again reuses everything; saving again gives byte-identical archives
    const again = ok(t, d2.cli(['load', '-i', file]), `${label}: load again`);
    t.match(again, /already exists/, `${label}: second load reuses the layers`);
    const resaved = path.join(ws, `resaved-${label}.tar`);
    ok(t, d2.cli(['save', '--format', label, '-o', resaved, 'img:2']), `${label}: save from the new root`);
    t.equal(sha256File(resaved), sha256File(file), `${label}: re-saved archive is byte-identical`);
  }

  // gzip-compressed archive
  const gz = path.join(ws, 'img.oci.tar.gz');
  fs.writeFileSync(gz, zlib.gzipSync(fs.readFileSync(oci)));
  const d3 = await startDaemon(t, { label: 'io-gz' });
  ok(t, d3.cli(['load', '-i', gz]), 'load gzip-compressed oci archive');
  t.equal(inspect(d3, 'img:2').Id, id, 'gzip archive: same image id');

  // several tags: one index entry each; an untagged image loads as "Loaded image ID"
  ok(t, d1.cli(['image', 'tag', 'img:2', 'other:1']), 'tag');
  const twoTags = path.join(ws, 'two.tar');
  ok(t, d1.cli(['image', 'save', '-o', twoTags, id]), 'save by id (two tags)');
  const idx = JSON.parse(runOk('tar', ['-xOf', twoTags, 'index.json'])) as { manifests: unknown[] };
  t.equal(idx.manifests.length, 2, 'one index entry per tag');
  const d4 = await startDaemon(t, { label: 'io-untagged' });
  const both = ok(t, d4.cli(['load', '-i', twoTags]), 'load two tags');
  t.match(both, /^Loaded image: img:2\nLoaded image: other:1$/m, 'both tags loaded');
  t.equal(both.split('\n').filter((l) => l.startsWith('Loading layer')).length, 2, 'each layer loaded once');
  const untaggedId = ok(t, d1.cli(['commit', 'c1']), 'commit without a name');
  const untagged = path.join(ws, 'untagged.tar');
  ok(t, d1.cli(['save', '-o', untagged, untaggedId]), 'save untagged image');
  const u = ok(t, d4.cli(['load', '-i', untagged]), 'load untagged image');
  t.match(u, new RegExp(`^Loaded image ID: ${untaggedId}$`, 'm'), 'untagged: prints the image id');
});

t.test('an image imported from a foreign tar saves consistently', { skip: skip ?? false }, async (t) => {
  t.setTimeout(120_000);
  const d = await startDaemon(t, { label: 'io-tar' });
  const ws = makeWorkspace(t, 'io-tar');
  const tar = path.join(ws, 'rootfs.tar');
  runOk('tar', ['-C', makeRootfs(ws), '--numeric-owner', '-cf', tar, '.']);
  ok(t, d.cli(['image', 'import', tar, 'gnu:1']), 'import a GNU tar');
  const src = inspect(d, 'gnu:1');
  const out = path.join(ws, 'gnu.tar');
  const r = d.cli(['save', '-o', out, 'gnu:1']);
  ok(t, r, 'save');
  // An imported rootfs gets the diff id of strata's canonical layer tar, so saving reproduces it.
  t.equal(r.stderr, '', 'no warning on save');
  const d2 = await startDaemon(t, { label: 'io-tar2' });
  ok(t, d2.cli(['load', '-i', out]), 'the archive loads');
  t.same(diffSnapshots(mountedView(t, d2, 'gnu:1', 'v', true), mountedView(t, d, 'gnu:1', 'v', true), ['loaded', 'source']), [], 'same files');
  t.equal(inspect(d2, 'gnu:1').Id, src.Id, 'the loaded image has the same id');
});

t.test('container export writes the merged root', { skip: skip ?? false }, async (t) => {
  t.setTimeout(120_000);
  const d = await startDaemon(t, { label: 'io-export' });
  const ws = makeWorkspace(t, 'io-exp');
  const { merged } = buildImage(t, d, makeRootfs(ws));
  const out = path.join(ws, 'c1.tar');
  const msg = ok(t, d.cli(['container', 'export', '-o', out, 'c1']), 'export (mounted container)');
  t.match(msg, /Exported c1 to /, 'export prints a summary');
  const x = path.join(ws, 'x');
  fs.mkdirSync(x);
  runOk('tar', ['--numeric-owner', '-C', x, '-xpf', out]);
  t.same(diffSnapshots(view(x, true), merged, ['export', 'container']), [], 'export = merged root (owners, modes, mtimes, hard links)');
  ok(t, d.cli(['container', 'unmount', 'c1']), 'unmount c1');
  const out2 = path.join(ws, 'c1b.tar');
  ok(t, d.cli(['export', '-o', out2, 'c1']), 'export (unmounted container)');
  t.equal(sha256File(out2), sha256File(out), 'same archive either way');
  // The export's own mount reads the image's layers through their metadata indexes, as every
  // mount of them does: indexes that went missing are made again for it.
  const indexDir = path.join(d.root, 'layer-index');
  const indexes = fs.readdirSync(indexDir);
  t.ok(indexes.length > 0, 'the image layers have indexes');
  for (const f of indexes) fs.rmSync(path.join(indexDir, f));
  const out3 = path.join(ws, 'c1c.tar');
  ok(t, d.cli(['export', '-o', out3, 'c1']), 'export without indexes');
  const rebuilt = fs.readdirSync(indexDir);
  t.ok(rebuilt.length > 0 && rebuilt.every((f) => indexes.includes(f)), 'the export mount rebuilt the indexes of its layers');
  t.equal(sha256File(out3), sha256File(out), 'same archive through the rebuilt indexes');
  const st = JSON.parse(ok(t, d.cli(['container', 'inspect', 'c1']), 'inspect')) as ContainerInspect[];
  t.equal(st[0].State.Status, 'created', 'export left the container unmounted');
  failsWith(t, d.cli(['export', '-o', path.join(ws, 'nodir/x.tar'), 'c1']), /does not exist/, 'export into a missing dir');
  // Without -o the tar goes to standard output, byte for byte the same archive.
  const viaStdout = path.join(ws, 'c1-stdout.tar');
  runOk('sh', ['-c', `"$0" --socket "$1" export c1 > "$2"`, path.join(repoRoot(), 'bin', 'strata'), d.socket, viaStdout]);
  t.equal(sha256File(viaStdout), sha256File(out), 'export to stdout = export -o');
  failsWith(t, d.cli(['export', 'nosuch']), /no such container/, 'export of a missing container');
});

t.test('corrupt, truncated and unsafe archives leave nothing behind', { skip: skip ?? false }, async (t) => {
  t.setTimeout(300_000);
  const d1 = await startDaemon(t, { label: 'io-bad-src' });
  const ws = makeWorkspace(t, 'io-bad');
  const { id } = buildImage(t, d1, makeRootfs(ws));
  const { oci, docker } = saveBothFormats(t, d1, ws);
  const d = await startDaemon(t, { label: 'io-bad' });
  const raw = fs.readFileSync(oci);

  const write = (name: string, b: Buffer): string => {
    const p = path.join(ws, name);
    fs.writeFileSync(p, b);
    return p;
  };
  // truncated in the middle of the big base layer
  failsWith(t, d.cli(['load', '-i', write('trunc.tar', raw.subarray(0, Math.floor(raw.length / 2)))]), /truncated/, 'truncated archive');
  assertEmpty(t, d, 'truncated');
  // truncated right before the end-of-archive marker
  failsWith(t, d.cli(['load', '-i', write('trunc2.tar', raw.subarray(0, raw.length - 1024))]), /end-of-archive|truncated/, 'archive without end marker');
  assertEmpty(t, d, 'no end marker');
  // a byte flipped inside a layer blob: its digest no longer matches
  const flipped = Buffer.from(raw);
  const at = flipped.indexOf(Buffer.from('hello from strata'));
  t.ok(at > 0, 'found file content in the archive');
  flipped[at] ^= 0x20;
  failsWith(t, d.cli(['load', '-i', write('flip.tar', flipped)]), /does not match its content/, 'bad blob digest (oci)');
  assertEmpty(t, d, 'bad blob digest');
  // the same in a docker archive: caught by the diff id check
  const rawD = Buffer.from(fs.readFileSync(docker));
  rawD[rawD.indexOf(Buffer.from('hello from strata'))] ^= 0x20;
  failsWith(t, d.cli(['load', '-i', write('flip-docker.tar', rawD)]), /diff id .* the config says/, 'bad diff id (docker)');
  assertEmpty(t, d, 'bad diff id');
  // a corrupt top layer (valid base): the base layer created for it must go again
  const x = path.join(ws, 'x');
  fs.mkdirSync(x);
  runOk('tar', ['-C', x, '-xf', docker]);
  const man = JSON.parse(fs.readFileSync(path.join(x, 'manifest.json'), 'utf8')) as { Layers: string[] }[];
  const topPath = path.join(x, man[0].Layers[1]);
  const top = fs.readFileSync(topPath);
  fs.writeFileSync(topPath, top.subarray(0, 512)); // just a header: wrong diff id
  const cut = path.join(ws, 'cut-docker.tar');
  runOk('tar', ['-C', x, '-cf', cut, '.']);
  failsWith(t, d.cli(['load', '-i', cut]), /layer 2 .* diff id/, 'corrupt top layer');
  assertEmpty(t, d, 'corrupt top layer');
  // not an image archive at all
  failsWith(t, d.cli(['load', '-i', write('junk.tar', Buffer.alloc(4096, 7))]), /corrupt archive|cannot load/, 'garbage');
  assertEmpty(t, d, 'garbage');
  // a member climbing out of the archive
  const evil = path.join(ws, 'evil');
  fs.mkdirSync(evil);
  fs.writeFileSync(path.join(evil, 'evil'), 'x');
  const evilTar = path.join(ws, 'evil.tar');
  runOk('tar', ['-C', evil, '-cf', evilTar, '--transform', 's,^evil$,../../escaped,', 'evil']);
  failsWith(t, d.cli(['load', '-i', evilTar]), /escapes the archive/, 'member with ../');
  t.notOk(fs.existsSync(path.join(d.root, 'escaped')) || fs.existsSync(path.join(path.dirname(d.root), 'escaped')), 'nothing written outside');
  assertEmpty(t, d, 'path traversal');
  // missing file
  failsWith(t, d.cli(['load', '-i', path.join(ws, 'nope.tar')]), /does not exist/, 'missing input');
  // after all that, the good archive still loads
  ok(t, d.cli(['load', '-i', oci]), 'good archive loads');
  t.equal(inspect(d, 'img:2').Id, id, 'same id');
  // save into a missing directory fails and leaves nothing
  failsWith(t, d.cli(['save', '-o', path.join(ws, 'no/such/dir.tar'), 'img:2']), /does not exist/, 'save into a missing dir');
  failsWith(t, d.cli(['save', '-o', path.join(ws, 'x.tar'), 'nosuch:1']), /no such image/, 'save an unknown image');
  t.notOk(fs.existsSync(path.join(ws, 'x.tar')), 'no output for an unknown image');
});

// ------------------------------------------------------------------------------------------
// Real tools

function podmanSkip(): string | false {
  if (skip) return skip;
  for (const c of ['podman', 'skopeo', 'runc']) if (!hasCommand(c)) return `${c} is not installed`;
  if (!findStaticBusybox()) return 'no static busybox (install busybox-static)';
  return false;
}

interface Podman {
  base: string;
  root: string;
  runroot: string;
  args: string[];
  run(args: string[]): RunResult;
  ok(t: Test, args: string[], what: string): string;
}

function makePodman(t: Test): Podman {
  const base = makeWorkspace(t, 'io-podman');
  const root = path.join(base, 'root');
  const runroot = path.join(base, 'runroot');
  const args = ['--root', root, '--runroot', runroot, '--tmpdir', path.join(base, 'tmp'), '--storage-driver', 'overlay', '--cgroup-manager', 'cgroupfs', '--runtime', 'runc', '--events-backend', 'file'];
  const p: Podman = {
    base,
    root,
    runroot,
    args,
    run: (a) => run('podman', [...args, ...a], { timeout: 180_000 }),
    ok: (tt, a, what) => ok(tt, p.run(a), what),
  };
  // registered after the workspace: runs first (LIFO)
  t.teardown(() => {
    for (const a of [['image', 'unmount', '-a'], ['rm', '-af', '-t', '0'], ['rmi', '-af']]) p.run(a);
    for (const m of listMounts().map((x) => x.mountPoint).filter((mp) => mp.startsWith(base + '/')).sort((a, b) => b.length - a.length)) run('umount', ['-l', m]);
  });
  return p;
}

const RUN_ARGS = ['--pull', 'never', '--network', 'none', '--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=32768:32768'];

t.test('skopeo + podman run a strata-saved image', { skip: podmanSkip() }, async (t) => {
  t.setTimeout(300_000);
  const d = await startDaemon(t, { label: 'io-skopeo' });
  const ws = makeWorkspace(t, 'io-sk');
  const { merged } = buildImage(t, d, makeRootfs(ws));
  const { oci, docker } = saveBothFormats(t, d, ws);
  const id = inspect(d, 'img:2').Id;
  const p = makePodman(t);
  const dest = (name: string) => `containers-storage:[overlay@${p.root}+${p.runroot}]${name}`;
  ok(t, run('skopeo', ['copy', '-q', `oci-archive:${oci}`, dest('localhost/strata-io:latest')], { timeout: 180_000 }), 'skopeo copy oci-archive -> containers-storage');
  ok(t, run('skopeo', ['copy', '-q', `docker-archive:${docker}`, dest('localhost/strata-io-d:latest')], { timeout: 180_000 }), 'skopeo copy docker-archive -> containers-storage');
  const pid = p.ok(t, ['image', 'inspect', '--format', '{{.Id}}', 'localhost/strata-io:latest'], 'podman inspect');
  t.equal(`sha256:${pid}`, id, 'podman sees the same image id');
  const motd = p.ok(t, ['run', '--rm', ...RUN_ARGS, 'localhost/strata-io:latest', 'cat', '/etc/motd'], 'podman run cat /etc/motd');
  t.equal(motd, 'hello from strata', 'podman runs the image');
  const ls = p.ok(t, ['run', '--rm', ...RUN_ARGS, 'localhost/strata-io-d:latest', 'sh', '-c', 'ls /etc; echo ---; ls /data/dir; cat /new.txt'], 'podman run (docker-archive image)');
  t.notMatch(ls, /^a$/m, 'the whiteout hides etc/a');
  t.match(ls, /---\nz\nnew/, 'the opaque dir shows only z');
  // podman's view of the image = strata's
  const mnt = p.ok(t, ['image', 'mount', 'localhost/strata-io:latest'], 'podman image mount');
  t.same(diffSnapshots(view(mnt), stripMtime(merged), ['podman', 'strata']), [], 'podman image mount shows the same files');
  p.run(['image', 'unmount', 'localhost/strata-io:latest']);
});

function stripMtime(s: Snapshot): Snapshot {
  const out: Snapshot = {};
  for (const [k, v] of Object.entries(s)) {
    const { mtime: _m, ...rest } = v;
    out[k] = rest as Snapshot[string];
  }
  return out;
}

t.test('podman-saved images load into strata (oci-archive and docker-archive)', { skip: podmanSkip() }, async (t) => {
  t.setTimeout(400_000);
  const ws = makeWorkspace(t, 'io-pm');
  const rootfs = makeRootfs(ws);
  const rootfsTar = path.join(ws, 'rootfs.tar');
  runOk('tar', ['-C', rootfs, '--numeric-owner', '-cf', rootfsTar, '.']);
  const p = makePodman(t);
  p.ok(t, ['import', '-q', rootfsTar, 'localhost/pm-base:latest'], 'podman import');
  p.ok(t, ['run', '--name', 'pc', ...RUN_ARGS, 'localhost/pm-base:latest', 'sh', '-c', CHANGES], 'podman run (changes)');
  p.ok(t, ['commit', '-q', 'pc', 'localhost/pm-img:latest'], 'podman commit');
  const pid = 'sha256:' + p.ok(t, ['image', 'inspect', '--format', '{{.Id}}', 'localhost/pm-img:latest'], 'podman inspect');
  const pmnt = p.ok(t, ['image', 'mount', 'localhost/pm-img:latest'], 'podman image mount');
  const podmanView = view(pmnt, true);
  t.notOk('etc/a' in podmanView, 'podman view: etc/a deleted');

  for (const format of ['oci-archive', 'docker-archive'] as const) {
    const file = path.join(ws, `pm.${format}.tar`);
    p.ok(t, ['save', '-q', '--format', format, '-o', file, 'localhost/pm-img:latest'], `podman save ${format}`);
    const d = await startDaemon(t, { label: `io-pm-${format}` });
    const out = ok(t, d.cli(['load', '-i', file]), `strata load podman ${format}`);
    t.match(out, /^Loaded image: localhost\/pm-img:latest$/m, `${format}: loaded under podman's name`);
    const img = inspect(d, 'localhost/pm-img:latest');
    t.equal(img.Id, pid, `${format}: same image id as podman`);
    t.same(diffSnapshots(mountedView(t, d, 'localhost/pm-img:latest', 'v', true), podmanView, ['strata', 'podman']), [], `${format}: strata mount = podman image mount`);
    // and back out: byte-identical blobs, so the same id again
    const back = path.join(ws, `back.${format}.tar`);
    const so = d.cli(['save', '--format', format, '-o', back, 'localhost/pm-img:latest']);
    ok(t, so, `${format}: strata save of the loaded image`);
    t.equal(so.stderr, '', `${format}: no warning on save`);
    const d2 = await startDaemon(t, { label: `io-pm2-${format}` });
    ok(t, d2.cli(['load', '-i', back]), `${format}: load strata's re-save`);
    t.equal(inspect(d2, 'localhost/pm-img:latest').Id, pid, `${format}: still podman's id`);
    p.ok(t, ['rmi', '-f', 'localhost/pm-img:latest'], 'podman rmi');
    p.ok(t, ['load', '-q', '-i', back], `podman load of strata's ${format} re-save`);
    t.equal('sha256:' + p.ok(t, ['image', 'inspect', '--format', '{{.Id}}', 'localhost/pm-img:latest'], 'inspect'), pid, `${format}: podman loads it with the same id`);
  }
  p.run(['image', 'unmount', '-a']);
});

t.test('umoci unpacks a strata-saved OCI layout to the same rootfs', { skip: skip ? skip : hasCommand('umoci') ? false : 'umoci is not installed' }, async (t) => {
  t.setTimeout(200_000);
  const d = await startDaemon(t, { label: 'io-umoci' });
  const ws = makeWorkspace(t, 'io-um');
  const { merged } = buildImage(t, d, makeRootfs(ws));
  const oci = path.join(ws, 'img.oci.tar');
  ok(t, d.cli(['save', '-o', oci, 'img:2']), 'strata save');
  const layout = path.join(ws, 'layout');
  fs.mkdirSync(layout);
  runOk('tar', ['-C', layout, '-xf', oci]);
  const bundle = path.join(ws, 'bundle');
  ok(t, run('umoci', ['unpack', '--image', `${layout}:2`, bundle], { timeout: 120_000 }), 'umoci unpack');
  t.same(diffSnapshots(view(path.join(bundle, 'rootfs'), true), merged, ['umoci', 'strata']), [], 'umoci rootfs = strata merged root');
});
