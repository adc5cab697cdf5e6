// The failover journal (daemon/fuse/journal.ts) under a cold walk: what a READDIRPLUS hands out
// is written with one write(2) per request, not one or two per entry (counted with strace on
// stratad), and a SIGKILL in the middle of a walk loses none of the nodes the kernel was given.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import type { Daemon } from './lib/daemon';
import { ok } from './lib/expect';
import { testEnv } from './lib/env';
import { daemonWithContainers } from './lib/failover';
import { missingCapability } from './lib/mount-union';
import { Journal } from '../daemon/fuse/journal';
import type { ContainerInspect } from '../daemon/model/types';

const skip = missingCapability({ fuse: true }) ?? (spawnSync('strace', ['-V']).status === 0 ? undefined : 'strace is not installed');
const opts = { skip: skip ?? false, timeout: 120_000 };
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

const FLAT = 1000; // flat/f0000..: one directory of 1,000 files
const DIRS = 50; // tree/d00..d49, 20 files each
const PER_DIR = 20;
const flatName = (i: number) => `f${String(i).padStart(4, '0')}`;

function populate(rootfs: string): void {
  fs.mkdirSync(path.join(rootfs, 'flat'));
  for (let i = 0; i < FLAT; i++) fs.writeFileSync(path.join(rootfs, 'flat', flatName(i)), `${i}\n`);
  for (let d = 0; d < DIRS; d++) {
    const dir = path.join(rootfs, 'tree', `d${String(d).padStart(2, '0')}`);
    fs.mkdirSync(dir, { recursive: true });
    for (let f = 0; f < PER_DIR; f++) fs.writeFileSync(path.join(dir, `f${f}`), `${d}/${f}\n`);
  }
}

function journalOf(t: Test, d: Daemon, name: string): string {
  const id = (JSON.parse(ok(t, d.cli(['container', 'inspect', name]), 'inspect')) as ContainerInspect[])[0].Id;
  return path.join(d.root, 'run', 'journals', id);
}

/** The paths (from the root) of the nodes a journal holds. */
function journaledPaths(file: string): Set<string> {
  const nodes = Journal.read(file).nodes;
  const pathOf = (id: number): string | null => {
    const n = nodes.get(id);
    if (n === undefined) return null;
    if (n.parent === 1) return n.name;
    const up = pathOf(n.parent);
    return up === null ? null : `${up}/${n.name}`;
  };
  return new Set([...nodes.keys()].map(pathOf).filter((p): p is string => p !== null));
}

/**
 * What stratad does while `work` runs: write(2) calls on the journal file, requests read from
 * /dev/fuse (FORGETs included: a cache drop elsewhere on the host brings them, and they are
 * journaled too), and replies written to it.
 */
