// strata pull / push / login / logout against the real registry (Debian's docker-registry), started
// per test on 127.0.0.1: plain HTTP, htpasswd Basic auth over TLS, Bearer tokens over TLS; interop
// with skopeo and podman both ways; multi-platform indexes; failures that must leave nothing behind
// (unknown names, wrong credentials, corrupt blobs and manifests, a registry that dies mid-pull).
import t, { type Test } from 'tap';
import { createHash, randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ImageInspect } from '../daemon/model/types';
import { findStaticBusybox, importBusyboxImage, runtimeSkipReason } from './lib/base-image';
import { spawn } from 'node:child_process';
import { STRATA, startDaemon, type Daemon } from './lib/daemon';
import { failsWith, ok } from './lib/assert';
import { hasCommand, run, runAsync } from './lib/exec';
import { listMounts } from './lib/mount-table';
import { ACCEPT_MANIFESTS } from '../daemon/registry/manifest';
import { readBody, RegistryClient } from '../daemon/registry/client';
import { makeTls, startRegistry, startTokenServer, writeLayout, type LayoutImage, type Registry, type WrittenImage } from './lib/registry';
import { makeWorkspace } from './lib/workspace';

function toolSkip(): string | false {
  for (const c of ['docker-registry', 'skopeo', 'openssl', 'htpasswd', 'zstd']) if (!hasCommand(c)) return `${c} is not installed (make apt)`;
  if (findStaticBusybox() === null) return 'no static busybox (busybox-static)';
  return false;
}
const skip = toolSkip();

