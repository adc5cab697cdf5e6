// Acceptance scenario: podman (root) with `--storage-opt overlay.mount_program=<strata-mount>`
// runs a container from a busybox image made with `podman import`, writes a file, deletes an
// image file, removes and recreates a directory of the image, and `podman commit` produces an
// image whose top layer holds exactly those changes.
//
// The mount program comes from env STRATA_MOUNT_PROGRAM (default: <repo>/bin/strata-mount), so
// the scenario can be run against /usr/bin/fuse-overlayfs as a reference.
//
// Skips only when podman or runc is not installed or /dev/fuse is missing.

import t from 'tap';
import { execFile } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { TEST_ROOT } from './lib/workspace';

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

const CMD_TIMEOUT_MS = 90_000;

function run(cmd: string, args: string[], timeoutMs = CMD_TIMEOUT_MS): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        let code = 0;
        if (err) {
          const e = err as NodeJS.ErrnoException & { code?: unknown; killed?: boolean; signal?: string | null };
          if (typeof e.code === 'number') code = e.code;
          else code = -1;
          if (e.killed || e.signal) stderr += `\n[killed: ${e.signal ?? 'timeout'} after ${timeoutMs} ms]`;
          if (typeof e.code === 'string') stderr += `\n[spawn error: ${e.code} ${e.message}]`;
        }
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

async function runOk(cmd: string, args: string[], timeoutMs = CMD_TIMEOUT_MS): Promise<RunResult> {
  const r = await run(cmd, args, timeoutMs);
  if (r.code !== 0) {
    throw new Error(
      `command failed (exit ${r.code}): ${cmd} ${args.join(' ')}\n--- stdout:\n${r.stdout}\n--- stderr:\n${r.stderr}`,
    );
  }
  return r;
}

function which(name: string): string | null {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').concat(['/usr/sbin', '/sbin'])) {
    if (!dir) continue;
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      /* not here */
    }
  }
  return null;
}

function findRepoRoot(): string {
  let dir = __dirname;
  for (;;) {
    const pj = path.join(dir, 'package.json');
    try {
      const j = JSON.parse(fs.readFileSync(pj, 'utf8')) as { name?: string };
      if (j.name === 'strata') return dir;
    } catch {
      /* keep looking */
    }
    const up = path.dirname(dir);
    if (up === dir) return path.resolve(__dirname, '..', '..');
    dir = up;
  }
}

/** True when the ELF file has no PT_INTERP program header (i.e. is statically linked). */
function isStaticElf(file: string): boolean {
  const b = fs.readFileSync(file);
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46) return false;
  const is64 = b[4] === 2;
  const le = b[5] === 1;
  const u16 = (o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
  const u32 = (o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const off = (o: number) => (is64 ? Number(le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o)) : u32(o));
  const phoff = off(is64 ? 0x20 : 0x1c);
  const phentsize = u16(is64 ? 0x36 : 0x2a);
  const phnum = u16(is64 ? 0x38 : 0x2c);
  for (let i = 0; i < phnum; i++) {
    if (u32(phoff + i * phentsize) === 3 /* PT_INTERP */) return false;
  }
  return true;
}

function findStaticBusybox(): string {
  const candidates = ['/bin/busybox', '/usr/bin/busybox', '/usr/lib/initramfs-tools/bin/busybox'];
  for (const c of candidates) {
    try {
      if (fs.statSync(c).isFile() && isStaticElf(c)) return c;
    } catch {
      /* next */
    }
  }
  throw new Error(
    `no statically linked busybox found (looked at ${candidates.join(', ')}); install the Debian package busybox-static (make apt)`,
  );
}

/** Mount points (decoded) from /proc/mounts that are `dir` or below it. */
function mountsUnder(dirs: string[]): string[] {
  const text = fs.readFileSync('/proc/mounts', 'utf8');
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 2) continue;
    const mp = f[1].replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (dirs.some((d) => mp === d || mp.startsWith(d + '/'))) out.push(mp);
  }
  return out;
}

