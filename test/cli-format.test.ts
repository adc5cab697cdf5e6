// The strata CLI: table/size/time formatting, --mount parsing and error exits without a daemon;
// its outputs against a real daemon, and what it says when the socket answers wrongly or not at all.
import t from 'tap';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFile, execFileSync } from 'node:child_process';
import { ago, ellipsis, humanDuration, humanSize, parseKeyValues, parseMount, shortId, splitRef, table, UsageError } from '../cli/format';
import { imageRows, historyRows } from '../cli/commands/images';
import { containerRows } from '../cli/commands/containers';
import { pruneReport } from '../cli/commands/volumes';
import { dfSummary, infoText } from '../cli/commands/system';
import type { SystemDf } from '../daemon/model/types';
import { testEnv } from './lib/env';
import { startDaemon } from './lib/daemon';
import { ok } from './lib/expect';

const ROOT = path.resolve(__dirname, '..', '..');
const MAIN = path.join(ROOT, 'dist', 'cli', 'main.js');
const HEX = 'ab'.repeat(32);

t.test('table: columns sized by content, 3 spaces apart, no trailing blanks', async (t) => {
  const out = table(
    ['REPOSITORY', 'TAG', 'IMAGE ID'],
    [
      ['alpine', 'latest', '0123456789ab'],
      ['registry:5000/x', '', 'cafe'],
    ],
  );
  t.equal(
    out,
    ['REPOSITORY        TAG      IMAGE ID', 'alpine            latest   0123456789ab', 'registry:5000/x            cafe'].join('\n'),
  );
  t.equal(table(['A', 'B'], []), 'A   B', 'header only');
  t.equal(table(['X', 'Y'], [['…é', 'z']]), 'X    Y\n…é   z', 'widths count characters, not bytes');
});

t.test('humanSize: decimal units, 3 significant digits like docker', async (t) => {
  const cases: [number, string][] = [
    [0, '0B'],
    [512, '512B'],
    [999, '999B'],
    [1000, '1kB'],
    [4100, '4.1kB'],
    [1234567, '1.23MB'],
    [999_999, '1MB'],
    [5_000_000_000, '5GB'],
    [1_500_000_000_000, '1.5TB'],
  ];
  for (const [n, s] of cases) t.equal(humanSize(n), s, `${n}`);
});

t.test('relative times like docker (go-units HumanDuration)', async (t) => {
  const s = 1000;
  const m = 60 * s;
  const h = 60 * m;
  const d = 24 * h;
  const cases: [number, string][] = [
    [-5 * s, 'Less than a second'],
    [500, 'Less than a second'],
    [1 * s, '1 second'],
    [42 * s, '42 seconds'],
    [61 * s, 'About a minute'],
    [5 * m, '5 minutes'],
    [59 * m, '59 minutes'],
    [70 * m, 'About an hour'],
    [3 * h, '3 hours'],
    [47 * h, '47 hours'],
    [3 * d, '3 days'],
    [20 * d, '2 weeks'],
    [90 * d, '3 months'],
    [800 * d, '2 years'],
  ];
  for (const [ms, want] of cases) t.equal(humanDuration(ms), want, `${ms}ms`);
  const now = Date.parse('2024-05-01T12:00:00Z');
  t.equal(ago('2024-05-01T11:55:00Z', now), '5 minutes ago');
  t.equal(ago('not a date', now), 'N/A');
});

t.test('ids, refs, ellipsis', async (t) => {
  t.equal(shortId(`sha256:${HEX}`), 'abababababab');
  t.equal(shortId(HEX), 'abababababab');
  t.equal(shortId('<missing>'), '<missing>');
  t.equal(shortId('alpine:3.19'), 'alpine:3.19');
  t.same(splitRef('alpine:3.19'), ['alpine', '3.19']);
  t.same(splitRef('alpine'), ['alpine', 'latest']);
  t.same(splitRef('localhost:5000/x/y:v1'), ['localhost:5000/x/y', 'v1']);
  t.same(splitRef('localhost:5000/x'), ['localhost:5000/x', 'latest']);
  const long = '/bin/sh -c #(nop) ADD file:0123456789abcdef0123456789abcdef in /';
  const cut = ellipsis(long, 45);
  t.equal([...cut].length, 45);
  t.ok(cut.endsWith('…'));
  t.equal(ellipsis('short', 45), 'short');
});