/** Root filesystems: busybox, a small app layer, and optional extra files. */
function rootfs(ws: string, name: string, files: Record<string, string | Buffer>, withBusybox = false): string {
  const dir = path.join(ws, name);
  fs.mkdirSync(dir, { recursive: true });
  if (withBusybox) {
    for (const d of ['bin', 'etc', 'tmp', 'dev', 'proc', 'sys']) fs.mkdirSync(path.join(dir, d), { recursive: true });
    fs.copyFileSync(findStaticBusybox()!, path.join(dir, 'bin/busybox'));
    fs.chmodSync(path.join(dir, 'bin/busybox'), 0o755);
    for (const a of ['sh', 'cat', 'ls', 'echo']) fs.symlinkSync('busybox', path.join(dir, 'bin', a));
    fs.writeFileSync(path.join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  }
  for (const [f, c] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.writeFileSync(path.join(dir, f), c);
  }
  return dir;
}

/** The ids of the images in the store. */
function images(d: Daemon): string[] {
  return d.cli(['images', '-q', '--no-trunc']).stdout.split('\n').filter(Boolean);
}

function inspect(d: Daemon, ref: string): ImageInspect {
  return (JSON.parse(d.cli(['image', 'inspect', ref]).stdout) as ImageInspect[])[0];
}

/** No image, no layer, no temp file, no kept blob or download (except `allowDownloads`). */
function nothingLeft(t: Test, d: Daemon, what: string, before: { images: number; layers: number }, allowDownloads = false): void {
  t.equal(images(d).length, before.images, `${what}: no new image`);
  t.equal(fs.readdirSync(path.join(d.root, 'layers')).length, before.layers, `${what}: no layer directory left`);
  t.same(fs.readdirSync(path.join(d.root, 'tmp')), [], `${what}: nothing left in tmp/`);
  if (!allowDownloads) {
    const dl = path.join(d.root, 'distribution/downloads');
    t.same(fs.existsSync(dl) ? fs.readdirSync(dl) : [], [], `${what}: no partial download kept`);
  }
}

function counts(d: Daemon): { images: number; layers: number } {
  return { images: images(d).length, layers: fs.readdirSync(path.join(d.root, 'layers')).length };
}

function skopeoCopy(t: Test, src: string, dst: string, extra: string[] = []): void {
  ok(t, run('skopeo', ['copy', '-q', '--retry-times', '0', ...extra, src, dst], { timeout: 180_000 }), `skopeo copy ${src} ${dst}`);
}

async function manifestDigestOf(ref: string, extra: string[]): Promise<string> {
  const raw = await runAsync('skopeo', ['inspect', '--raw', ...extra, `docker://${ref}`]);
  if (raw.status !== 0) throw new Error(raw.stderr);
  return 'sha256:' + createHash('sha256').update(raw.stdout).digest('hex');
}

/** A two-layer image (busybox + app files) in an OCI layout, copied into the registry by skopeo. */
function seedApp(t: Test, ws: string, reg: Registry, repo: string, extra: string[] = ['--dest-tls-verify=false']): WrittenImage {
  const layout = path.join(ws, `layout-${repo.replace(/\//g, '-')}`);
  const img: LayoutImage = {
    architecture: 'amd64',
    layers: [rootfs(ws, `${repo}-l1`, {}, true), rootfs(ws, `${repo}-l2`, { 'etc/motd': `hello from ${repo}\n`, 'app/data.bin': Buffer.alloc(300_000, 7) })],
  };
  const [w] = writeLayout(layout, 'v1', [img]);
  skopeoCopy(t, `oci:${layout}:v1`, `docker://${reg.host}/${repo}:1`, extra);
  return w;
}

t.test('plain HTTP: skopeo → strata pull → run; strata push keeps digests; podman pulls what strata pushed', { skip }, async (t) => {
  const ws = makeWorkspace(t, 'reg-plain');
  const reg = await startRegistry(t, path.join(ws, 'reg'));
  const d = await startDaemon(t, { label: 'reg-plain' });
  const w = seedApp(t, ws, reg, 'interop/app');
  const src = `${reg.host}/interop/app:1`;
  const srcDigest = await manifestDigestOf(src, ['--tls-verify=false']);

  const out = ok(t, d.cli(['pull', '--tls-verify=false', src]), 'strata pull');
  t.match(out, /1: Pulling from interop\/app/, 'docker-like header line');
  t.match(out, /: Pull complete/, 'layers pulled');
  t.match(out, new RegExp(`Digest: ${srcDigest}`), 'Digest: line');
  t.match(out, new RegExp(`Status: Downloaded newer image for ${src.replace(/\./g, '\\.')}`), 'Status: line');
  t.equal(out.split('\n').pop(), src, 'prints the image name');
  const img = inspect(d, src);
  t.equal(img.Id, w.configDigest, 'image id = config digest');
  t.same(img.Layers.map((l) => l.DiffId), w.diffIds, 'diff ids as in the config');
  t.match(ok(t, d.cli(['pull', '--tls-verify=false', src]), 'pull again'), /Already exists[\s\S]*Status: Image is up to date/, 'second pull: up to date');

  const rs = runtimeSkipReason();
  if (rs === false) t.equal(ok(t, d.cli(['run', '--rm', src, 'cat', '/etc/motd']), 'strata run the pulled image'), 'hello from interop/app');
  else t.comment(`strata run skipped: ${rs}`);

  // zstd: skopeo recompresses the same image; strata decompresses it to the same layers.
  // (through a local layout: registry to registry, skopeo would reuse the gzip blobs it has seen)
  const zl = path.join(ws, 'zstd-layout');
  skopeoCopy(t, `docker://${src}`, `oci:${zl}:z`, ['--src-tls-verify=false', '--dest-compress-format', 'zstd', '--dest-compress']);
  skopeoCopy(t, `oci:${zl}:z`, `docker://${reg.host}/interop/app:zstd`, ['--dest-tls-verify=false']);
  const raw = JSON.parse(run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/interop/app:zstd`]).stdout) as { layers: { mediaType: string }[] };
  t.ok(raw.layers.every((l) => l.mediaType.endsWith('+zstd')), 'the registry holds zstd layers');
  const d2 = await startDaemon(t, { label: 'reg-zstd' });
  const zo = ok(t, d2.cli(['pull', '--tls-verify=false', `${reg.host}/interop/app:zstd`]), 'pull zstd layers');
  t.equal((zo.match(/Pull complete/g) ?? []).length, 2, 'both zstd layers extracted');
  t.equal(inspect(d2, `${reg.host}/interop/app:zstd`).Id, w.configDigest, 'same image from zstd layers');

  // image save of a pulled image streams its kept blobs decompressed: same diff ids, same image id.
  for (const [dd, ref, label] of [[d, src, 'gzip'], [d2, `${reg.host}/interop/app:zstd`, 'zstd']] as const) {
    const file = path.join(ws, `saved-${label}.tar`);
    const sv = dd.cli(['save', '-o', file, ref]);
    ok(t, sv, `image save of the image pulled with ${label} layers`);
    t.notMatch(sv.stderr, /WARNING/, `${label}: saved without a changed id`);
  }
  ok(t, d2.cli(['rmi', `${reg.host}/interop/app:zstd`]), 'rmi');
  t.match(ok(t, d2.cli(['load', '-i', path.join(ws, 'saved-gzip.tar')]), 'load the saved image elsewhere'), /Loaded image/);
  t.equal(inspect(d2, src).Id, w.configDigest, 'the loaded image has the pulled image\'s id');

  // Push the pulled image elsewhere: same manifest, layers mounted across repositories.
  const po = ok(t, d.cli(['push', '--tls-verify=false', src, `${reg.host}/copy/app:1`]), 'strata push to another repository');
  t.match(po, /The push refers to repository \[127\.0\.0\.1:\d+\/copy\/app\]/, 'push header line');
  t.match(po, /Mounted from interop\/app/, 'cross-repository mount');
  t.match(po, new RegExp(`1: digest: ${srcDigest} size: \\d+`), 'the original manifest digest is kept');
  t.equal(await manifestDigestOf(`${reg.host}/copy/app:1`, ['--tls-verify=false']), srcDigest, 'skopeo sees the same digest');
  t.match(ok(t, d.cli(['push', '--tls-verify=false', src, `${reg.host}/copy/app:1`]), 'push again'), /Layer already exists/, 'HEAD finds the layers');

  // A local image (never pulled): packed, gzipped, chunked upload; skopeo and podman read it.
  const bdir = makeWorkspace(t, 'reg-base');
  importBusyboxImage(d, bdir, 'base:1');
  const local = `${reg.host}/local/base:1`;
  ok(t, d.cli(['tag', 'base:1', local]), 'strata tag to a registry name');
  const lo = ok(t, d.cli(['push', '--tls-verify=false', local]), 'strata push a local image');
  t.match(lo, /: Pushed/, 'layer pushed');
  const pushedDigest = /1: digest: (sha256:[a-f0-9]{64})/.exec(lo)?.[1];
  t.equal(await manifestDigestOf(local, ['--tls-verify=false']), pushedDigest, 'skopeo inspect: the digest strata printed');
  const dir = path.join(ws, 'skopeo-dir');
  skopeoCopy(t, `docker://${local}`, `dir:${dir}`, ['--src-tls-verify=false']);
  t.ok(fs.existsSync(path.join(dir, 'manifest.json')), 'skopeo copy to a directory');
  const again = ok(t, d.cli(['push', '--tls-verify=false', local]), 'push the local image again');
  t.match(again, /Layer already exists/, 'the gzip blob made by the first push is found again');
  t.match(again, new RegExp(`1: digest: ${pushedDigest}`), 'and the manifest digest is stable');

  if (hasCommand('podman') && hasCommand('runc')) {
    const pws = makeWorkspace(t, 'reg-podman');
    const args = ['--root', path.join(pws, 'root'), '--runroot', path.join(pws, 'runroot'), '--tmpdir', path.join(pws, 'tmp'), '--storage-driver', 'overlay', '--cgroup-manager', 'cgroupfs', '--runtime', 'runc', '--events-backend', 'file'];
    t.teardown(() => {
      for (const a of [['rm', '-af', '-t', '0'], ['rmi', '-af']]) run('podman', [...args, ...a], { timeout: 60_000 });
      for (const m of listMounts().map((x) => x.mountPoint).filter((mp) => mp.startsWith(pws + '/')).sort((a, b) => b.length - a.length)) run('umount', ['-l', m]);
    });
    ok(t, run('podman', [...args, 'pull', '-q', '--tls-verify=false', local], { timeout: 180_000 }), 'podman pull what strata pushed');
    const pr = run('podman', [...args, 'run', '--rm', '--network', 'none', '--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=32768:32768', local, 'cat', '/etc/group'], { timeout: 180_000 });
    if (pr.status === 0) t.match(pr.stdout, /staff:x:50:user/, 'podman run the image strata pushed');
    else t.comment(`podman run not possible here: ${pr.stderr.trim().split('\n').pop()}`);
  }
});

t.test('a multi-platform index resolves to the host platform; --platform picks another', { skip }, async (t) => {
  const ws = makeWorkspace(t, 'reg-multi');
  const reg = await startRegistry(t, path.join(ws, 'reg'));
  const d = await startDaemon(t, { label: 'reg-multi' });
  const host = process.arch === 'arm64' ? 'arm64' : 'amd64';
  const other = host === 'amd64' ? 'arm64' : 'amd64';
  const layout = path.join(ws, 'layout');
  const [wHost, wOther] = writeLayout(
    layout,
    'v1',
    [
      { architecture: host, layers: [rootfs(ws, 'h', { arch: `${host}\n` })] },
      { architecture: other, layers: [rootfs(ws, 'o', { arch: `${other}\n` })] },
    ],
    true,
  );
  skopeoCopy(t, `oci:${layout}:v1`, `docker://${reg.host}/multi/app:1`, ['--all', '--dest-tls-verify=false']);
  const ref = `${reg.host}/multi/app:1`;
  const indexDigest = await manifestDigestOf(ref, ['--tls-verify=false']);
  const out = ok(t, d.cli(['pull', '--tls-verify=false', ref]), 'pull the index');
  t.match(out, new RegExp(`Resolved linux/${host} to manifest ${wHost.manifestDigest}`), 'resolved to the host platform');
  t.match(out, new RegExp(`Digest: ${indexDigest}`), 'Digest: is the index digest');
  t.equal(inspect(d, ref).Id, wHost.configDigest, `the ${host} image`);
  ok(t, d.cli(['pull', '--tls-verify=false', '--platform', `linux/${other}`, ref]), `pull --platform linux/${other}`);
  t.equal(inspect(d, ref).Id, wOther.configDigest, `the ${other} image, same tag`);
  failsWith(t, d.cli(['pull', '--tls-verify=false', '--platform', 'linux/s390x', ref]), /no manifest for linux\/s390x in the image index .* it has linux\/(amd64|arm64), linux\/(amd64|arm64)/, 'a platform the index lacks');
  failsWith(t, d.cli(['pull', '--tls-verify=false', '--platform', 'linux', ref]), /invalid platform "linux"/, 'a malformed platform');
  // By digest, and tag + digest.
  const byDigest = ok(t, d.cli(['pull', '--tls-verify=false', `${reg.host}/multi/app@${wHost.manifestDigest}`]), 'pull by digest');
  t.equal(byDigest.split('\n').pop(), `${reg.host}/multi/app@${wHost.manifestDigest}`, 'named by digest');
  ok(t, d.cli(['pull', '--tls-verify=false', `${reg.host}/multi/app:2@${wOther.manifestDigest}`]), 'pull with a tag and a digest');
  t.equal(inspect(d, `${reg.host}/multi/app:2`).Id, wOther.configDigest, 'tag + digest: the digest decides, the tag names it');
});

t.test('failures give clear errors and leave nothing behind', { skip }, async (t) => {
  const ws = makeWorkspace(t, 'reg-fail');
  const reg = await startRegistry(t, path.join(ws, 'reg'));
  const d = await startDaemon(t, { label: 'reg-fail' });
  const w = seedApp(t, ws, reg, 'bad/app');
  const before = counts(d);
  failsWith(t, d.cli(['pull', '--tls-verify=false', `${reg.host}/no/such:1`]), /repository no\/such not found|not found/, 'unknown repository');
  failsWith(t, d.cli(['pull', '--tls-verify=false', `${reg.host}/bad/app:nope`]), /manifest for bad\/app:nope not found/, 'unknown tag');
  failsWith(t, d.cli(['pull', `${reg.host}/bad/app:1`]), /tls-verify=false/, 'plain HTTP without --tls-verify=false');
  failsWith(t, d.cli(['pull', 'Bad/Name']), /must be lowercase/, 'invalid reference');
  failsWith(t, d.cli(['push', '--tls-verify=false', 'no-such-image', `${reg.host}/x:1`]), /no such image/, 'push of an unknown image');
  nothingLeft(t, d, 'after refused pulls', before);

  // A corrupt layer blob (same size, other bytes): digest mismatch naming the blob.
  const blob = reg.blobFile(w.layerDigests[1]);
  const good = fs.readFileSync(blob);
  const bad = Buffer.from(good);
  for (let i = 100; i < 200; i++) bad[i] ^= 0xff;
  fs.writeFileSync(blob, bad);
  failsWith(t, d.cli(['pull', '--tls-verify=false', `${reg.host}/bad/app:1`]), new RegExp(`blob ${w.layerDigests[1]} does not match its content`), 'corrupt layer blob');
  // (the verified other layer stays as a finished download: the next pull reads it from disk)
  nothingLeft(t, d, 'after a corrupt blob', before, true);
  t.notOk(fs.existsSync(path.join(d.root, 'distribution/downloads', w.layerDigests[1].slice(7))), 'the corrupt blob is not kept');
  fs.writeFileSync(blob, good);

  // A corrupt manifest: its content no longer hashes to the digest the registry names.
  const mfile = reg.blobFile(w.manifestDigest);
  const m = fs.readFileSync(mfile, 'utf8');
  fs.writeFileSync(mfile, m.replace('"schemaVersion":2', '"schemaVersion": 2'));
  failsWith(t, d.cli(['pull', '--tls-verify=false', `${reg.host}/bad/app@${w.manifestDigest}`]), new RegExp(`manifest ${w.manifestDigest} of bad/app does not match its content`), 'corrupt manifest');
  nothingLeft(t, d, 'after a corrupt manifest', before, true);
  fs.writeFileSync(mfile, m);
  const repaired = ok(t, d.cli(['pull', '--tls-verify=false', `${reg.host}/bad/app:1`]), 'the repaired image pulls');
  t.match(repaired, new RegExp(`${w.layerDigests[0].slice(7, 19)}: Resuming download at`), 'the layer verified before reads from disk');
  t.same(fs.readdirSync(path.join(d.root, 'distribution/downloads')), [], 'no download left once the pull succeeded');
  t.equal(images(d).length, before.images + 1, 'now there is one image');
  const d3 = await startDaemon(t, { label: 'reg-insecure', extraArgs: ['--insecure-registry', reg.host] });
  ok(t, d3.cli(['pull', `${reg.host}/bad/app:1`]), 'stratad --insecure-registry: plain HTTP without the flag');
});

t.test('a registry that dies mid-pull: the pull fails cleanly, the next one resumes with Range', { skip }, async (t) => {
  const ws = makeWorkspace(t, 'reg-resume');
  const reg = await startRegistry(t, path.join(ws, 'reg'));
  const d = await startDaemon(t, { label: 'reg-resume' });
  const big = Buffer.alloc(160 << 20);
  randomFillSync(big);
  const layout = path.join(ws, 'layout');
  const [w] = writeLayout(layout, 'v1', [{ architecture: 'amd64', layers: [rootfs(ws, 'big', { 'big.bin': big })] }]);
  skopeoCopy(t, `oci:${layout}:v1`, `docker://${reg.host}/big/app:1`, ['--dest-tls-verify=false']);
  fs.rmSync(layout, { recursive: true });
  const before = counts(d);
  const dl = path.join(d.root, 'distribution/downloads', w.layerDigests[0].slice(7));
  const sizeOf = (f: string): number => {
    try {
      return fs.statSync(f).size;
    } catch {
      return 0;
    }
  };
  const waitFor = async (cond: () => boolean, ms: number): Promise<boolean> => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (cond()) return true;
      await new Promise((r) => setTimeout(r, 5));
    }
    return cond();
  };

  // Cancelled: the CLI goes away mid-download (Ctrl-C); the daemon stops and removes what it staged.
  const cli = spawn(STRATA(), ['--socket', d.socket, 'pull', '--tls-verify=false', `${reg.host}/big/app:1`], { stdio: 'ignore' });
  const cliExit = new Promise((r) => cli.once('exit', r));
  t.ok(await waitFor(() => sizeOf(dl) >= 8 << 20, 60_000), 'the download started');
  cli.kill('SIGINT');
  await cliExit;
  t.ok(await waitFor(() => fs.readdirSync(path.join(d.root, 'tmp')).length === 0, 10_000), 'the cancelled pull removed its staged layer');
  nothingLeft(t, d, 'after a cancelled pull', before, true);
  fs.rmSync(dl, { force: true });

  const pulling = d.cliAsync(['pull', '--tls-verify=false', `${reg.host}/big/app:1`], { timeout: 120_000 });
  await waitFor(() => sizeOf(dl) >= 24 << 20, 60_000);
  const size = sizeOf(dl);
  await reg.stop('SIGKILL');
  t.ok(size >= 24 << 20, `the registry was stopped mid-download (${size} bytes in)`);
  const first = await pulling;
  failsWith(t, first, /cannot reach registry|failed after|pull again to resume/, 'the interrupted pull');
  nothingLeft(t, d, 'after the interrupted pull', before, true);
  const kept = fs.statSync(dl).size;
  t.ok(kept > 0 && kept < w.layerDigests.length * (170 << 20), `the partial download is kept (${kept} bytes)`);
  await reg.start();
  const second = d.cli(['pull', '--tls-verify=false', `${reg.host}/big/app:1`], { timeout: 120_000 });
  const out = ok(t, second, 'the next pull');
  t.match(out, /Resuming download at/, 'it resumes where the first stopped');
  t.equal(inspect(d, `${reg.host}/big/app:1`).Id, w.configDigest, 'the image is complete');
  t.notOk(fs.existsSync(dl), 'the download file became the kept blob');

  // A registry back within the retry window: the same pull continues with a Range request.
  const d4 = await startDaemon(t, { label: 'reg-retry' });
  const dl4 = path.join(d4.root, 'distribution/downloads', w.layerDigests[0].slice(7));
  const p4 = d4.cliAsync(['pull', '--tls-verify=false', `${reg.host}/big/app:1`], { timeout: 120_000 });
  await waitFor(() => sizeOf(dl4) >= 24 << 20, 60_000);
  await reg.stop('SIGKILL');
  await reg.start();
  const out4 = ok(t, await p4, 'a pull whose registry restarts mid-download');
  t.match(out4, /Retrying download at/, 'it retried from where the connection broke');
  t.equal(inspect(d4, `${reg.host}/big/app:1`).Id, w.configDigest, 'and completed the image');

  // Two pulls of the same image at once on a cold store: one download file per blob, both succeed.
  const d5 = await startDaemon(t, { label: 'reg-twice' });
  const both = await Promise.all([0, 1].map(() => d5.cliAsync(['pull', '--tls-verify=false', `${reg.host}/big/app:1`], { timeout: 120_000 })));
  both.forEach((r, i) => ok(t, r, `concurrent pull ${i + 1}`));
  t.equal(inspect(d5, `${reg.host}/big/app:1`).Id, w.configDigest, 'the image is complete');
  t.equal(fs.statSync(path.join(d5.root, 'distribution/blobs', w.layerDigests[0].slice(7))).size, fs.statSync(reg.blobFile(w.layerDigests[0])).size, 'the kept blob is whole');
  t.same(fs.readdirSync(path.join(d5.root, 'tmp')), [], 'nothing left in tmp/');
});

