// daemon/archive: OCI layer tars <-> overlay-format layer dirs, safety of extraction, docker-diff changes.
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import * as zlib from 'node:zlib';
import { PassThrough, Readable, Writable } from 'node:stream';
import * as native from '../native-shims';
import {
  CorruptArchiveError,
  UnsafeArchiveError,
  extractLayer,
  importDirectory,
  layerChanges,
  packLayer,
  packTree,
} from '../daemon/archive';
import { TarWriter, WriteEntry } from '../daemon/archive/tar-writer';
import { snapshot } from './lib/snapshot';
import { run, runOk } from './lib/exec';
import { S_IFCHR, S_IFBLK, S_IFIFO } from '../daemon/util/file-mode';


function tmpdir(t: { teardown(fn: () => void): void }, label: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `strata-archive-${label}-`));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

function collect(): { sink: Writable; data: () => Buffer } {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk);
      cb();
    },
  });
  return { sink, data: () => Buffer.concat(chunks) };
}

async function packToBuffer(dir: string): Promise<{ tar: Buffer; diffId: string; size: number }> {
  const { sink, data } = collect();
  const r = await packLayer(dir, sink);
  return { tar: data(), ...r };
}

type Crafted = Partial<WriteEntry> & Pick<WriteEntry, 'name' | 'type'> & { content?: Buffer };
async function craftTar(entries: Crafted[]): Promise<Buffer> {
  const { sink, data } = collect();
  const w = new TarWriter(sink);
  for (const e of entries) {
    const content = e.content ?? Buffer.alloc(0);
    await w.addEntry({ mode: 0o644, uid: 0, gid: 0, mtimeSec: 1_600_000_000, mtimeNsec: 0, ...e, size: content.length });
    if (content.length) await w.write(content);
  }
  await w.finish(true);
  return data();
}

function sha256(b: Buffer): string {
  return 'sha256:' + crypto.createHash('sha256').update(b).digest('hex');
}

function setNs(p: string, sec: number, nsec: number): void {
  native.utimensat(p, sec, nsec, sec, nsec, native.AT_SYMLINK_NOFOLLOW);
}

/** A layer in overlay format exercising every feature. */
function buildLayer(root: string): void {
  const w = (rel: string, data: string | Buffer, mode = 0o644): void => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), data);
    fs.chmodSync(path.join(root, rel), mode);
  };
  w('etc/passwd', 'root:x:0:0::/root:/bin/sh\n');
  w('etc/shadow', 'secret\n', 0o600);
  w('usr/bin/su', 'suid', 0o4755);
  w('usr/bin/wall', 'sgid', 0o2755);
  w('empty', '');
  w('big.bin', crypto.randomBytes(3 * 1024 * 1024 + 17));
  w('dir with spaces/ünïcödé-名前.txt', 'utf8 name');
  const long = 'a'.repeat(60) + '/' + 'b'.repeat(70) + '/' + 'c'.repeat(120) + '.txt';
  w(long, 'long name');
  fs.mkdirSync(path.join(root, 'tmp'));
  fs.chmodSync(path.join(root, 'tmp'), 0o1777);
  fs.chownSync(path.join(root, 'etc/shadow'), 0, 42);
  w('home/user/file', 'mine');
  fs.chownSync(path.join(root, 'home/user/file'), 1000, 1000);
  fs.chownSync(path.join(root, 'home/user'), 1000, 1000);
  w('bigid', 'big uid');
  fs.chownSync(path.join(root, 'bigid'), 3_000_000, 2_500_000);
  // hard links (3 names), symlinks
  fs.linkSync(path.join(root, 'etc/passwd'), path.join(root, 'etc/passwd.hl'));
  fs.linkSync(path.join(root, 'etc/passwd'), path.join(root, 'zz-link'));
  fs.symlinkSync('/etc/passwd', path.join(root, 'abs-link'));
  fs.symlinkSync('../etc/shadow', path.join(root, 'usr/rel-link'));
  fs.symlinkSync('x'.repeat(150), path.join(root, 'long-target-link'));
  fs.lchownSync(path.join(root, 'abs-link'), 7, 8);
  // devices, fifo
  fs.mkdirSync(path.join(root, 'dev'));
  native.mknod(path.join(root, 'dev/null'), S_IFCHR | 0o666, 1, 3);
  native.mknod(path.join(root, 'dev/loop0'), S_IFBLK | 0o660, 7, 0);
  native.mknod(path.join(root, 'dev/ttyX'), S_IFCHR | 0o620, 136, 300000);
  native.mknod(path.join(root, 'fifo'), S_IFIFO | 0o640, 0, 0);
  fs.chmodSync(path.join(root, 'dev/null'), 0o666);
  fs.chmodSync(path.join(root, 'dev/loop0'), 0o660);
  fs.chmodSync(path.join(root, 'fifo'), 0o640);
  // xattrs
  native.lsetxattr(path.join(root, 'etc/passwd'), 'user.comment', Buffer.from('hello'), 0);
  native.lsetxattr(path.join(root, 'usr/bin/su'), 'security.capability', Buffer.from('0100000200200000000000000000000000000000', 'hex'), 0);
  native.lsetxattr(path.join(root, 'usr/bin/su'), 'user.bin', Buffer.from([0, 1, 2, 255, 10, 61]), 0);
  native.lsetxattr(path.join(root, 'etc'), 'trusted.foo', Buffer.from('bar'), 0);
  native.lsetxattr(path.join(root, 'abs-link'), 'trusted.sym', Buffer.from('s'), 0);
  // overlay whiteouts and an opaque dir
  native.mknod(path.join(root, 'etc/removed'), S_IFCHR, 0, 0);
  fs.lchownSync(path.join(root, 'etc/removed'), 0, 0);
  fs.mkdirSync(path.join(root, 'var/lib/opq'), { recursive: true });
  w('var/lib/opq/kept', 'kept');
  native.lsetxattr(path.join(root, 'var/lib/opq'), 'trusted.overlay.opaque', Buffer.from('y'), 0);
  // ns mtimes (files, a symlink, dirs, pre-epoch)
  setNs(path.join(root, 'etc/passwd'), 1_700_000_000, 123_456_789);
  setNs(path.join(root, 'empty'), 1_700_000_001, 0);
  setNs(path.join(root, 'bigid'), -100, 500_000_000);
  setNs(path.join(root, 'abs-link'), 1_500_000_000, 1);
  setNs(path.join(root, 'fifo'), 1_600_000_000, 999_999_999);
  for (const d of ['etc', 'usr/bin', 'usr', 'var/lib/opq', 'var/lib', 'var', 'tmp', 'dev', 'home/user', 'home']) {
    setNs(path.join(root, d), 1_650_000_000, 42_000);
  }
}

