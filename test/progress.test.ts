// Progress of build, image save and image load: the NDJSON progress protocol (daemon/api/progress.ts),
// the CLI renderer (cli/progress.ts), and end to end: plain step lines when not on a terminal, bars on
// one (the CLI run under a pseudo-terminal by util-linux `script`).
import t from 'tap';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import type * as http from 'node:http';
import * as path from 'node:path';
import { ProgressWriter } from '../daemon/api/progress';
import type { ProgressDetail, ProgressMessage } from '../daemon/model/progress';
import { countedTransfer, ProgressRenderer, progressLine } from '../cli/progress';
import { humanSize } from '../cli/format';
import { STRATA, startDaemon, type Daemon } from './lib/daemon';
import { hasCommand, run, type RunResult } from './lib/exec';
import { makeWorkspace } from './lib/workspace';
import { ok } from './lib/expect';
import { testEnv } from './lib/env';

const skip =
  process.geteuid?.() !== 0 ? 'needs root' : !fs.existsSync('/dev/fuse') ? 'no /dev/fuse' : !hasCommand('script') ? 'util-linux script is not installed' : false;

const ANSI_OR_CR = /[\r\x1b]/;

/** A fake response collecting NDJSON lines. */
function fakeRes(): { res: http.ServerResponse; lines: ProgressMessage<unknown>[] } {
  const lines: ProgressMessage<unknown>[] = [];
  const res = {
    writableEnded: false,
    destroyed: false,
    write(s: string) {
      for (const l of s.split('\n').filter(Boolean)) lines.push(JSON.parse(l) as ProgressMessage<unknown>);
      return true;
    },
  } as unknown as http.ServerResponse;
  return { res, lines };
}

t.test('ProgressWriter: step lines, throttled byte progress, one completion event', async (t) => {
  let now = 1000;
  const { res, lines } = fakeRes();
  const p = new ProgressWriter(res, () => now);
  p.step('Saving layer sha256:0123456789ab (1MB)');
  const c = p.bytes('sha256:0123456789ab', 'Saving', 1000);
  for (let i = 0; i < 99; i++) {
    c.add(10); // 99 chunks within 99 ms: throttled
    now += 1;
  }
  now += 200;
  c.add(5);
  c.add(5); // reaches the total: left to done()
  c.done();
  c.done();
  const progress = lines.filter((m): m is { progress: ProgressDetail } => 'progress' in m).map((m) => m.progress);
  t.same(lines[0], { stream: 'Saving layer sha256:0123456789ab (1MB)\n' }, 'step line gets its newline');
  t.ok(progress.length <= 4, `throttled: ${progress.length} progress events for 101 chunks`);
  t.same(progress[0], { id: 'sha256:0123456789ab', action: 'Saving', current: 0, total: 1000 }, 'a first event at 0');
  t.same(progress[progress.length - 1], { id: 'sha256:0123456789ab', action: 'Saving', current: 1000, total: 1000 }, 'one completion event');
  t.equal(progress.filter((x) => x.current === 1000).length, 1, 'completion sent once');

  const u = p.bytes('Step 2/2', 'Committing', null);
  u.add(123);
  u.done();
  const last = lines[lines.length - 1] as { progress: { current: number; total: number | null } };
  t.same(last.progress, { id: 'Step 2/2', action: 'Committing', current: 123, total: 123 }, 'unknown total: completion carries total = current');
});

