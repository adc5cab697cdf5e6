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
import { ProgressRenderer, progressLine } from '../cli/progress';
import { STRATA, startDaemon, type Daemon } from './lib/daemon';
import { hasCommand, run, type RunResult } from './lib/exec';
import { makeWorkspace } from './lib/workspace';
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
