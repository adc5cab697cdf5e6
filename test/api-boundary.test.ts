// The API as a security boundary (issue 9): bad requests never take stratad down, the daemon never
// opens host paths for a client, mount targets and store files are checked, errors say what went
// wrong with the right status. A real daemon on a real socket, the CLI as a subprocess.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import type { ChangeEntry, ContainerInspect, ImageInspect } from '../daemon/model/types';
import { type RunResult, run, runOk, TEST_GID, TEST_UID } from './lib/exec';
import { startDaemon, type Daemon } from './lib/daemon';
import { jsonBody, rawRequest } from './lib/http';
import { missingCapability } from './lib/mount-union';
import { isMounted, listMounts } from './lib/mount-table';
import { makeWorkspace } from './lib/workspace';
import { ok, fails } from './lib/expect';

const skip = missingCapability({ fuse: true });
const opts = { skip: skip ?? false };

/** A rootfs tar with /etc/motd and /bin/app, imported as base:1. */
async function daemonWithBase(t: Test, label: string, extra: Parameters<typeof startDaemon>[1] = {}): Promise<Daemon> {
  const d = await startDaemon(t, { label, ...extra });
  const dir = path.join(d.ws, 'rootfs');
  fs.mkdirSync(path.join(dir, 'etc'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'bin'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'etc', 'motd'), 'hello\n');
  fs.writeFileSync(path.join(dir, 'bin', 'app'), '#!/bin/sh\n', { mode: 0o755 });
  runOk('tar', ['--numeric-owner', '-C', dir, '-cf', path.join(d.ws, 'base.tar'), '.']);
  ok(t, d.cli(['image', 'import', path.join(d.ws, 'base.tar'), 'base:1']), 'import base:1');
  return d;
}

const mode = (p: string) => (fs.statSync(p).mode & 0o7777).toString(8);

t.test('malformed paths get 400; the daemon keeps serving, stops on SIGTERM and can be restarted', opts, async (t) => {
  const d = await startDaemon(t, { label: 'b-paths' });
  for (const p of ['/images/%ZZ/json', '/volumes/%ZZ', '/containers/%E0%A4%A/json', '/v1.43/images/%/history', '/images/%C0%80/json']) {
    const r = await rawRequest(d.socket, { method: p.startsWith('/volumes') ? 'GET' : 'GET', path: p });
    t.equal(r.status, 400, `${p}: 400`);
    t.match(String(jsonBody(r)?.message), /malformed path/, `${p}: says why`);
  }
  const del = await rawRequest(d.socket, { method: 'DELETE', path: '/volumes/%ZZ' });
  t.equal(del.status, 400, 'DELETE with a bad escape: 400');
  const info = await rawRequest(d.socket, { method: 'GET', path: '/info' });
  t.equal(info.status, 200, 'still answers info');
  t.ok(d.running, 'still running');
  const t0 = Date.now();
  const exit = await d.kill('SIGTERM', 10_000);
  t.equal(exit.code, 0, 'SIGTERM: exit 0');
  t.ok(Date.now() - t0 < 5000, `SIGTERM handled promptly (${Date.now() - t0} ms)`);
  await d.restart();
  t.equal((await rawRequest(d.socket, { method: 'GET', path: '/_ping' })).body, 'OK', 'a new daemon starts on the root');
});