interface TarEntry {
  type: string; // first char of the mode string: '-', 'd', 'l', 'c', 'h', ...
  name: string; // normalised: no leading './', no trailing '/'
}

function normName(n: string): string {
  let s = n;
  while (s.startsWith('./')) s = s.slice(2);
  if (s.startsWith('/')) s = s.slice(1);
  while (s.endsWith('/')) s = s.slice(0, -1);
  return s;
}

async function listTar(file: string): Promise<TarEntry[]> {
  const names = (await runOk('tar', ['-tf', file])).stdout.split('\n').filter((l) => l !== '');
  const verbose = (await runOk('tar', ['-tvf', file])).stdout.split('\n').filter((l) => l !== '');
  if (names.length !== verbose.length) throw new Error(`tar listing mismatch for ${file}`);
  return names.map((n, i) => ({ type: verbose[i].charAt(0), name: normName(n) })).filter((e) => e.name !== '');
}

function sha256Path(blobsDir: string, digest: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (!m) throw new Error(`unexpected digest ${digest}`);
  return path.join(blobsDir, 'sha256', m[1]);
}

const repoRoot = findRepoRoot();
const mountProgram = path.resolve(process.env.STRATA_MOUNT_PROGRAM || path.join(repoRoot, 'bin', 'strata-mount'));

function skipReason(): string | null {
  if (!which('podman')) return 'podman is not installed';
  if (!which('runc')) return 'runc is not installed';
  if (!fs.existsSync('/dev/fuse')) return '/dev/fuse is missing';
  return null;
}

