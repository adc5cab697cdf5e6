// Scale: 200 containers created and mounted in one daemon, all served by its fixed pool of
// FUSE threads: each answers `cat` and `ls`, the daemon's thread count does not grow with
// mounts, and SIGTERM still unmounts them all.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runAsync, runOk } from './lib/exec';
import { startDaemon, type Daemon } from './lib/daemon';
import { ok } from './lib/expect';
import { rawRequest } from './lib/http';
import { missingCapability } from './lib/mount-union';
import { listMounts } from './lib/mount-table';

const skip = missingCapability({ fuse: true });
const MOUNTS = 200;
const FUSE_THREADS = 2;
const MOTD = 'scale test\n';

function threadsOf(pid: number): number {
  const m = /^Threads:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1]);
}

async function api(d: Daemon, method: string, p: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await rawRequest(d.socket, {
    method,
    path: p,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    timeoutMs: 60_000,
  });
  return { status: r.status, json: r.body ? (JSON.parse(r.body) as Record<string, unknown>) : {} };
}

/** Creates and mounts container `i`; its mountpoint. */
async function createAndMount(d: Daemon, i: number): Promise<string> {
  const c = await api(d, 'POST', '/containers/create', { image: 'base:1', name: `s${i}` });
  if (c.status !== 201 && c.status !== 200) throw new Error(`create s${i}: ${c.status} ${JSON.stringify(c.json)}`);
  const m = await api(d, 'POST', `/containers/s${i}/mount`, {});
  if (m.status !== 200) throw new Error(`mount s${i}: ${m.status} ${JSON.stringify(m.json)}`);
  return m.json.mountpoint as string;
}

/** Runs `fn` over 0..n-1, `width` at a time, in order of completion. */
async function pooled<T>(n: number, width: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array<T>(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}

t.test(`${MOUNTS} mounted containers on ${FUSE_THREADS} FUSE threads`, { skip: skip ?? false, timeout: 300_000 }, async (t) => {
  const d = await startDaemon(t, { label: 'scale', extraArgs: ['--fuse-threads', String(FUSE_THREADS)] });
  const rootfs = path.join(d.ws, 'rootfs');
  fs.mkdirSync(path.join(rootfs, 'etc'), { recursive: true });
  fs.mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
  fs.writeFileSync(path.join(rootfs, 'etc', 'motd'), MOTD);
  for (const f of ['sh', 'ls', 'cat']) fs.writeFileSync(path.join(rootfs, 'bin', f), `#!/bin/sh\n# ${f}\n`, { mode: 0o755 });
  const tar = path.join(d.ws, 'base.tar');
  runOk('tar', ['--numeric-owner', '-C', rootfs, '-cf', tar, '.']);
  ok(t, d.cli(['image', 'import', tar, 'base:1']), 'image import');

  const threadsIdle = threadsOf(d.pid);
  const t0 = Date.now();
  const first = await pooled(FUSE_THREADS * 2, 4, (i) => createAndMount(d, i));
  const threadsFew = threadsOf(d.pid);
  const rest = await pooled(MOUNTS - first.length, 4, (i) => createAndMount(d, first.length + i));
  const mounts = [...first, ...rest];
  const mountSecs = (Date.now() - t0) / 1000;
  const threadsAll = threadsOf(d.pid);
  t.comment(`${MOUNTS} created and mounted in ${mountSecs.toFixed(1)} s; daemon threads: ${threadsIdle} idle, ${threadsFew} with ${first.length} mounts, ${threadsAll} with ${MOUNTS}`);

  const live = new Set(listMounts().map((m) => m.mountPoint));
  t.equal(mounts.filter((m) => live.has(m)).length, MOUNTS, `all ${MOUNTS} mountpoints are mounted`);
  t.ok(threadsFew <= threadsIdle + FUSE_THREADS, `the first mounts add at most the ${FUSE_THREADS} engine threads (${threadsIdle} -> ${threadsFew})`);
  t.equal(threadsAll, threadsFew, `threads do not grow from ${first.length} to ${MOUNTS} mounts`);

  // Every mount answers cat and ls (a few at a time, as separate processes).
  const answers = await pooled(MOUNTS, 8, (i) => runAsync('sh', ['-c', 'cat "$1/etc/motd" && ls "$1/bin"', 'sh', mounts[i]!], { timeout: 30_000 }));
  const wrong = answers.map((r, i) => ({ r, i })).filter(({ r }) => r.status !== 0 || r.stdout !== `${MOTD}cat\nls\nsh\n`);
  t.same(
    wrong.slice(0, 3).map(({ r, i }) => ({ mount: i, status: r.status, stdout: r.stdout, stderr: r.stderr })),
    [],
    `every mount answers cat and ls (${MOUNTS - wrong.length}/${MOUNTS})`,
  );
  t.equal(threadsOf(d.pid), threadsAll, 'serving them all adds no thread');

  // Writes land in each container's own upper.
  fs.writeFileSync(path.join(mounts[MOUNTS - 1]!, 'etc', 'own'), 'mine\n');
  t.notOk(fs.existsSync(path.join(mounts[0]!, 'etc', 'own')), 'a write in one mount is not seen in another');

  const stop = await d.kill('SIGTERM', 15_000);
  t.equal(stop.code, 0, 'SIGTERM with every mount served: exit 0');
  const left = listMounts().filter((m) => m.mountPoint.startsWith(d.root + '/'));
  t.same(left.map((m) => m.mountPoint), [], 'no mount left under the root');
});