function snap(dir: string): ReturnType<typeof snapshot> {
  const s = snapshot(dir);
  delete s['.'];
  return s;
}

t.test('round trip pack -> extract preserves everything; deterministic diffId', async (t) => {
  const ws = tmpdir(t, 'rt');
  const src = path.join(ws, 'src');
  fs.mkdirSync(src);
  buildLayer(src);
  const a = await packToBuffer(src);
  const b = await packToBuffer(src);
  t.ok(a.tar.equals(b.tar), 'packing twice gives identical bytes');
  t.equal(a.diffId, b.diffId);
  t.equal(a.diffId, sha256(a.tar), 'diffId is the sha256 of the bytes written');
  const computeOnly = await packLayer(src, null);
  t.same(computeOnly, { diffId: a.diffId, size: a.size }, 'out=null computes the same result');

  const dst = path.join(ws, 'dst');
  const r = await extractLayer(Readable.from([a.tar]), dst);
  t.equal(r.diffId, a.diffId, 'extract diffId = pack diffId');
  t.equal(r.size, a.size, 'content size matches');
  t.same(snap(dst), snap(src), 'trees identical (types, modes, owners, ns mtimes, xattrs, links, devices)');
  t.equal(fs.lstatSync(path.join(dst, 'etc/passwd')).nlink, 3, 'hard links restored');
  t.equal(fs.readlinkSync(path.join(dst, 'abs-link')), '/etc/passwd');
  const wh = fs.lstatSync(path.join(dst, 'etc/removed'));
  t.ok(wh.isCharacterDevice() && wh.rdev === 0 && (wh.mode & 0o7777) === 0, 'whiteout is char 0/0 mode 0');
  t.equal(native.lgetxattr(path.join(dst, 'var/lib/opq'), 'trusted.overlay.opaque')?.toString(), 'y', 'opaque dir');
  t.notOk(fs.existsSync(path.join(dst, 'var/lib/opq/.wh..wh..opq')), 'no opaque marker file');
  const again = await packLayer(dst, null);
  t.equal(again.diffId, a.diffId, 'repacking the extracted layer gives the same diffId');

  // GNU tar reads our output
  const tarFile = path.join(ws, 'layer.tar');
  fs.writeFileSync(tarFile, a.tar);
  const list = run('tar', ['--numeric-owner', '-tvf', tarFile]);
  t.equal(list.status, 0, `GNU tar lists the archive: ${list.stderr}`);
  t.equal(list.stderr, '', 'no warnings from GNU tar');
  const names = run('tar', ['-tf', tarFile]).stdout.split('\n').filter(Boolean);
  t.ok(names.includes('etc/.wh.removed'), 'whiteout as .wh.<name>');
  t.ok(names.includes('var/lib/opq/') && names.indexOf('var/lib/opq/.wh..wh..opq') === names.indexOf('var/lib/opq/') + 1, 'opaque marker right after its dir');
  t.ok(names.some((n) => n.endsWith('c'.repeat(120) + '.txt')), 'long name via pax');
  t.ok(names.includes('dir with spaces/ünïcödé-名前.txt'), 'utf-8 name');
  t.notOk(names.some((n) => n.startsWith('./') || n.startsWith('/')), 'relative names without ./');
  const sorted = [...names].sort((x, y) => Buffer.compare(Buffer.from(x.replace(/\/$/, '')), Buffer.from(y.replace(/\/$/, ''))));
  t.same(names.filter((n) => !n.endsWith('.wh..wh..opq')), sorted.filter((n) => !n.endsWith('.wh..wh..opq')), 'sorted bytewise');
  t.match(list.stdout, /hrw-r--r-- 0\/0 +0 [^\n]* etc\/passwd.hl link to etc\/passwd/, 'hard link entry');
  t.match(list.stdout, /crw-rw-rw- 0\/0 +1,3 [^\n]* dev\/null/, 'char device');
  t.match(list.stdout, /-rwsr-xr-x/, 'setuid mode');
  t.match(list.stdout, /3000000\/2500000/, 'big uid/gid via pax');
  // GNU tar extracts it too, with xattrs
  const gx = path.join(ws, 'gnu-x');
  fs.mkdirSync(gx);
  const xr = run('tar', ['--xattrs', "--xattrs-include=*", '--numeric-owner', '-xpf', tarFile, '-C', gx]);
  t.equal(xr.status, 0, `GNU tar extracts: ${xr.stderr}`);
  t.equal(native.lgetxattr(path.join(gx, 'etc/passwd'), 'user.comment')?.toString(), 'hello', 'GNU tar sees our xattrs');
  t.equal(fs.statSync(path.join(gx, 'etc/passwd'), { bigint: true }).mtimeNs, 1_700_000_000_123_456_789n, 'GNU tar reads ns mtime');

  // packTree: no whiteout conversion
  const { sink, data } = collect();
  await packTree(src, sink);
  fs.writeFileSync(tarFile, data());
  const treeNames = runOk('tar', ['-tf', tarFile]).split('\n');
  t.ok(treeNames.includes('etc/removed') && !treeNames.includes('etc/.wh.removed'), 'packTree keeps char 0/0 as a device');
  t.notOk(treeNames.some((n) => n.includes('.wh..wh..opq')), 'packTree writes no opaque marker');

  // importDirectory
  const imp = path.join(ws, 'imported');
  const ir = await importDirectory(src, imp);
  t.same(ir, await packLayer(imp, null), 'importDirectory returns packLayer of the copy');
  t.equal(ir.size, a.size, 'same content size');
  const si = snap(imp);
  const ss = snap(src);
  // import drops trusted.overlay.* (a rootfs never shows them); everything else is identical
  delete ss['var/lib/opq'].xattrs['trusted.overlay.opaque'];
  t.same(si, ss, 'importDirectory copies everything');
});