t.test('htpasswd Basic auth over TLS: login, pull, push, logout', { skip }, async (t) => {
  const ws = makeWorkspace(t, 'reg-basic');
  const tls = makeTls(path.join(ws, 'tls'));
  const htpasswd = path.join(ws, 'htpasswd');
  fs.writeFileSync(htpasswd, run('htpasswd', ['-Bbn', 'alice', 's3cret pass']).stdout);
  const reg = await startRegistry(t, path.join(ws, 'reg'), { tls, auth: { kind: 'htpasswd', file: htpasswd } });
  const certs = path.join(ws, 'certs.d');
  fs.mkdirSync(path.join(certs, reg.host), { recursive: true });
  fs.copyFileSync(tls.caCrt, path.join(certs, reg.host, 'ca.crt'));
  const skopeoCerts = path.join(certs, reg.host);
  seedApp(t, ws, reg, 'secure/app', ['--dest-creds', 'alice:s3cret pass', '--dest-cert-dir', skopeoCerts]);
  const d = await startDaemon(t, { label: 'reg-basic', extraArgs: ['--certs-dir', certs] });
  const authfile = path.join(ws, 'auth.json');
  const A = ['--authfile', authfile];
  const ref = `${reg.host}/secure/app:1`;

  failsWith(t, d.cli(['pull', ...A, ref]), /unauthorized: .* anonymously.*strata login/, 'pull before login');
  failsWith(t, d.cli(['login', ...A, '-u', 'alice', '--password-stdin', reg.host], { input: 'wrong\n' }), /unauthorized: .* as alice/, 'login with a wrong password');
  t.notOk(fs.existsSync(authfile), 'a failed login stores nothing');
  t.equal(ok(t, d.cli(['login', ...A, '-u', 'alice', '--password-stdin', reg.host], { input: 's3cret pass\n' }), 'login'), 'Login Succeeded');
  t.equal(fs.statSync(authfile).mode & 0o777, 0o600, 'the auth file is 0600');
  const doc = JSON.parse(fs.readFileSync(authfile, 'utf8')) as { auths: Record<string, { auth: string }> };
  t.equal(Buffer.from(doc.auths[reg.host].auth, 'base64').toString(), 'alice:s3cret pass', 'Docker config.json format');
  ok(t, d.cli(['pull', ...A, ref]), 'pull over TLS with Basic auth');
  t.match(ok(t, d.cli(['push', ...A, ref, `${reg.host}/secure/copy:1`]), 'push'), /Mounted from secure\/app/, 'push with a cross-repository mount');
  t.notMatch(d.log(), /s3cret/, 'the password is never logged');

  const d2 = await startDaemon(t, { label: 'reg-noca' });
  failsWith(t, d2.cli(['pull', ...A, ref]), /certificate|self.signed|CERT/i, 'a daemon without the CA refuses the certificate');
  ok(t, d2.cli(['pull', ...A, '--tls-verify=false', ref]), '--tls-verify=false accepts it');

  t.match(ok(t, d.cli(['logout', ...A, reg.host]), 'logout'), new RegExp(`Removing login credentials for ${reg.host}`));
  t.same((JSON.parse(fs.readFileSync(authfile, 'utf8')) as { auths: object }).auths, {}, 'credentials removed');
  failsWith(t, d.cli(['pull', ...A, ref]), /unauthorized/, 'pull after logout');
  failsWith(t, d.cli(['logout', ...A, reg.host]), /not logged in/, 'logout twice');
});