t.test('a daemon that can no longer serve unmounts and exits (no dead mounts, lock released)', opts, async (t) => {
  // A fault from outside the API (injected through a preload, no hook in the daemon): the process
  // must not linger or leave dead FUSE mounts behind.
  const ws = makeWorkspace(t, 'b-fatal-inject');
  const trigger = path.join(ws, 'boom');
  const preload = path.join(ws, 'inject.js');
  fs.writeFileSync(
    preload,
    `const fs = require('fs');
if (require('worker_threads').isMainThread) {
const poll = () => { if (fs.existsSync(${JSON.stringify(trigger)})) { fs.rmSync(${JSON.stringify(trigger)}); throw new Error('injected fault'); } setTimeout(poll, 50).unref(); };
poll();
}
`,
  );
  const d = await daemonWithBase(t, 'b-fatal', { env: { NODE_OPTIONS: `--require ${preload}` } });
  ok(t, d.cli(['container', 'create', '--name', 'c', 'base:1']), 'create');
  const merged = ok(t, d.cli(['container', 'mount', 'c']), 'mount');
  const t0 = Date.now();
  fs.writeFileSync(trigger, '');
  for (let i = 0; i < 100 && d.running; i++) await new Promise((r) => setTimeout(r, 50));
  t.notOk(d.running, `the daemon exited (${Date.now() - t0} ms)`);
  t.ok(Date.now() - t0 < 5000, 'within 5 s');
  t.notOk(isMounted(merged), 'its mount was taken down, not left dead');
  t.match(d.log(), /"msg":"uncaught exception"/, 'the fault is logged');
  await d.restart();
  t.equal(ok(t, d.cli(['ps', '-a', '--format', 'json']), 'a new daemon serves the root').length > 0, true);
});

t.test('oversize bodies: 413 naming the limit, seen by the client; streamed uploads have no such limit', opts, async (t) => {
  const d = await startDaemon(t, { label: 'b-413' });
  const big = Buffer.alloc(2 << 20, 'x');
  const r = await rawRequest(d.socket, { method: 'POST', path: '/containers/create', headers: { 'Content-Type': 'application/json' }, body: big });
  t.equal(r.status, 413, 'declared length over the limit: 413');
  t.match(String(jsonBody(r)?.message), /1048576 bytes/, 'the message names the limit');
  t.notOk(r.error, `no reset (${r.error})`);
  const chunked = Buffer.concat([Buffer.from(`${(2 << 20).toString(16)}\r\n`), big, Buffer.from('\r\n0\r\n\r\n')]);
  const r2 = await rawRequest(d.socket, { method: 'POST', path: '/volumes/create', headers: { 'Transfer-Encoding': 'chunked' }, body: chunked });
  t.equal(r2.status, 413, 'chunked body over the limit: 413');
  t.notOk(r2.error, `no reset (${r2.error})`);
  // An upload route takes more than the JSON limit: a 3 MB rootfs imports.
  const dir = path.join(d.ws, 'bigroot');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'blob'), randomBytes(3 << 20));
  ok(t, d.cli(['image', 'import', dir, 'big:1']), 'a 3 MB import streams through');
  t.equal((await rawRequest(d.socket, { method: 'GET', path: '/_ping' })).body, 'OK', 'still serving');
});