t.test('gzip input (detected by magic) and path input', async (t) => {
  const ws = tmpdir(t, 'gz');
  const src = path.join(ws, 'src');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'f'), 'x'.repeat(10000));
  const a = await packToBuffer(src);
  const gzFile = path.join(ws, 'layer.bin'); // no .gz suffix on purpose
  fs.writeFileSync(gzFile, zlib.gzipSync(a.tar));
  const r = await extractLayer(gzFile, path.join(ws, 'd1'));
  t.same(r, { diffId: a.diffId, size: 10000 }, 'diffId of the uncompressed stream');
  t.equal(fs.readFileSync(path.join(ws, 'd1/f'), 'utf8'), 'x'.repeat(10000));
  // trailing blocking (GNU tar pads to 10 KiB) is part of the diffId
  const padded = Buffer.concat([a.tar, Buffer.alloc(10240 - (a.tar.length % 10240))]);
  const pt = new PassThrough();
  pt.end(zlib.gzipSync(padded));
  const r2 = await extractLayer(pt, path.join(ws, 'd2'));
  t.equal(r2.diffId, sha256(padded), 'trailing zero blocks hashed');
});

t.test('OCI layer made by GNU tar --xattrs extracts to overlay format', async (t) => {
  const ws = tmpdir(t, 'gnu');
  const src = path.join(ws, 'src');
  fs.mkdirSync(path.join(src, 'opq'), { recursive: true });
  fs.mkdirSync(path.join(src, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(src, 'opq/new'), 'n');
  fs.writeFileSync(path.join(src, 'opq/.wh..wh..opq'), '');
  fs.writeFileSync(path.join(src, 'sub/.wh.gone'), '');
  fs.writeFileSync(path.join(src, '.wh.rootgone'), '');
  fs.writeFileSync(path.join(src, 'x'), 'data');
  native.lsetxattr(path.join(src, 'x'), 'user.k', Buffer.from('v'), 0);
  setNs(path.join(src, 'x'), 1_700_000_000, 5);
  const tarFile = path.join(ws, 'l.tar');
  runOk('tar', ['--format=posix', '--xattrs', '--xattrs-include=*', '--numeric-owner', '-cf', tarFile, '-C', src, '.']);
  const dst = path.join(ws, 'dst');
  const r = await extractLayer(tarFile, dst);
  t.equal(r.diffId, sha256(fs.readFileSync(tarFile)), 'diffId = sha256 of the file');
  const gone = fs.lstatSync(path.join(dst, 'sub/gone'));
  t.ok(gone.isCharacterDevice() && gone.rdev === 0, 'sub/.wh.gone -> char 0/0 sub/gone');
  t.ok(fs.lstatSync(path.join(dst, 'rootgone')).isCharacterDevice(), 'root-level whiteout');
  t.notOk(fs.existsSync(path.join(dst, 'sub/.wh.gone')), 'no marker file');
  t.notOk(fs.existsSync(path.join(dst, 'opq/.wh..wh..opq')), 'no opaque marker file');
  t.equal(native.lgetxattr(path.join(dst, 'opq'), 'trusted.overlay.opaque')?.toString(), 'y', 'opaque xattr');
  t.equal(fs.readFileSync(path.join(dst, 'opq/new'), 'utf8'), 'n', 'content of opaque dir kept');
  t.equal(native.lgetxattr(path.join(dst, 'x'), 'user.k')?.toString(), 'v', 'xattr');
  t.equal(fs.statSync(path.join(dst, 'x'), { bigint: true }).mtimeNs, 1_700_000_000_000_000_005n, 'pax ns mtime');
});

t.test('later entries replace earlier ones', async (t) => {
  const ws = tmpdir(t, 'repl');
  const tar = await craftTar([
    { name: 'd', type: 'dir', mode: 0o755 },
    { name: 'd/f', type: 'file', content: Buffer.from('1') },
    { name: 'd', type: 'file', content: Buffer.from('now a file') },
    { name: 'e', type: 'file', content: Buffer.from('file') },
    { name: 'e', type: 'dir', mode: 0o700 },
    { name: 'e/inner', type: 'file', content: Buffer.from('i') },
    { name: 'e', type: 'dir', mode: 0o750 },
  ]);
  const dst = path.join(ws, 'dst');
  await extractLayer(Readable.from([tar]), dst);
  t.equal(fs.readFileSync(path.join(dst, 'd'), 'utf8'), 'now a file', 'dir replaced by file');
  t.equal(fs.lstatSync(path.join(dst, 'e')).mode & 0o7777, 0o750, 'file replaced by dir, dir metadata updated');
  t.ok(fs.existsSync(path.join(dst, 'e/inner')), 'existing dir kept for a dir entry');
});

t.test('hostile archives write nothing outside destDir', async (t) => {
  const ws = tmpdir(t, 'evil');
  const outside = path.join(ws, 'outside');
  fs.mkdirSync(outside);
  const before = () => fs.readdirSync(outside).sort();
  const dest = (n: string) => path.join(ws, 'layers', n, 'a', 'b');

  // ../evil
  const d1 = dest('dotdot');
  await t.rejects(
    extractLayer(Readable.from([await craftTar([{ name: 'ok', type: 'file' }, { name: '../../../outside/evil', type: 'file', content: Buffer.from('pwn') }])]), d1),
    UnsafeArchiveError,
  );
  await t.rejects(extractLayer(Readable.from([await craftTar([{ name: 'x/../../evil', type: 'file' }])]), dest('dotdot2')), /'\.\.' component/);
  t.same(before(), [], 'nothing in outside/');
  t.notOk(fs.existsSync(path.join(ws, 'layers/dotdot/a/evil')) || fs.existsSync(path.join(ws, 'layers/dotdot/evil')), 'nothing next to dest');

  // absolute path is neutralized (made relative)
  const absName = path.join(outside, 'abs-evil');
  const d2 = dest('abs');
  await extractLayer(Readable.from([await craftTar([{ name: absName, type: 'file', content: Buffer.from('x') }])]), d2);
  t.notOk(fs.existsSync(absName), 'absolute member not written at its absolute path');
  t.ok(fs.existsSync(path.join(d2, absName)), 'written under destDir instead');
  const etcEvil = `/etc/strata-evil-${process.pid}`;
  await extractLayer(Readable.from([await craftTar([{ name: etcEvil, type: 'file' }])]), dest('abs2'));
  t.notOk(fs.existsSync(etcEvil), `${etcEvil} not created`);

  // symlink to outside, then a member through it
  const d3 = dest('symlink');
  await t.rejects(
    extractLayer(
      Readable.from([
        await craftTar([
          { name: 'link', type: 'symlink', linkname: Buffer.from(outside) },
          { name: 'link/file', type: 'file', content: Buffer.from('pwn') },
        ]),
      ]),
      d3,
    ),
    { name: 'UnsafeArchiveError', message: /parent 'link' is a symbolic link/ },
  );
  await t.rejects(
    extractLayer(
      Readable.from([
        await craftTar([
          { name: 'rel', type: 'symlink', linkname: Buffer.from('../../../../outside') },
          { name: 'rel/.wh.x', type: 'file' },
        ]),
      ]),
      dest('symlink2'),
    ),
    UnsafeArchiveError,
    'whiteout through a symlink refused',
  );
  await t.rejects(
    extractLayer(
      Readable.from([
        await craftTar([
          { name: 'rel', type: 'symlink', linkname: Buffer.from(outside) },
          { name: 'rel/.wh..wh..opq', type: 'file' },
        ]),
      ]),
      dest('symlink3'),
    ),
    UnsafeArchiveError,
    'opaque marker through a symlink refused',
  );
  t.same(native.llistxattr(outside).filter((n) => n.startsWith('trusted.overlay')), [], 'outside not marked opaque');
  // a later regular file named like the symlink replaces the symlink, never writes through it
  const victim = path.join(outside, 'victim');
  fs.writeFileSync(victim, 'original');
  await extractLayer(
    Readable.from([
      await craftTar([
        { name: 'v', type: 'symlink', linkname: Buffer.from(victim) },
        { name: 'v', type: 'file', content: Buffer.from('pwn') },
        { name: 'w', type: 'symlink', linkname: Buffer.from(outside) },
        { name: 'w', type: 'dir' },
      ]),
    ]),
    dest('replace'),
  );
  t.equal(fs.readFileSync(victim, 'utf8'), 'original', 'symlink target untouched');
  t.ok(fs.lstatSync(path.join(dest('replace'), 'v')).isFile(), 'symlink replaced by the file');
  t.ok(fs.lstatSync(path.join(dest('replace'), 'w')).isDirectory(), 'symlink replaced by the dir');
  fs.unlinkSync(victim);

  // hard links out of the root
  const x = path.join(ws, 'layers', 'x');
  fs.writeFileSync(x, 'host file');
  await t.rejects(
    extractLayer(Readable.from([await craftTar([{ name: 'hl', type: 'link', linkname: Buffer.from('../../x') }])]), dest('hardlink')),
    { name: 'UnsafeArchiveError', message: /'\.\.'/ },
  );
  t.equal(fs.statSync(x).nlink, 1, 'no link to ../../x');
  const passwdLinks = fs.statSync('/etc/passwd').nlink;
  await t.rejects(
    extractLayer(Readable.from([await craftTar([{ name: 'hl', type: 'link', linkname: Buffer.from('/etc/passwd') }])]), dest('hardlink2')),
    CorruptArchiveError,
    'absolute hard link target is resolved inside the root, where it does not exist',
  );
  t.equal(fs.statSync('/etc/passwd').nlink, passwdLinks, '/etc/passwd not linked');
  await t.rejects(
    extractLayer(
      Readable.from([
        await craftTar([
          { name: 'sl', type: 'symlink', linkname: Buffer.from(outside) },
          { name: 'hl', type: 'link', linkname: Buffer.from('sl/secret') },
        ]),
      ]),
      dest('hardlink3'),
    ),
    UnsafeArchiveError,
    'hard link target through a symlink refused',
  );
  t.same(before(), [], 'still nothing in outside/');
  t.equal(fs.readdirSync(path.join(ws, 'layers')).sort().join(','), 'abs,abs2,dotdot,dotdot2,hardlink,hardlink2,hardlink3,replace,symlink,symlink2,symlink3,x');
});

t.test('corrupt and truncated archives', async (t) => {
  const ws = tmpdir(t, 'corrupt');
  const src = path.join(ws, 'src');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'a'), crypto.randomBytes(5000));
  fs.writeFileSync(path.join(src, 'b'), 'b');
  const { tar } = await packToBuffer(src);
  let n = 0;
  const x = (b: Buffer | Readable) => extractLayer(Buffer.isBuffer(b) ? Readable.from([b]) : b, path.join(ws, `d${n++}`));
  await t.rejects(x(tar.subarray(0, 2000)), { name: 'CorruptArchiveError', message: /truncated/ }, 'cut inside content');
  await t.rejects(x(tar.subarray(0, 700)), CorruptArchiveError, 'cut inside a block');
  await t.rejects(x(tar.subarray(0, tar.length - 1024)), { name: 'CorruptArchiveError', message: /end-of-archive/ }, 'cut at a header boundary');
  const gz = zlib.gzipSync(tar);
  await t.rejects(x(gz.subarray(0, gz.length - 30)), CorruptArchiveError, 'truncated gzip');
  const bad = Buffer.from(tar);
  bad[10] ^= 0xff;
  await t.rejects(x(bad), { name: 'CorruptArchiveError', message: /checksum/ }, 'bad header checksum');
  await t.rejects(x(crypto.randomBytes(4096)), CorruptArchiveError, 'garbage');
  await t.rejects(x(Readable.from([])), CorruptArchiveError, 'empty input');
  await t.rejects(x(Buffer.from([0x1f, 0x8b, 1, 2, 3, 4, 5])), CorruptArchiveError, 'bad gzip');
});