async function countSyscalls(d: Daemon, mnt: string, journal: string, work: () => void): Promise<{ journal: number; requests: number; replies: number }> {
  const out = path.join(d.ws, 'strace.out');
  const tracer = spawn('strace', ['-f', '-qq', '-y', '-e', 'trace=read,write,pwrite64,writev', '-o', out, '-p', String(d.pid)], { stdio: 'ignore' });
  const exited = new Promise((r) => tracer.once('exit', r));
  try {
    // Attached once a request of ours shows: a lookup of a new name each time (a negative entry is cached).
    for (let i = 0; !(fs.existsSync(out) && fs.readFileSync(out, 'utf8').includes('/dev/fuse')); i++) {
      if (i > 200) throw new Error('strace did not attach to stratad');
      fs.existsSync(path.join(mnt, `.probe-${i}`));
      await delay(50);
    }
    const before = fs.readFileSync(out, 'utf8').length;
    work();
    await delay(300);
    const lines = fs.readFileSync(out, 'utf8').slice(before).split('\n');
    // Calls that did something (`= n`, n > 0), on a file named in the trace line (strace -y).
    const count = (calls: RegExp, fd: string) => lines.filter((l) => calls.test(l) && l.includes(`${fd}>`) && / = [1-9]\d*$/.test(l)).length;
    const writes = /\b(write|pwrite64|writev)\(\d+</;
    return { journal: count(writes, journal), requests: count(/\bread\(\d+</, '/dev/fuse'), replies: count(writes, '/dev/fuse') };
  } finally {
    tracer.kill('SIGTERM'); // strace detaches and exits
    await exited;
  }
}

t.test('a cold READDIRPLUS walk writes the journal once per request; a kill mid-walk loses no node handed out', opts, async (t) => {
  const { d, mnts } = await daemonWithContainers(t, 'fo-walk', [], populate);

  // 1. One directory of 1,000 files, read cold (READDIRPLUS hands out every entry) and stat-ed.
  const counted = await countSyscalls(d, mnts[0], journalOf(t, d, 'w0'), () => {
    const names = fs.readdirSync(path.join(mnts[0], 'flat'));
    for (const n of names) fs.statSync(path.join(mnts[0], 'flat', n));
    t.equal(names.length, FLAT, 'the walk saw every entry');
  });
  t.comment(`cold walk of ${FLAT} entries: ${counted.requests} requests, ${counted.replies} replies, ${counted.journal} journal writes`);
  t.ok(counted.replies > 0 && counted.replies < FLAT / 4, `READDIRPLUS replies carry many entries each (${counted.replies} replies)`);
  t.ok(counted.journal > 0 && counted.journal <= counted.requests, `at most one journal write per request (${counted.journal} for ${counted.requests} requests), not one per entry`);

  // 2. A walker reading a cold tree of 50 directories and opening every file (held open, so a cache
  // drop elsewhere on the host cannot make the kernel forget them), stratad killed part way through.
  const m = mnts[1];
  const journal = journalOf(t, d, 'w1');
  const walker = spawn(
    process.execPath,
    [
      '-e',
      `const fs = require('fs'), path = require('path');
       const errors = [], held = [];
       for (let d = 0; d < ${DIRS}; d++) {
         const dir = path.join(process.argv[1], 'tree', 'd' + String(d).padStart(2, '0'));
         try {
           for (const n of fs.readdirSync(dir)) {
             fs.statSync(path.join(dir, n));
             held.push([d + '/' + n, fs.openSync(path.join(dir, n), 'r')]);
           }
         } catch (err) { errors.push(String(err)); }
         process.stdout.write('done ' + d + '\\n');
         Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
       }
       // Read through the handles: the kernel's nodeids and file handles, served by whoever serves now.
       for (const [name, fd] of held) {
         const [d, f] = name.split('/');
         try {
           if (fs.readFileSync(fd, 'utf8') !== d + '/' + f.slice(1) + '\\n') errors.push(name + ': wrong content');
           fs.fstatSync(fd);
         } catch (err) { errors.push(name + ': ' + String(err)); }
       }
       process.stdout.write(JSON.stringify({ errors, held: held.length }) + '\\n');
       process.stdin.on('end', () => process.exit(0)).resume(); // the handles stay open until the test is done`,
      m,
    ],
    { stdio: ['pipe', 'pipe', 'pipe'], env: testEnv({}, { coverage: false }) },
  );
  t.teardown(() => {
    if (walker.exitCode === null) walker.kill('SIGKILL');
  });
  let out = '';
  walker.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  const reported = async () => {
    while (!out.includes('{') && walker.exitCode === null) await delay(20);
    return JSON.parse(out.slice(out.indexOf('{')).split('\n')[0]) as { errors: string[]; held: number };
  };
  const killAfter = 5 + Math.floor(Math.random() * 30);
  while (!out.includes(`done ${killAfter}\n`) && walker.exitCode === null) await delay(5);
  const walkedBeforeKill = out.split('\n').filter((l) => l.startsWith('done ')).length;
  await d.kill('SIGKILL');
  await d.restart();
  const report = await reported();
  t.same(report.errors, [], `the walker saw no error, and read every file through its handle after the takeover (stratad killed after ${walkedBeforeKill} of ${DIRS} directories)`);
  t.equal(report.held, DIRS * PER_DIR, 'every file opened');

  // Every node the kernel was given before the kill (still held) is in the journal the new stratad took over.
  const journaled = journaledPaths(journal);
  const missing: string[] = [];
  for (let dn = 0; dn < walkedBeforeKill; dn++) {
    for (let f = 0; f < PER_DIR; f++) {
      const rel = `tree/d${String(dn).padStart(2, '0')}/f${f}`;
      if (!journaled.has(rel)) missing.push(rel);
    }
  }
  t.same(missing, [], `the ${walkedBeforeKill * PER_DIR} entries handed out before the kill are journaled`);
  walker.stdin!.end();
  await new Promise((r) => (walker.exitCode === null ? walker.once('close', r) : r(null)));
});