t.test('status codes: JSON syntax, client faults 4xx, a full disk 507', opts, async (t) => {
  const tmpfsRoot = path.join(makeWorkspace(t, 'b-full-root'), 'root');
  fs.mkdirSync(tmpfsRoot);
  runOk('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'strata-test-full', tmpfsRoot]);
  t.teardown(() => {
    run('umount', ['-l', tmpfsRoot]);
  });
  const d = await startDaemon(t, { label: 'b-status', root: tmpfsRoot });
  const post = (p: string, body: string) => rawRequest(d.socket, { method: 'POST', path: p, headers: { 'Content-Type': 'application/json' }, body });
  let r = await post('/volumes/create', '{"name": "x",');
  t.equal(r.status, 400, 'broken JSON: 400');
  t.match(String(jsonBody(r)?.message), /^request body is not valid JSON: syntax error at byte \d+$/, `says it is a syntax error (${r.body})`);
  r = await post('/volumes/create', '[1,2]');
  t.equal(r.status, 400);
  t.match(String(jsonBody(r)?.message), /must be a JSON object/, 'valid JSON of the wrong kind says so');
  r = await post('/volumes/create', '{"name": 7}');
  t.equal(r.status, 400, 'a wrong type: 400');
  r = await rawRequest(d.socket, { method: 'POST', path: '/images/import?ref=x:1', body: randomBytes(5000) });
  t.equal(r.status, 400, `a non-tar import: 400 (${r.body})`);
  r = await rawRequest(d.socket, { method: 'POST', path: '/images/import', body: 'x' });
  t.equal(r.status, 400, 'import without ref: 400');
  t.match(String(jsonBody(r)?.message), /"ref" is required/);
  // An unsafe archive is the client's fault.
  runOk('python3', ['-c', `import io,tarfile
with tarfile.open('${d.ws}/evil.tar','w') as tf:
  ti=tarfile.TarInfo('../../evil'); ti.size=1; tf.addfile(ti, io.BytesIO(b'e'))`]);
  r = await rawRequest(d.socket, { method: 'POST', path: '/images/import?ref=evil:1', body: fs.readFileSync(path.join(d.ws, 'evil.tar')) });
  t.equal(r.status, 400, `an unsafe archive: 400 (${r.body})`);
  // A full storage root: 507 and the rule's own words.
  const dir = path.join(d.ws, 'huge');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'blob'), randomBytes(12 << 20));
  const full = d.cli(['image', 'import', dir, 'huge:1']);
  fails(t, full, /^Error: no space left on the storage root$/m, 'import into a full root');
  const r507 = await rawRequest(d.socket, { method: 'POST', path: '/images/import?ref=huge:2', body: runTar(dir) });
  t.equal(r507.status, 507, `ENOSPC is 507 (${r507.body})`);
  t.same(fs.readdirSync(path.join(tmpfsRoot, 'tmp')), [], 'nothing half-written left in tmp');
  t.equal((await rawRequest(d.socket, { method: 'GET', path: '/info' })).status, 200, 'still serving');
});

function runTar(dir: string): Buffer {
  return spawnSync('tar', ['-C', dir, '-cf', '-', '.'], { maxBuffer: 64 << 20 }).stdout;
}