t.test('layerChanges reports like docker diff', async (t) => {
  const ws = tmpdir(t, 'chg');
  const mk = (root: string, files: Record<string, string | null>): string => {
    for (const [rel, v] of Object.entries(files)) {
      const p = path.join(root, rel);
      fs.mkdirSync(path.dirname(p), { recursive: true });
      if (v === null) native.mknod(p, S_IFCHR, 0, 0);
      else if (rel.endsWith('/')) fs.mkdirSync(p, { recursive: true });
      else if (v.startsWith('->')) fs.symlinkSync(v.slice(2), p);
      else fs.writeFileSync(p, v);
    }
    return root;
  };
  const l1 = mk(path.join(ws, 'l1'), {
    'etc/passwd': 'p',
    'etc/hosts': 'h',
    'var/lib/a': 'a',
    'var/lib/b': 'b',
    'var/lib/c': 'c',
    'opt/x': 'x',
    'gone.txt': 'g',
    'keep.txt': 'k',
    sym: '->/etc',
  });
  const l2 = mk(path.join(ws, 'l2'), { 'usr/bin/tool': 't', 'opt/x': null, 'var/lib/c': null });
  const up = mk(path.join(ws, 'up'), {
    'etc/passwd': 'p2',
    'gone.txt': null,
    'var/lib/new': 'n',
    'var/lib/b': 'b2',
    'opt/x': 'back',
    'usr/bin/tool2': 't2',
    'newdir/f': 'f',
    'sym/passwd': 'through symlink?',
  });
  native.lsetxattr(path.join(up, 'var/lib'), 'trusted.overlay.opaque', Buffer.from('y'), 0);
  const changes = layerChanges(up, [l2, l1]);
  t.same(
    changes.map((c) => `${c.kind} ${c.path}`),
    [
      'C /etc',
      'C /etc/passwd',
      'D /gone.txt',
      'A /newdir',
      'A /newdir/f',
      'C /opt',
      'A /opt/x',
      'C /sym',
      'A /sym/passwd',
      'C /usr',
      'C /usr/bin',
      'A /usr/bin/tool2',
      'C /var',
      'C /var/lib',
      'D /var/lib/a',
      'C /var/lib/b',
      'A /var/lib/new',
    ],
  );
});