t.test('ProgressRenderer: bars only on a terminal', async (t) => {
  const sink = () => {
    const o = { text: '', write: (s: string) => ((o.text += s), true) };
    return o;
  };
  const out1 = sink();
  const err1 = sink();
  const plain = new ProgressRenderer(out1, err1, false);
  plain.text('Loading layer sha256:0123456789ab (2MB)\n');
  plain.progress({ id: 'sha256:0123456789ab', action: 'Loading', current: 10, total: 100 });
  plain.progress({ id: 'sha256:0123456789ab', action: 'Loading', current: 100, total: 100 });
  plain.finish();
  t.equal(out1.text, 'Loading layer sha256:0123456789ab (2MB)\n', 'not a terminal: the step line only');
  t.equal(err1.text, '', 'not a terminal: nothing on stderr');

  const out2 = sink();
  const err2 = sink();
  const tty = new ProgressRenderer(out2, err2, true);
  tty.text('Loading layer sha256:0123456789ab (2MB)\n');
  tty.progress({ id: 'sha256:0123456789ab', action: 'Loading', current: 0, total: 2_000_000 });
  tty.progress({ id: 'sha256:0123456789ab', action: 'Loading', current: 1_000_000, total: 2_000_000 });
  tty.progress({ id: 'sha256:0123456789ab', action: 'Loading', current: 2_000_000, total: 2_000_000 });
  tty.finish();
  t.match(err2.text, /\r\x1b\[2Ksha256:0123456789ab  Loading \[=+>\s+\]  1MB\/2MB\n/, 'a bar drawn in place');
  t.match(err2.text, /\x1b\[1A\r\x1b\[2K/, 'redrawn with cursor-up and erase-line');
  t.match(err2.text, /sha256:0123456789ab  Loading \[={30}\]  2MB\/2MB\n$/, 'a finished bar stays as a line');
  t.equal(progressLine({ id: 'Step 2/2', action: 'Committing', current: 1500, total: null }), 'Step 2/2  Committing  1.5kB', 'unknown total: no bar');

  // The rate: bytes since a bar's first event over the time since then (none before 200 ms).
  let now = 0;
  const err3 = sink();
  const timed = new ProgressRenderer(sink(), err3, true, () => now);
  timed.progress({ id: 'x', action: 'Importing', current: 0, total: 8_000_000 });
  t.notMatch(err3.text, /\/s/, 'no rate at the start');
  now = 1000;
  timed.progress({ id: 'x', action: 'Importing', current: 2_000_000, total: 8_000_000 });
  t.match(err3.text, /x  Importing \[=+>\s+\]  2MB\/8MB  2MB\/s\n$/, 'bytes done/total and the rate');
  now = 2000;
  timed.progress({ id: 'x', action: 'Importing', current: 8_000_000, total: 8_000_000 });
  t.match(err3.text, /x  Importing \[={30}\]  8MB\/8MB  4MB\/s\n$/, 'the finished line keeps the average rate');
});

t.test('countedTransfer: the CLI-counted bytes of import and export, drawn only on a terminal', async (t) => {
  const sink = () => {
    const o = { text: '', write: (s: string) => ((o.text += s), true) };
    return o;
  };
  const err = sink();
  const bar = countedTransfer('rootfs.tar', 'Importing', 3000, new ProgressRenderer(sink(), err, true));
  bar.add(1000);
  bar.add(2000);
  bar.done();
  t.match(err.text, /^\r\x1b\[2Krootfs.tar  Importing \[>\s+\]  0B\/3kB\n/, 'a bar at 0 right away');
  t.match(err.text, /rootfs.tar  Importing \[={30}\]  3kB\/3kB\n$/, 'the completion line');
  const plainErr = sink();
  const plain = countedTransfer('c1', 'Exporting', null, new ProgressRenderer(sink(), plainErr, false));
  plain.add(5);
  plain.done();
  t.equal(plainErr.text, '', 'not a terminal: nothing');
  const failedErr = sink();
  const failed = countedTransfer('c1', 'Exporting', null, new ProgressRenderer(sink(), failedErr, true));
  failed.add(5);
  failed.done(false);
  t.notMatch(failedErr.text, /5B\n$/, 'a failed transfer leaves no completion line');
});

function sq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The CLI under a pseudo-terminal: stdout and stderr both land in the captured output. */
function cliTty(d: Daemon, args: string[]): RunResult {
  const cmd = ['env', '-i', ...Object.entries(testEnv({ LC_ALL: 'C', TERM: 'xterm' })).map(([k, v]) => `${k}=${v}`), STRATA(), '--socket', d.socket, ...args];
  return run('script', ['-qec', cmd.map(sq).join(' '), '/dev/null'], { timeout: 120_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TERM: 'xterm' } });
}

/** A rootfs with a 3 MB file, imported as img:1. */
function makeImage(d: Daemon, ws: string): void {
  const dir = path.join(ws, 'rootfs');
  fs.mkdirSync(path.join(dir, 'data'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'data/big.bin'), randomBytes(3_000_000));
  fs.writeFileSync(path.join(dir, 'hello.txt'), 'hello\n');
  const r = d.cli(['image', 'import', dir, 'img:1']);
  if (r.status !== 0) throw new Error(`import: ${r.stderr}`);
}

t.test('image save / load: step lines always, bars only on a terminal', { skip }, async (t) => {
  t.setTimeout(240_000);
  const d = await startDaemon(t, { label: 'progress-io' });
  const ws = makeWorkspace(t, 'progress-io');
  makeImage(d, ws);

  // not a terminal
  const tar = path.join(ws, 'img.tar');
  const save = d.cli(['image', 'save', '-o', tar, 'img:1']);
  t.equal(save.status, 0, `save exits 0 ${save.stderr}`);
  t.match(save.stdout, /^Saving layer sha256:[0-9a-f]{12} \(3(\.\d+)?MB\)$/m, 'save: step line per layer');
  t.match(save.stdout, /^Saving config sha256:[0-9a-f]{12}$/m, 'save: config step');
  t.match(save.stdout, /^Saved img:1 to .*img\.tar \(oci-archive, 3\.\d+MB\)$/m, 'save: the summary');
  t.notMatch(save.stdout + save.stderr, ANSI_OR_CR, 'save: no \\r or escape sequences when not on a terminal');
  t.equal(d.cli(['rmi', 'img:1']).status, 0, 'rmi');
  const load = d.cli(['image', 'load', '-i', tar]);
  t.equal(load.status, 0, `load exits 0 ${load.stderr}`);
  t.match(load.stdout, /^Loading layer sha256:[0-9a-f]{12} \(3\.\d+MB\)$/m, 'load: step line per layer');
  t.match(load.stdout, /^Loaded image: img:1$/m, 'load: the summary');
  t.notMatch(load.stdout + load.stderr, ANSI_OR_CR, 'load: no \\r or escape sequences when not on a terminal');

  // a terminal
  const tar2 = path.join(ws, 'img2.tar');
  const tsave = cliTty(d, ['image', 'save', '-o', tar2, 'img:1']);
  t.equal(tsave.status, 0, `save on a tty exits 0 ${tsave.stdout}`);
  t.match(tsave.stdout, /Saving layer sha256:[0-9a-f]{12} \(3(\.\d+)?MB\)/, 'tty save: step line');
  t.match(tsave.stdout, /\x1b\[2Ksha256:[0-9a-f]{12}  Saving \[=+[> ]*\]  [\d.]+[kM]?B\/3\.\d+MB/, 'tty save: a progress bar');
  t.match(tsave.stdout, /Saved img:1 to /, 'tty save: the summary');
  t.equal(fs.readFileSync(tar2).equals(fs.readFileSync(tar)), true, 'same archive either way');
  t.equal(d.cli(['rmi', 'img:1']).status, 0, 'rmi');
  const tload = cliTty(d, ['load', '-i', tar2]);
  t.equal(tload.status, 0, `load on a tty exits 0 ${tload.stdout}`);
  t.match(tload.stdout, /Loading layer sha256:[0-9a-f]{12}/, 'tty load: step line');
  t.match(tload.stdout, /\r\x1b\[2Ksha256:[0-9a-f]{12}  Loading \[=+[> ]*\]/, 'tty load: a progress bar');
  t.match(tload.stdout, /Loaded image: img:1/, 'tty load: the summary');

  // errors: one line, non-zero exit, on a terminal or not
  const bad = d.cli(['load', '-i', path.join(ws, 'nope.tar')]);
  t.not(bad.status, 0, 'load of a missing file fails');
  t.equal(bad.stderr, `Error: ${path.join(ws, 'nope.tar')} does not exist\n`, 'one Error: line');
  const tbad = cliTty(d, ['save', '-o', path.join(ws, 'x.tar'), 'nosuch:1']);
  t.not(tbad.status, 0, 'save of an unknown image fails on a tty');
  t.match(tbad.stdout, /^Error: .*no such image/m, 'tty: one Error: line');
});

t.test('import, export, commit: byte progress on a terminal, nothing otherwise', { skip }, async (t) => {
  t.setTimeout(240_000);
  const d = await startDaemon(t, { label: 'progress-xfer' });
  const ws = makeWorkspace(t, 'progress-xfer');
  const dir = path.join(ws, 'rootfs');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'big.bin'), randomBytes(8_000_000));
  const tar = path.join(ws, 'rootfs.tar');
  run('tar', ['-C', dir, '-cf', tar, '.']);
  const tarSize = fs.statSync(tar).size;

  // not a terminal: the usual output only
  const plain = d.cli(['image', 'import', tar, 'x:1']);
  t.equal(plain.status, 0, `import exits 0 ${plain.stderr}`);
  t.equal(plain.stderr, '', 'import: nothing on stderr');
  const piped = run('env', ['-i', 'PATH=/usr/bin:/bin', 'sh', '-c', `${sq(STRATA())} --socket ${sq(d.socket)} image import - x:0 < ${sq(tar)}`]);
  t.equal(piped.status, 0, `import - reads standard input ${piped.stderr}`);
  const rootfs = (ref: string) => ok(t, d.cli(['image', 'inspect', '-f', '{{json .RootFS}}', ref]), `inspect ${ref}`);
  t.equal(rootfs('x:0'), rootfs('x:1'), 'the same layer from standard input');
  ok(t, d.cli(['container', 'create', '--name', 'c', 'x:1']), 'create');
  const mnt = ok(t, d.cli(['container', 'mount', 'c']), 'mount');
  fs.writeFileSync(path.join(mnt, 'more.bin'), randomBytes(5_000_000));
  const commit = d.cli(['commit', 'c', 'x:2']);
  t.equal(commit.status, 0, `commit exits 0 ${commit.stderr}`);
  t.match(commit.stdout, /^sha256:[0-9a-f]{64}\n$/, 'commit: the id only');
  t.equal(commit.stderr, '');
  const exp = d.cli(['export', '-o', path.join(ws, 'c.tar'), 'c']);
  t.equal(exp.status, 0, `export exits 0 ${exp.stderr}`);
  t.equal(exp.stderr, '', 'export: nothing on stderr');
  t.notMatch(plain.stdout + commit.stdout + exp.stdout, ANSI_OR_CR, 'no \\r or escape sequences when not on a terminal');

  // a terminal: one line per transfer, redrawn in place, ending with the totals
  const timp = cliTty(d, ['image', 'import', tar, 'x:3']);
  t.equal(timp.status, 0, `import on a tty exits 0 ${timp.stdout}`);
  const total = humanSize(tarSize).replace('.', '\\.');
  t.match(timp.stdout, new RegExp(`\\r\\x1b\\[2Krootfs\\.tar  Importing \\[={30}\\]  ${total}/${total}`), 'tty import: bytes sent of the file size');
  t.match(timp.stdout, /sha256:[0-9a-f]{64}/, 'tty import: the id');
  const tcommit = cliTty(d, ['commit', 'c', 'x:4']);
  t.equal(tcommit.status, 0, `commit on a tty exits 0 ${tcommit.stdout}`);
  t.match(tcommit.stdout, /\x1b\[2K[0-9a-f]{12}  Committing \[={30}\]  5(\.\d+)?MB\/5(\.\d+)?MB/, 'tty commit: the bytes of the new layer');
  const texp = cliTty(d, ['export', '-o', path.join(ws, 'c2.tar'), 'c']);
  t.equal(texp.status, 0, `export on a tty exits 0 ${texp.stdout}`);
  t.match(texp.stdout, /\x1b\[2Kc  Exporting \[={30}\]  13(\.\d+)?MB\/13(\.\d+)?MB/, 'tty export: the bytes received');
  t.match(texp.stdout, /Exported c to /, 'tty export: the summary');
  t.equal(fs.readFileSync(path.join(ws, 'c2.tar')).equals(fs.readFileSync(path.join(ws, 'c.tar'))), true, 'the same archive either way');
  const tbad = cliTty(d, ['commit', 'nosuch', 'x:5']);
  t.equal(tbad.status, 1, 'commit of an unknown container fails on a tty');
  t.match(tbad.stdout, /^Error: no such container: nosuch/m, 'tty: one Error: line');
  ok(t, d.cli(['container', 'unmount', 'c']), 'unmount');
});

t.test('build: byte progress of COPY and of the layer commit', { skip }, async (t) => {
  t.setTimeout(240_000);
  const d = await startDaemon(t, { label: 'progress-build' });
  const ctx = path.join(makeWorkspace(t, 'progress-build'), 'ctx');
  fs.mkdirSync(ctx, { recursive: true });
  fs.writeFileSync(path.join(ctx, 'big.bin'), randomBytes(2_000_000));
  fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM scratch\nCOPY big.bin /big.bin\n');

  const plain = d.cli(['build', '-t', 'p:1', ctx], { timeout: 120_000 });
  t.equal(plain.status, 0, `build exits 0 ${plain.stderr}`);
  t.match(plain.stdout, /^Step 2\/2 : COPY big.bin \/big.bin$/m, 'step lines');
  t.match(plain.stdout, /^Successfully tagged p:1$/m, 'summary');
  t.notMatch(plain.stdout + plain.stderr, ANSI_OR_CR, 'no \\r or escape sequences when not on a terminal');

  const tty = cliTty(d, ['build', '--no-cache', '-t', 'p:2', ctx]);
  t.equal(tty.status, 0, `build on a tty exits 0 ${tty.stdout}`);
  t.match(tty.stdout, /Step 2\/2 : COPY big.bin \/big.bin/, 'tty: step lines');
  t.match(tty.stdout, /\x1b\[2KStep 2\/2  Copying \[={30}\]  2MB\/2MB/, 'tty: COPY progress bar to the sources size');
  t.match(tty.stdout, /\x1b\[2KStep 2\/2  Committing/, 'tty: layer commit progress');
  t.match(tty.stdout, /Successfully tagged p:2/, 'tty: summary');

  const q = d.cli(['build', '-q', '-t', 'p:3', ctx], { timeout: 120_000 });
  t.match(q.stdout, /^sha256:[0-9a-f]{64}\n$/, '-q prints only the id');
});
