// The CLI's fast path (cli/fast.ts: the commonest commands parsed without yargs) against a real
// daemon: it takes the command lines it should, declines the rest, and prints exactly what the
// yargs path prints (STRATA_CLI_NO_FAST=1) — output, errors and exit codes.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { match } from '../cli/fast';
import { startDaemon } from './lib/daemon';
import { run } from './lib/exec';
import { ok } from './lib/expect';
import { makeWorkspace } from './lib/workspace';

t.test('which command lines the fast path takes, and their argv', async (t) => {
  const ps = match(['--socket', '/s', 'ps', '-aq', '--format={{.ID}}']);
  t.ok(ps, 'ps with flags');
  t.match(ps?.argv, { socket: '/s', all: true, a: true, quiet: true, q: true, format: '{{.ID}}', noTrunc: false, 'no-trunc': false, _: ['ps'] });
  t.match(match(['container', 'list', '--no-trunc'])?.argv, { noTrunc: true, all: false, format: 'table' });
  t.match(match(['image', 'inspect', '-f', '{{.Id}}', 'a', 'b'])?.argv, { format: '{{.Id}}', images: ['a', 'b'] });
  t.match(match(['history', 'x:1', '--format', 'json'])?.argv, { image: 'x:1', format: 'json' });
  t.match(match(['volume', 'ls', '--'])?.argv, { quiet: false });
  for (const declined of [
    ['ps', '--help'],
    ['ps', '-h'],
    ['ps', '--bogus'],
    ['ps', '-ax'],
    ['ps', 'extra'],
    ['ps', '--format'],
    ['ps', '-q', '-q'],
    ['ps', '--all=maybe'],
    ['history', '-'],
    ['container', 'inspect'],
    ['container', 'create', 'img'],
    ['image', 'import', 'dir', 'x:1'],
    ['volume', 'create'],
    ['run', 'x', 'true'],
    ['--version', 'ps'],
    [],
  ]) {
    t.equal(match(declined), undefined, `declines ${declined.join(' ') || '(nothing)'}`);
  }
});

t.test('the fast path prints what yargs prints', async (t) => {
  const d = await startDaemon(t, { label: 'cli-fast' });
  const rootfs = path.join(d.ws, 'rootfs');
  fs.mkdirSync(path.join(rootfs, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(rootfs, 'etc', 'motd'), 'hi\n');
  ok(t, d.cli(['image', 'import', rootfs, 'fast:1']), 'import');
  ok(t, d.cli(['container', 'create', '--name', 'one', 'fast:1']), 'create one');
  ok(t, d.cli(['container', 'create', '--name', 'two', 'fast:1']), 'create two');
  ok(t, d.cli(['container', 'mount', 'one']), 'mount one');
  ok(t, d.cli(['volume', 'create', '--label', 'a=b', 'vol1']), 'volume create');
  // Relative times may tick between the two runs (and change a table column's width).
  const steady = (s: string) => s.replace(/(Less than a second|About an? \w+|\d+ \w+) ago/g, 'N ago').replace(/ {3,}/g, '   ');
  const lines = [
    ['ps'],
    ['ps', '-a'],
    ['ps', '-aq'],
    ['ps', '-a', '--no-trunc'],
    ['ps', '--all', '--format', 'json'],
    ['ps', '-a', '--format={{.Names}} {{.Status}}'],
    ['ps', '-a', '--format', 'table {{.ID}}\\t{{.Names}}'],
    ['ps', '--format', '{{bogus .ID}}'],
    ['container', 'ls', '-a'],
    ['container', 'list', '-q', '--no-trunc'],
    ['images'],
    ['images', '-q', '--no-trunc'],
    ['image', 'ls', '--format', 'json'],
    ['history', 'fast:1'],
    ['image', 'history', '--no-trunc', 'fast:1', '--format', '{{.Comment}}'],
    ['history', 'missing:1'],
    ['volume', 'ls'],
    ['volume', 'list', '-q'],
    ['volume', 'ls', '--format', 'json'],
    ['container', 'inspect', 'one', 'two'],
    ['container', 'inspect', 'one', 'nosuch'],
    ['image', 'inspect', '-f', '{{json .RepoTags}}', 'fast:1'],
    ['volume', 'inspect', 'vol1'],
    ['volume', 'inspect', '--format', '{{.Labels}}', 'vol1'],
    ['ps', '--bogus'],
    ['container', 'inspect'],
  ];
  for (const args of lines) {
    const fast = d.cli(args);
    const slow = d.cli(args, { env: { STRATA_CLI_NO_FAST: '1' } });
    const what = `strata ${args.join(' ')}`;
    t.equal(fast.status, slow.status, `${what}: the same exit status (${slow.status})`);
    t.equal(steady(fast.stdout), steady(slow.stdout), `${what}: the same output`);
    t.equal(fast.stderr, slow.stderr, `${what}: the same errors`);
  }
});

t.test("bin/strata's code cache: never another build's code, even of the same length", async (t) => {
  // V8 checks a code cache against its source's length only. A tree with bin/strata and two bundles
  // whose run() print what they are; the fast one is rebuilt with the same length and an older mtime
  // than its cache (a CLI still running the old build wrote the cache after the rebuild).
  const root = makeWorkspace(t, 'cli-cache');
  fs.mkdirSync(path.join(root, 'bin'));
  fs.mkdirSync(path.join(root, 'dist', 'cli'), { recursive: true });
  fs.copyFileSync(path.join(__dirname, '..', '..', 'bin', 'strata'), path.join(root, 'bin', 'strata'));
  const fast = path.join(root, 'dist', 'cli', 'strata-fast.js');
  const bundle = (word: string) => `exports.run = () => { process.stdout.write(${JSON.stringify(word)} + "\\n"); return true; };\n`;
  fs.writeFileSync(path.join(root, 'dist', 'cli', 'strata.js'), 'exports.run = () => {};\n');
  fs.writeFileSync(fast, bundle('old'));
  const strata = () => run(process.execPath, [path.join(root, 'bin', 'strata'), 'ps']);
  t.equal(strata().stdout, 'old\n', 'the first build runs');
  t.ok(fs.existsSync(fast + '.cache'), 'and leaves its code cache');
  t.equal(strata().stdout, 'old\n', 'from its cache');
  const cacheTime = fs.statSync(fast + '.cache').mtime;
  fs.writeFileSync(fast, bundle('new'));
  fs.utimesSync(fast, cacheTime, new Date(cacheTime.getTime() - 1000));
  t.equal(strata().stdout, 'new\n', 'the rebuilt bundle runs, not the cached code of the old one');
  t.equal(strata().stdout, 'new\n', 'and again, from its own cache');
});