t.test('archives travel through the socket: the CLI reads the files, errors never quote them', opts, async (t) => {
  const d = await daemonWithBase(t, 'b-stream');
  const secret = path.join(d.ws, 'secret');
  fs.writeFileSync(secret, 'root:SECRETHASH:19000:0:99999:7:::\nTOKEN=hunter2\n', { mode: 0o600 });
  for (const args of [['image', 'load', '-i', secret], ['image', 'import', secret, 'leak:1']]) {
    const r = d.cli(args);
    t.equal(r.status, 1, `${args[1]} of a non-archive fails`);
    t.notMatch(r.stderr, /SECRET|hunter2|99999|19000/, `${args[1]}: the error quotes nothing of the file (${r.stderr.trim()})`);
  }
  // The API takes no host paths: a JSON "source" is just a (bad) archive body.
  const api = await rawRequest(d.socket, { method: 'POST', path: '/images/import?ref=x:1', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ source: secret }) });
  t.equal(api.status, 400, 'a JSON source path is not followed');
  t.notMatch(api.body, /SECRET/);
  const load = await rawRequest(d.socket, { method: 'POST', path: '/images/load', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ input: secret }) });
  t.notMatch(load.body, /SECRET|"result"/, 'load takes no input path');
  const ctx = path.join(d.ws, 'ctx');
  fs.mkdirSync(ctx);
  fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM base:1\nCOPY secret /\n');
  fs.copyFileSync(secret, path.join(ctx, 'secret'));
  const build = await rawRequest(d.socket, { method: 'POST', path: '/build?t=leak:3', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ context: ctx }) });
  t.match(build.body, /"error"/, 'build takes no context path: a JSON body is no context');
  t.notOk(d.cli(['image', 'inspect', 'leak:3']).status === 0, 'nothing was built from the path');
  // The user's own permissions: root-only files are unreadable to a member of the socket's group.
  fs.chmodSync(d.ws, 0o755);
  const asMember = { asUser: { uid: TEST_UID, gid: TEST_GID, groups: [0] } };
  const denied = d.cli(['image', 'import', secret, 'leak:2'], asMember);
  fails(t, denied, /cannot read .*secret: permission denied/, 'an unprivileged client cannot import a root-only file');
  // build: the context is read by the CLI, with the user's permissions, less what .dockerignore excludes
  const bctx = path.join(d.ws, 'bctx');
  fs.mkdirSync(bctx);
  fs.writeFileSync(path.join(bctx, 'Dockerfile'), 'FROM base:1\nCOPY . /ctx/\n');
  fs.writeFileSync(path.join(bctx, '.dockerignore'), 'ignored-secret\n');
  fs.writeFileSync(path.join(bctx, 'ignored-secret'), 'x', { mode: 0o600 });
  fs.writeFileSync(path.join(bctx, 'public'), 'p');
  ok(t, d.cli(['build', '-t', 'ctx:1', bctx], asMember), 'a build whose root-only file is ignored is never read');
  fs.writeFileSync(path.join(bctx, 'root-only'), 'x', { mode: 0o600 });
  fails(t, d.cli(['build', '-t', 'ctx:2', bctx], asMember), /root-only.*(EACCES|permission denied)/, 'a root-only file in the context cannot be sent by an unprivileged client');
  fails(t, d.cli(['image', 'inspect', 'ctx:2']), /no such image/, 'and nothing was built');
  fs.rmSync(path.join(bctx, 'root-only'));
  const outside = path.join(d.ws, 'Dockerfile.outside');
  fs.writeFileSync(outside, 'FROM base:1\nCOPY public /public\n');
  ok(t, d.cli(['build', '-t', 'ctx:3', '-f', outside, bctx]), 'a Dockerfile from outside the context travels with it');
  fs.writeFileSync(outside, 'FROM base:1\nFORM x\n');
  fails(t, d.cli(['build', '-f', outside, bctx]), new RegExp(`${outside}:2: unknown instruction: FORM`), 'and its errors name it as the user does');
  // save to stdout and -o, load from stdin and -i, export -o
  const tar = path.join(d.ws, 'base-save.tar');
  const piped = run('sh', ['-c', `${process.execPath} ${path.join(__dirname, '..', 'cli', 'main.js')} --socket ${d.socket} image save base:1 > ${tar}`]);
  t.equal(piped.status, 0, `save to stdout ${piped.stderr}`);
  t.match(piped.stderr, /Saving layer/, 'step lines go to stderr when the archive is on stdout');
  t.match(runOk('tar', ['-tf', tar]), /index\.json/, 'stdout carries the OCI archive');
  const tar2 = path.join(d.ws, 'base-o.tar');
  ok(t, d.cli(['image', 'save', '-o', tar2, 'base:1']), 'save -o');
  t.ok(fs.readFileSync(tar).equals(fs.readFileSync(tar2)), 'the same bytes either way');
  ok(t, d.cli(['rmi', 'base:1']), 'rmi');
  const fromStdin = run('sh', ['-c', `${process.execPath} ${path.join(__dirname, '..', 'cli', 'main.js')} --socket ${d.socket} image load < ${tar}`]);
  t.equal(fromStdin.status, 0, `load < file ${fromStdin.stderr}`);
  t.match(fromStdin.stdout, /Loaded image: base:1/);
  const failedSave = d.cli(['image', 'save', '-o', path.join(d.ws, 'nosuch.tar'), 'nosuch:1']);
  fails(t, failedSave, /no such image/, 'save of an unknown image');
  t.notOk(fs.existsSync(path.join(d.ws, 'nosuch.tar')), 'no file for a failed save');
  t.same(fs.readdirSync(d.ws).filter((n) => n.includes('.strata-')), [], 'no temp files left');
});