t.test('Bearer token auth over TLS: tokens from the challenge realm, scoped per repository', { skip }, async (t) => {
  const ws = makeWorkspace(t, 'reg-token');
  const tls = makeTls(path.join(ws, 'tls'));
  const ts = await startTokenServer(t, tls, { bob: 'hunter2' });
  const reg = await startRegistry(t, path.join(ws, 'reg'), { tls, auth: { kind: 'token', realm: ts.realm, service: ts.service, issuer: ts.issuer, bundle: tls.caCrt } });
  const certs = path.join(ws, 'certs.d');
  fs.mkdirSync(path.join(certs, reg.host), { recursive: true });
  fs.copyFileSync(tls.caCrt, path.join(certs, reg.host, 'ca.crt'));
  const layout = path.join(ws, 'layout');
  const [w] = writeLayout(layout, 'v1', [{ architecture: 'amd64', layers: [rootfs(ws, 'tok', { 'etc/motd': 'token\n' }, true)] }]);
  ok(t, await runAsync('skopeo', ['copy', '-q', '--dest-creds', 'bob:hunter2', '--dest-cert-dir', path.join(certs, reg.host), `oci:${layout}:v1`, `docker://${reg.host}/tok/app:1`]), 'skopeo copy with a token');
  const d = await startDaemon(t, { label: 'reg-token', extraArgs: ['--certs-dir', certs] });
  const authfile = path.join(ws, 'auth.json');
  const A = ['--authfile', authfile];
  const ref = `${reg.host}/tok/app:1`;
  failsWith(t, await d.cliAsync(['pull', ...A, ref]), /unauthorized/, 'anonymous pull');
  failsWith(t, await d.cliAsync(['login', ...A, '-u', 'bob', '--password-stdin', reg.host], { input: 'nope\n' }), /unauthorized/, 'login with a wrong password');
  ok(t, await d.cliAsync(['login', ...A, '-u', 'bob', '--password-stdin', reg.host], { input: 'hunter2\n' }), 'login');
  const n = ts.requests.length;
  ok(t, await d.cliAsync(['pull', ...A, ref]), 'pull with a Bearer token');
  t.equal(inspect(d, ref).Id, w.configDigest, 'the image');
  t.ok(ts.requests.slice(n).some((r) => r.user === 'bob' && r.granted && r.scopes.includes('repository:tok/app:pull')), 'a token for repository:tok/app:pull was issued to bob');
  const po = ok(t, await d.cliAsync(['push', ...A, ref, `${reg.host}/tok/copy:1`]), 'push with a Bearer token');
  t.match(po, /Mounted from tok\/app/, 'mounted from the source repository (token scoped to both)');
  t.ok(ts.requests.some((r) => r.scopes.some((s) => s === 'repository:tok/copy:pull,push')), 'push asked for pull,push');
  t.equal(await manifestDigestOf(`${reg.host}/tok/copy:1`, ['--creds', 'bob:hunter2', '--cert-dir', path.join(certs, reg.host)]), w.manifestDigest, 'the pushed manifest keeps its digest');

  // Short-lived tokens are renewed: the protocol client itself, against the same registry.
  ts.expiresIn = 2;
  const c = new RegistryClient({ domain: reg.host, tlsVerify: true, certsDir: certs, credentials: { username: 'bob', password: 'hunter2' } });
  t.teardown(() => c.close());
  const get = async () => (await readBody(await c.request('GET', `/v2/tok/app/manifests/1`, { headers: { Accept: ACCEPT_MANIFESTS }, scopes: ['repository:tok/app:pull'] }))).length;
  const m = ts.requests.length;
  t.ok((await get()) > 0, 'a manifest with a fresh token');
  t.ok((await get()) > 0, 'again, with the cached token');
  t.equal(ts.requests.length - m, 1, 'one token for both requests');
  await new Promise((r) => setTimeout(r, 2500));
  t.ok((await get()) > 0, 'after the token expired');
  t.equal(ts.requests.length - m, 2, 'a new token was fetched');
});