t.test('--mount parsing', async (t) => {
  t.same(parseMount('type=volume,source=data,target=/data'), { type: 'volume', source: 'data', target: '/data', readonly: false });
  t.same(parseMount('type=bind,src=/srv,dst=/srv,readonly'), { type: 'bind', source: '/srv', target: '/srv', readonly: true });
  t.same(parseMount('type=bind,source=/a,destination=/b,ro=true'), { type: 'bind', source: '/a', target: '/b', readonly: true });
  t.same(parseMount('type=volume,target=/cache,ro=false'), { type: 'volume', source: '', target: '/cache', readonly: false });
  t.same(parseMount('target=/x'), { type: 'volume', source: '', target: '/x', readonly: false }, 'type defaults to volume');
  const bad: [string, RegExp][] = [
    ['type=tmpfs,target=/x', /invalid type "tmpfs"/],
    ['type=volume,source=v', /missing field "target"/],
    ['type=volume,target=rel', /target "rel" must be an absolute path/],
    ['type=bind,target=/x', /missing field "source"/],
    ['type=bind,source=rel,target=/x', /bind source "rel"/],
    ['type=volume,target=/x,readonly=maybe', /invalid value for readonly: "maybe"/],
    ['type=volume,target=/x,bogus=1', /unknown field "bogus"/],
    ['type=volume,dst=', /field "dst" needs a value/],
  ];
  for (const [spec, re] of bad) {
    t.throws(() => parseMount(spec), re, spec);
    t.throws(() => parseMount(spec), UsageError);
  }
  t.same(parseKeyValues('label', ['a=1', 'b=x=y', 'c']), { a: '1', b: 'x=y', c: '' });
  t.throws(() => parseKeyValues('opt', ['=v']), /invalid --opt "=v"/);
});

t.test('listing rows', async (t) => {
  const now = Date.parse('2024-05-01T12:00:00Z');
  const created = '2024-05-01T10:00:00Z';
  t.same(
    imageRows(
      [
        { Id: `sha256:${HEX}`, RepoTags: ['alpine:latest', 'mine:v1'], Created: created, Size: 7_340_000 },
        { Id: `sha256:${'cd'.repeat(32)}`, RepoTags: [], Created: created, Size: 512 },
      ],
      false,
      now,
    ),
    [
      ['alpine', 'latest', 'abababababab', '2 hours ago', '7.34MB'],
      ['mine', 'v1', 'abababababab', '2 hours ago', '7.34MB'],
      ['<none>', '<none>', 'cdcdcdcdcdcd', '2 hours ago', '512B'],
    ],
  );
  const h = [{ Id: '<missing>', Created: created, CreatedBy: 'x'.repeat(60), Size: 4100, Comment: 'c', EmptyLayer: false }];
  t.equal(historyRows(h, false, now)[0][2], 'x'.repeat(44) + '…');
  t.equal(historyRows(h, true, now)[0][2], 'x'.repeat(60));
  t.same(
    containerRows(
      [
        { Id: HEX, Name: 'web', Image: 'alpine', ImageID: `sha256:${HEX}`, State: 'mounted', Mountpoint: '/m/x', Created: created, SizeRw: 0, StartedAt: null, FinishedAt: null, ExitCode: null },
        { Id: 'cd'.repeat(32), Name: 'db', Image: 'alpine', ImageID: `sha256:${HEX}`, State: 'created', Mountpoint: null, Created: created, SizeRw: 0, StartedAt: null, FinishedAt: null, ExitCode: null },
      ],
      false,
      now,
    ),
    [
      ['abababababab', 'alpine', '2 hours ago', 'Mounted', '/m/x', 'web'],
      ['cdcdcdcdcdcd', 'alpine', '2 hours ago', 'Created', '', 'db'],
    ],
  );
  t.equal(pruneReport(['a', 'b'], 2048), 'Deleted Volumes:\na\nb\n\nTotal reclaimed space: 2.05kB');
  t.equal(pruneReport([], 0), 'Total reclaimed space: 0B');
});