t.test('container mount --at: only empty, non-system directories with nothing mounted; host mounts are never detached', opts, async (t) => {
  const d = await daemonWithBase(t, 'b-at');
  ok(t, d.cli(['container', 'create', '--name', 'c', 'base:1']), 'create');
  const D = path.join(d.ws, 'target');
  const inner = path.join(D, 'inner');
  fs.mkdirSync(inner, { recursive: true });
  runOk('mount', ['-t', 'tmpfs', 'strata-test-host', inner]);
  t.teardown(() => void run('umount', ['-l', inner]));
  fs.writeFileSync(path.join(inner, 'data'), 'precious');
  fails(t, d.cli(['container', 'mount', '--at', D, 'c']), /has something mounted below it/, 'a dir with a mount below');
  t.ok(isMounted(inner), 'the host tmpfs is still mounted');
  t.equal(fs.readFileSync(path.join(inner, 'data'), 'utf8'), 'precious', 'and its data is intact');
  fails(t, d.cli(['container', 'mount', '--at', inner, 'c']), /is a mount point/, 'a mount point');
  fs.rmSync(path.join(inner, 'data'));
  fails(t, d.cli(['container', 'mount', '--at', inner, 'c']), /is a mount point/, 'an empty mount point');
  t.ok(isMounted(inner), 'still mounted');
  fails(t, d.cli(['container', 'mount', '--at', '/etc', 'c']), /\/etc is a system directory/, '/etc');
  fails(t, d.cli(['container', 'mount', '--at', '/usr/share/empty-strata-test', 'c']), /does not exist|system directory/, 'below /usr');
  fails(t, d.cli(['container', 'mount', '--at', path.join(d.ws, 'nope'), 'c']), /does not exist/, 'a missing dir');
  fs.writeFileSync(path.join(d.ws, 'afile'), '');
  fails(t, d.cli(['container', 'mount', '--at', path.join(d.ws, 'afile'), 'c']), /is not a directory/, 'a file');
  fs.mkdirSync(path.join(d.root, 'mine'));
  fails(t, d.cli(['container', 'mount', '--at', path.join(d.root, 'mine'), 'c']), /inside the storage root/, 'inside the root');
  const api = await rawRequest(d.socket, { method: 'POST', path: '/containers/c/mount', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ at: 'relative/dir' }) });
  t.equal(api.status, 400, 'a relative target: 400');
  t.match(String(jsonBody(api)?.message), /must be an absolute path/);
  // The default target with a foreign mount on it: refused, not detached.
  const id = ok(t, d.cli(['container', 'create', '--name', 'c2', 'base:1']), 'create c2');
  const merged = path.join(d.root, 'containers', id, 'merged');
  runOk('mount', ['-t', 'tmpfs', 'strata-test-foreign', merged]);
  t.teardown(() => void run('umount', ['-l', merged]));
  fails(t, d.cli(['container', 'mount', 'c2']), /is a mount point/, 'a foreign mount at the default target');
  t.ok(listMounts().some((m) => m.mountPoint === merged && m.fsType === 'tmpfs'), 'the foreign tmpfs stays');
  // A good target works.
  const good = path.join(d.ws, 'good');
  fs.mkdirSync(good);
  t.equal(ok(t, d.cli(['container', 'mount', '--at', good, 'c']), 'mount at an empty dir'), good);
  t.ok(fs.existsSync(path.join(good, 'etc', 'motd')), 'mounted there');
  ok(t, d.cli(['container', 'unmount', 'c']), 'unmount');
  t.notOk(isMounted(good), 'gone');
});