const reason = skipReason();
if (reason) console.log(`# skipping podman scenario: ${reason}`);
t.test('podman run + commit through overlay.mount_program', { skip: reason ?? false }, async (t) => {
  t.setTimeout(180_000);
  const started = Date.now();

  // Under TEST_ROOT so test/run.ts clears our mounts if this process is killed mid-run.
  fs.mkdirSync(TEST_ROOT, { recursive: true });
  // Named <label>-<pid>-<hex> as makeWorkspace names them, so a test run starting meanwhile
  // (another checkout's) sees this one is alive and leaves it alone.
  const base = path.join(TEST_ROOT, `podman-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
  fs.mkdirSync(base);
  const root = path.join(base, 'root');
  const runroot = path.join(base, 'runroot');
  const ptmp = path.join(base, 'libpod-tmp');
  const work = path.join(base, 'work');
  fs.mkdirSync(work);

  const globalArgs = [
    '--root', root,
    '--runroot', runroot,
    '--tmpdir', ptmp,
    '--storage-driver', 'overlay',
    '--storage-opt', `overlay.mount_program=${mountProgram}`,
    '--cgroup-manager', 'cgroupfs',
    '--runtime', 'runc',
    '--events-backend', 'file',
  ];
  const runArgs = [
    '--pull', 'never',
    '--network', 'none',
    '--ulimit', 'nofile=20000:20000',
    '--ulimit', 'nproc=32768:32768',
  ];
  const podman = (args: string[]) => runOk('podman', [...globalArgs, ...args]);

  // rm -af, rmi -af, then lazily unmount whatever is still mounted under our dirs (deepest
  // first) and rm -rf everything. Returns the mounts that podman itself left behind.
  let cleaned = false;
  const cleanup = async (): Promise<{ leftover: string[]; notes: string[] }> => {
    if (cleaned) return { leftover: [], notes: [] };
    cleaned = true;
    const notes: string[] = [];
    for (const args of [['rm', '-af', '-t', '0'], ['rmi', '-af']]) {
      const r = await run('podman', [...globalArgs, ...args]);
      if (r.code !== 0) notes.push(`podman ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
    }
    const leftover = mountsUnder([base]).sort((a, b) => b.length - a.length);
    for (const mp of leftover) {
      notes.push(`lazy-unmounting leftover mount ${mp}`);
      await run('umount', ['-l', mp], 30_000);
    }
    const still = mountsUnder([base]);
    if (still.length > 0) {
      notes.push(`still mounted, not removing ${base}: ${still.join(', ')}`);
    } else {
      try {
        fs.rmSync(base, { recursive: true, force: true });
      } catch (e) {
        notes.push(`rm -rf ${base}: ${(e as Error).message}`);
      }
    }
    return { leftover, notes };
  };
  t.teardown(async () => {
    const { notes } = await cleanup();
    for (const n of notes) console.error(`# podman cleanup: ${n}`);
  });

  t.ok(fs.existsSync(mountProgram), `mount program exists: ${mountProgram}`);

  // --- busybox rootfs -> tar -> podman import -------------------------------------------------
  const busybox = findStaticBusybox();
  const rootfs = path.join(work, 'rootfs');
  for (const d of ['bin', 'etc/app', 'data/dir', 'tmp', 'dev', 'proc', 'sys', 'run']) {
    fs.mkdirSync(path.join(rootfs, d), { recursive: true });
  }
  fs.chmodSync(path.join(rootfs, 'tmp'), 0o1777);
  fs.copyFileSync(busybox, path.join(rootfs, 'bin/busybox'));
  fs.chmodSync(path.join(rootfs, 'bin/busybox'), 0o755);
  for (const applet of ['sh', 'ls', 'cat', 'rm', 'mkdir', 'echo', 'touch']) {
    fs.symlinkSync('busybox', path.join(rootfs, 'bin', applet));
  }
  fs.writeFileSync(path.join(rootfs, 'etc/app/a'), 'a\n');
  fs.writeFileSync(path.join(rootfs, 'etc/app/b'), 'b\n');
  fs.writeFileSync(path.join(rootfs, 'data/dir/x'), 'x\n');
  fs.writeFileSync(path.join(rootfs, 'data/dir/y'), 'y\n');
  // Files/dirs podman and runc would otherwise create as mount points in the container layer
  // (they would then show up in the committed layer). Shipping them in the image keeps the
  // committed layer down to exactly the container's own changes.
  for (const f of ['etc/hosts', 'etc/hostname', 'etc/resolv.conf', 'run/.containerenv']) {
    fs.writeFileSync(path.join(rootfs, f), '');
  }
  fs.symlinkSync('/proc/mounts', path.join(rootfs, 'etc/mtab'));
  const rootfsTar = path.join(work, 'rootfs.tar');
  await runOk('tar', ['-C', rootfs, '--numeric-owner', '--owner=0', '--group=0', '-cf', rootfsTar, '.']);

  const img = 'localhost/strata-test-bb:latest';
  const img2 = 'localhost/strata-test-bb2:latest';
  await podman(['import', '-q', rootfsTar, img]);

  // --- container: write, delete, rm -rf + recreate dir; then commit ----------------------------
  const script = 'echo hi > /new.txt && rm /etc/app/a && rm -rf /data/dir && mkdir /data/dir && echo z > /data/dir/z';
  await podman(['run', '--name', 'c1', ...runArgs, img, 'sh', '-c', script]);
  await podman(['commit', '-q', 'c1', img2]);

  // --- save the committed image and inspect its top layer --------------------------------------
  const archive = path.join(work, 'img2.tar');
  await podman(['save', '-q', '--format', 'oci-archive', '-o', archive, img2]);
  const oci = path.join(work, 'oci');
  fs.mkdirSync(oci);
  await runOk('tar', ['-C', oci, '-xf', archive]);
  const blobs = path.join(oci, 'blobs');
  const index = JSON.parse(fs.readFileSync(path.join(oci, 'index.json'), 'utf8')) as {
    manifests: { digest: string }[];
  };
  t.equal(index.manifests.length, 1, 'oci archive holds one manifest');
  const manifest = JSON.parse(fs.readFileSync(sha256Path(blobs, index.manifests[0].digest), 'utf8')) as {
    layers: { digest: string; mediaType: string }[];
  };
  t.equal(manifest.layers.length, 2, 'committed image = imported layer + one new layer');
  const topLayer = sha256Path(blobs, manifest.layers[manifest.layers.length - 1].digest);
  const entries = await listTar(topLayer);
  const listing = (await runOk('tar', ['-tvf', topLayer])).stdout;
  t.comment(`committed layer:\n${listing.trimEnd()}`);

  const names = entries.map((e) => e.name);
  t.equal(new Set(names).size, names.length, 'no duplicate entries in the layer');

  // The removed-and-recreated directory may be expressed either with an opaque marker
  // (kernel overlay / native diff) or with explicit whiteouts of every old child (naive diff,
  // which is what podman uses with a mount_program). Both are valid OCI layer encodings.
  const opq = 'data/dir/.wh..wh..opq';
  const dirWhiteouts = new Set(names.filter((n) => n.startsWith('data/dir/.wh.') && n !== opq));
  const hasOpq = names.includes(opq);
  const whiteoutsOk = hasOpq
    ? [...dirWhiteouts].every((n) => n === 'data/dir/.wh.x' || n === 'data/dir/.wh.y')
    : dirWhiteouts.size === 2 && dirWhiteouts.has('data/dir/.wh.x') && dirWhiteouts.has('data/dir/.wh.y');
  const gotWh = [...(hasOpq ? [opq] : []), ...[...dirWhiteouts].sort()];
  t.ok(whiteoutsOk, `data/dir replaced: opaque marker or whiteouts of x and y (got: ${gotWh.join(', ') || 'none'})`);

  const rest = names.filter((n) => n !== opq && !dirWhiteouts.has(n)).sort();
  t.same(
    rest,
    ['data', 'data/dir', 'data/dir/z', 'etc', 'etc/app', 'etc/app/.wh.a', 'new.txt'].sort(),
    'committed layer holds exactly the changes (+ parent dirs)',
  );

  const typeOf = (n: string) => entries.find((e) => e.name === n)?.type;
  for (const d of ['data', 'data/dir', 'etc', 'etc/app']) t.equal(typeOf(d), 'd', `${d} is a directory`);
  for (const f of ['new.txt', 'data/dir/z']) t.equal(typeOf(f), '-', `${f} is a regular file`);
  for (const w of names.filter((n) => path.basename(n).startsWith('.wh.'))) {
    t.equal(typeOf(w), '-', `whiteout ${w} is an (empty) regular file in the tar`);
  }

  const layerDir = path.join(work, 'layer');
  fs.mkdirSync(layerDir);
  await runOk('tar', ['-C', layerDir, '-xf', topLayer]);
  t.equal(fs.readFileSync(path.join(layerDir, 'new.txt'), 'utf8'), 'hi\n', 'new.txt content in layer');
  t.equal(fs.readFileSync(path.join(layerDir, 'data/dir/z'), 'utf8'), 'z\n', 'data/dir/z content in layer');
  for (const w of names.filter((n) => path.basename(n).startsWith('.wh.'))) {
    t.equal(fs.statSync(path.join(layerDir, w)).size, 0, `whiteout ${w} is empty`);
  }

  // --- run the committed image: merged view --------------------------------------------------
  const view = await podman([
    'run', '--rm', ...runArgs, img2,
    'sh', '-c', 'cat /new.txt; echo ---; ls -A /etc/app; echo ---; ls -A /data/dir; echo ---; cat /data/dir/z',
  ]);
  t.equal(view.stdout, 'hi\n---\nb\n---\nz\n---\nz\n', 'img2 merged view: /new.txt, /etc/app = {b}, /data/dir = {z}');

  // --- cleanup, and nothing may stay mounted under our storage dirs ---------------------------
  const { leftover, notes } = await cleanup();
  for (const n of notes) t.comment(`cleanup: ${n}`);
  t.same(leftover, [], 'podman left no mounts under its root/runroot after rm -af / rmi -af');
  t.same(mountsUnder([base]), [], 'nothing mounted under the temporary dir');
  t.notOk(fs.existsSync(base), 'temporary podman root removed');
  t.comment(`podman scenario took ${((Date.now() - started) / 1000).toFixed(1)} s (mount program ${mountProgram})`);
});