t.test('info and system df', async (t) => {
  const info = infoText({
    Driver: 'strata-fuse',
    ServerVersion: '0.1.0',
    DockerRootDir: '/var/lib/strata',
    BackingFilesystem: 'extfs',
    Passthrough: true,
    Images: 2,
    Layers: 3,
    Containers: 4,
    ContainersMounted: 1,
    Volumes: 5,
    Engine: { Threads: 1, MaxThreads: 2, MountsServed: 1, LiveRestore: true, HolderPid: 42, Takeovers: 3, LastTakeover: { At: '2026-01-01T00:00:00.000Z', Ms: 120, Mounts: 1 } },
  });
  t.match(info, /^Storage Driver: strata-fuse$/m);
  t.match(info, /^FUSE Engine: 1 of 2 threads running, 1 mounts served$/m);
  t.match(info, /^Live Restore: on \(fd holder pid 42\)$/m);
  t.match(info, /^Takeovers: 3 \(last 2026-01-01T00:00:00.000Z, 120 ms, 1 mounts\)$/m);
  t.match(info, /^Passthrough: on$/m);
  t.match(info, /^Containers: 4 \(mounted 1\)$/m);
  const df: SystemDf = {
    LayersSize: 10_000,
    Images: [
      { Id: `sha256:${HEX}`, RepoTags: ['a:latest'], Created: '', Size: 6000, SharedSize: 2000, UniqueSize: 4000, Containers: 1 },
      { Id: `sha256:${'cd'.repeat(32)}`, RepoTags: [], Created: '', Size: 6000, SharedSize: 2000, UniqueSize: 4000, Containers: 0 },
    ],
    Containers: [
      { Id: HEX, Name: 'x', Image: 'a', SizeRw: 100, State: 'mounted', Created: '' },
      { Id: HEX, Name: 'y', Image: 'a', SizeRw: 300, State: 'created', Created: '' },
    ],
    Volumes: [
      { Name: 'v1', UsageData: { Size: 50, RefCount: 1 } },
      { Name: 'v2', UsageData: { Size: 150, RefCount: 0 } },
    ],
    BuildCacheSize: 0,
    BuildCacheCount: 0,
  };
  t.equal(
    dfSummary(df),
    [
      'TYPE            TOTAL   ACTIVE   SIZE   RECLAIMABLE',
      'Images          2       1        10kB   6kB (60%)',
      'Containers      2       1        400B   300B (75%)',
      'Local Volumes   2       1        200B   150B (75%)',
      'Build Cache     0       0        0B     0B',
    ].join('\n'),
  );
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { env: testEnv(env), timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

t.test('a daemon of another API version: said so, exit 1', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-cli-'));
  const sock = path.join(dir, 's.sock');
  // What a stratad from before Docker's key names answers.
  const server = http.createServer((_req, res) => res.writeHead(200, { 'Content-Type': 'application/json', 'Api-Version': '1' }).end('[{"id":"ab","name":"x"}]'));
  await new Promise<void>((r) => server.listen(sock, r));
  t.teardown(() => {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const r = await cli(['--socket', sock, 'ps']);
  t.equal(r.code, 1);
  t.equal(r.stderr, `Error: the strata daemon at ${sock} speaks API version 1 and this strata 2: restart stratad from the same build as this CLI\n`);
});

t.test('no daemon: one-line connect error, exit 1', async (t) => {
  const sock = '/tmp/nonexistent-strata-test.sock';
  for (const args of [['--socket', sock, 'ps'], ['--socket', sock, 'image', 'ls'], ['--socket', sock, 'info']]) {
    const r = await cli(args);
    t.equal(r.code, 1, `${args.join(' ')}: exit 1`);
    t.equal(r.stdout, '');
    t.equal(
      r.stderr,
      `Error: cannot connect to the strata daemon at ${sock}: is stratad running? Start it with: sudo stratad (or make daemon)\n`,
    );
  }
  const env = await cli(['volume', 'ls'], { STRATA_SOCKET: sock });
  t.match(env.stderr, `daemon at ${sock}:`, 'STRATA_SOCKET is honoured');
});

t.test('usage errors exit 2', async (t) => {
  for (const args of [[], ['frobnicate'], ['image', 'ls', '--bogus'], ['container', 'create'], ['image']]) {
    const r = await cli(['--socket', '/tmp/nonexistent-strata-test.sock', ...args]);
    t.equal(r.code, 2, `"${args.join(' ')}" exits 2`);
    t.match(r.stderr, /^Error: /);
  }
  const m = await cli(['--socket', '/tmp/nonexistent-strata-test.sock', 'container', 'create', '--mount', 'type=bind,target=/x', 'img']);
  t.equal(m.code, 2, 'bad --mount exits 2 before contacting the daemon');
  t.match(m.stderr, /^Error: invalid --mount "type=bind,target=\/x": missing field "source"/);
  const h = await cli(['container', 'create', '--help']);
  t.equal(h.code, 0);
  t.match(h.stdout, /--mount/);
  const v = await cli(['--version']);
  t.equal(v.stdout.trim(), JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version);
});

t.test('the CLI against a real daemon: outputs, and what each command left in the daemon', async (t) => {
  const d = await startDaemon(t, { label: 'cli-format' });
  const run = (...args: string[]) => d.cli(args);
  const json = (...args: string[]) => JSON.parse(run(...args).stdout) as Record<string, unknown>[];

  // The CLI reads the file and streams it: the daemon gets bytes, never a path.
  const rootfs = path.join(d.ws, 'rootfs.tar');
  fs.mkdirSync(path.join(d.ws, 'tree', 'etc'), { recursive: true });
  fs.writeFileSync(path.join(d.ws, 'tree', 'etc', 'motd'), 'hi\n');
  execFileSync('tar', ['-C', path.join(d.ws, 'tree'), '-cf', rootfs, '.']);
  let r = run('image', 'import', rootfs, 'mine:v1');
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /^sha256:[0-9a-f]{64}\n$/, 'prints the image id');
  const id = r.stdout.trim();
  r = run('image', 'import', path.join(d.ws, 'nope.tar'), 'mine:v1');
  t.equal(r.status, 1);
  t.equal(r.stderr, `Error: import source ${path.join(d.ws, 'nope.tar')} does not exist\n`, "a missing source is the CLI's own error");

  r = run('images');
  t.equal(r.status, 0, r.stderr);
  const short = id.slice(7, 19);
  t.match(r.stdout, new RegExp(`^REPOSITORY   TAG   IMAGE ID       CREATED\\s+SIZE\\nmine         v1    ${short}   (Less than a second|\\d+ seconds?) ago\\s+\\d+(\\.\\d+)?k?B\\n$`));
  t.equal(run('image', 'ls', '-q').stdout, `${short}\n`);
  const row = JSON.parse(run('image', 'ls', '--format', 'json').stdout.trim()) as Record<string, string>;
  t.same(Object.keys(row), ['ID', 'Repository', 'Tag', 'CreatedAt', 'CreatedSince', 'Size'], "json: one object per line, the row by docker's names");
  t.same([row.ID, row.Repository, row.Tag], [short, 'mine', 'v1']);

  r = run('container', 'create', '--name', 'web', '-v', 'data:/data', '-v', `${d.ws}:/srv:ro`, '--mount', 'type=volume,src=c,dst=/c,ro', 'mine:v1');
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /^[0-9a-f]{64}\n$/);
  const [web] = json('container', 'inspect', 'web');
  const mounts = (web.Mounts as Record<string, unknown>[]).map((m) => [m.Type, m.Name ?? m.Source, m.Destination, m.RW]);
  t.same(mounts.sort(), [['bind', d.ws, '/srv', false], ['volume', 'c', '/c', false], ['volume', 'data', '/data', true]].sort(), 'the volumes and mounts the daemon recorded');

  const at = path.join(d.ws, 'mnt');
  fs.mkdirSync(at);
  r = d.cli(['container', 'mount', '--at', 'mnt', 'web'], { cwd: d.ws });
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout, `${at}\n`, '--at is taken relative to the CLI\'s directory');
  t.equal(fs.readFileSync(path.join(at, 'etc', 'motd'), 'utf8'), 'hi\n');
  fs.writeFileSync(path.join(at, 'new'), 'n\n');
  ok(t, run('container', 'unmount', 'web'), 'unmount');

  r = run('commit', '-m', 'msg', '-a', 'me', '-c', 'ENV A=b', 'web', 'new:tag');
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /^sha256:[0-9a-f]{64}\n$/);
  const [img] = json('image', 'inspect', 'new:tag');
  const top = (img.History as Record<string, unknown>[])[0];
  const labels = (img.Config as { Labels: Record<string, string> }).Labels;
  t.same([top.Comment, top.CreatedBy, labels['org.opencontainers.image.authors']], ['msg', 'ENV A=b', 'me'], 'message, instruction and author reached the image');

  r = run('rmi', '-f', 'new:tag', 'nope');
  t.equal(r.status, 1, 'a failed target makes the exit status 1');
  t.match(r.stdout, /^Untagged: new:tag\nDeleted: sha256:[0-9a-f]{64}\n/);
  t.equal(r.stderr, 'Error: no such image: nope\n');

  r = run('ps', '-a');
  t.equal(r.status, 0);
  t.match(r.stdout, /^CONTAINER ID   IMAGE     CREATED\s+STATUS\s+MOUNTPOINT\s+NAMES\n[0-9a-f]{12}   mine:v1   .* web\n$/);

  r = run('volume', 'create', '--label', 'a=b', 'labelled');
  t.equal(r.stdout, 'labelled\n');
  t.same(json('volume', 'inspect', 'labelled')[0].Labels, { a: 'b' }, 'labels reached the daemon');
  ok(t, run('rm', 'web'), 'rm');
  r = run('volume', 'prune', '-a', '-f');
  t.match(r.stdout, /^Deleted Volumes:\n(c|data|labelled)\n(c|data|labelled)\n(c|data|labelled)\n\nTotal reclaimed space: \d+(\.\d+)?k?B\n$/);

  r = run('volume', 'inspect', 'a/b');
  t.equal(r.status, 1);
  t.equal(r.stdout, '[]\n');
  t.match(r.stderr, /^Error: .*a\/b/, 'the error names the bad volume name');

  // A daemon that dies while the CLI waits for its answer.
  process.kill(d.pid, 'SIGSTOP');
  const pending = d.cliAsync(['container', 'inspect', 'web']);
  await new Promise((res) => setTimeout(res, 500));
  process.kill(d.pid, 'SIGKILL');
  r = await pending;
  t.equal(r.status, 1, 'a daemon that dies mid-request: exit 1');
  t.equal(r.stderr, `Error: the strata daemon at ${d.socket} closed the connection before it answered: did stratad stop or crash? (see its log)\n`, 'says the daemon went away, not "socket hang up"');
});