t.test('bind and volume dirs are 0755 whatever the umask; empty mountpoints are no change of the container', opts, async (t) => {
  const d = await daemonWithBase(t, 'b-umask', { umask: '000' });
  const host = path.join(d.ws, 'host');
  ok(t, d.cli(['container', 'create', '--name', 'c', '-v', `${host}/x/sub:/x`, '-v', `${host}/y:/etc/mnt`, '-v', 'vol1:/data/v', 'base:1']), 'create with binds and a volume');
  t.equal(mode(host), '755', 'created host dir 0755');
  t.equal(mode(path.join(host, 'x')), '755', 'created host parent 0755');
  t.equal(mode(path.join(host, 'x', 'sub')), '755', 'created bind source 0755');
  t.equal(mode(path.join(d.root, 'volumes', 'vol1', '_data')), '755', 'volume data dir 0755');
  const merged = ok(t, d.cli(['container', 'mount', 'c']), 'mount');
  fs.writeFileSync(path.join(merged, 'etc', 'real-change'), 'x');
  fs.writeFileSync(path.join(merged, 'x', 'in-bind'), 'x');
  t.ok(fs.existsSync(path.join(host, 'x', 'sub', 'in-bind')), 'the bind works');
  const changes = JSON.parse(ok(t, d.cli(['diff', '--format', 'json', 'c']), 'diff')) as ChangeEntry[];
  t.same(changes.map((c) => `${c.Kind} ${c.Path}`), ['C /etc', 'A /etc/real-change'], 'diff: the real change only, no mountpoints');
  const img = ok(t, d.cli(['commit', 'c', 'after:1']), 'commit');
  t.match(img, /^sha256:/);
  const exportTar = path.join(d.ws, 'export.tar');
  ok(t, d.cli(['container', 'export', '-o', exportTar, 'c']), 'export');
  const names = runOk('tar', ['-tf', exportTar]).split('\n').map((n) => n.replace(/\/$/, ''));
  t.ok(names.includes('etc/real-change'), 'export has the change');
  t.notOk(names.includes('x') || names.includes('data') || names.includes('data/v'), 'export has no bind/volume mountpoints');
  t.ok(names.includes('etc') && !names.includes('etc/mnt'), 'nor the mountpoint inside an image dir');
  // The committed layer holds the change only.
  const inspect = JSON.parse(ok(t, d.cli(['image', 'inspect', 'after:1']), 'inspect')) as ImageInspect[];
  const top = inspect[0].Layers[inspect[0].Layers.length - 1];
  const layerDir = path.join(d.root, 'layers', top.Id.replace('sha256:', ''));
  t.same(runOk('find', [layerDir, '-mindepth', '1', '-printf', '%P\n']).trim().split('\n').sort(), ['etc', 'etc/real-change'], 'commit: no mountpoints in the layer');
  const ci = JSON.parse(ok(t, d.cli(['container', 'inspect', 'c']), 'inspect c')) as ContainerInspect[];
  t.equal(mode(path.join(ci[0].GraphDriver.Data.UpperDir!, 'x')), '755', 'the mountpoint made in the upper dir is 0755');
  ok(t, d.cli(['container', 'unmount', 'c']), 'unmount');
});

t.test('store files are private: root 0700, database and WAL 0600, container dirs 0700', opts, async (t) => {
  const d = await daemonWithBase(t, 'b-perm', { umask: '000' });
  const id = ok(t, d.cli(['container', 'create', 'base:1']), 'create');
  t.equal(mode(d.root), '700', 'root');
  for (const f of ['strata.db', 'strata.db-wal', 'strata.db-shm']) t.equal(mode(path.join(d.root, f)), '600', f);
  t.equal(mode(path.join(d.root, 'containers', id)), '700', 'container dir');
  for (const sub of ['layers', 'containers', 'volumes', 'tmp']) t.equal(mode(path.join(d.root, sub)), '700', sub);
  // An older root with looser modes is tightened at start-up.
  await d.kill('SIGTERM');
  fs.chmodSync(d.root, 0o755);
  fs.chmodSync(path.join(d.root, 'strata.db'), 0o644);
  await d.restart();
  t.equal(mode(d.root), '700', 'root tightened');
  t.equal(mode(path.join(d.root, 'strata.db')), '600', 'database tightened');
});

t.test('tags that read as image ids or digests are refused', opts, async (t) => {
  const d = await daemonWithBase(t, 'b-tags');
  const id = (JSON.parse(ok(t, d.cli(['image', 'inspect', 'base:1']), 'inspect')) as ImageInspect[])[0].Id;
  const other = `sha256:${'0123456789abcdef'.repeat(4)}`;
  fails(t, d.cli(['image', 'tag', 'base:1', other]), /looks like an image id or digest/, 'sha256:<hex>');
  fails(t, d.cli(['image', 'tag', 'base:1', id]), /looks like an image id or digest/, 'its own id');
  fails(t, d.cli(['image', 'tag', 'base:1', id.slice(7)]), /looks like an image id or digest/, '64 hex digits');
  fails(t, d.cli(['image', 'tag', 'base:1', 'sha256:abc']), /looks like an image id or digest/, 'an id prefix');
  ok(t, d.cli(['image', 'tag', 'base:1', 'sha256-tools:1']), 'an ordinary name that starts alike');
  ok(t, d.cli(['rmi', 'sha256-tools:1']), 'and it can be removed by name');
});

/** Top-level keys of one JSON object text, in order, duplicates kept (JSON.parse would merge them). */
function topLevelKeys(line: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '"') {
      let j = i + 1;
      while (j < line.length && line[j] !== '"') j += line[j] === '\\' ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(JSON.parse(line.slice(i, j + 1)) as string);
      expectKey = false;
      i = j;
    } else if (c === '{' || c === '[') {
      depth++;
      expectKey = c === '{' && depth === 1;
    } else if (c === '}' || c === ']') depth--;
    else if (c === ',' && depth === 1) expectKey = true;
  }
  return keys;
}

t.test('log lines carry each key once', opts, async (t) => {
  const d = await startDaemon(t, { label: 'b-log', logLevel: 'debug' });
  fs.mkdirSync(path.join(d.ws, 'r', 'etc'), { recursive: true });
  ok(t, d.cli(['image', 'import', path.join(d.ws, 'r'), 'l:1']), 'import');
  ok(t, d.cli(['container', 'create', '--name', 'named', '-v', 'v:/v', 'l:1']), 'create');
  ok(t, d.cli(['container', 'mount', 'named']), 'mount');
  ok(t, d.cli(['container', 'rm', '-f', 'named']), 'rm');
  await rawRequest(d.socket, { method: 'GET', path: '/images/%ZZ/json' });
  await d.kill('SIGTERM');
  const lines = d.log().split('\n').filter((l) => l.startsWith('{'));
  t.ok(lines.length >= 5, `${lines.length} log lines`);
  const dup = lines.filter((l) => new Set(topLevelKeys(l)).size !== topLevelKeys(l).length);
  t.same(dup, [], 'no line repeats a key');
  t.ok(lines.some((l) => /"msg":"stratad ready"/.test(l)), 'the ready line is there');
  t.ok(lines.some((l) => /"req":\d+.*API request refused/.test(l)), 'refused requests are logged with their id');
});

t.test('the CLI says so when the daemon dies in the middle of a request', opts, async (t) => {
  const d = await daemonWithBase(t, 'b-died');
  // An archive that keeps coming: a FIFO we hold open, with half a tar in it.
  const fifo = path.join(d.ws, 'slow.tar');
  runOk('mkfifo', [fifo]);
  const fd = fs.openSync(fifo, fs.constants.O_RDWR);
  t.teardown(() => fs.closeSync(fd));
  fs.writeSync(fd, runTar(path.join(d.ws, 'rootfs')).subarray(0, 2048));
  const pending = d.cliAsync(['image', 'load', '-i', fifo], { timeout: 30_000 });
  await new Promise((r) => setTimeout(r, 1000));
  await d.kill('SIGKILL');
  const r = await pending;
  t.equal(r.status, 1, 'exit 1');
  t.match(r.stderr, /^Error: the strata daemon at .* closed the connection before it answered: did stratad stop or crash\?/, `says the daemon went away (${r.stderr.trim()})`);
  t.notMatch(r.stderr, /socket hang up|ECONNRESET/, 'not a bare transport error');
});
