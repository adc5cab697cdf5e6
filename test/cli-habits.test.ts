// Docker's habits in the strata CLI, against a real daemon: --help everywhere.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { startDaemon, STRATA, type Daemon } from './lib/daemon';
import { ok } from './lib/expect';

/** Command paths listed in a help text's "Commands:" section ("strata image ls ..." -> ["image", "ls"]). */
function listedCommands(help: string, prefix: string[]): string[][] {
  const out: string[][] = [];
  const section = help.split('\nCommands:\n')[1]?.split('\n\n')[0] ?? '';
  for (const line of section.split('\n')) {
    const words = line.trim().split(/\s+/);
    if (words[0] !== 'strata') continue;
    const path = words.slice(1, 1 + prefix.length + 1);
    if (path.length === prefix.length + 1 && !/^[<[]/.test(path[path.length - 1])) out.push(path);
  }
  return out;
}

/** A one-file image imported from a directory. */
function importTiny(t: Test, d: Daemon, ref: string): void {
  const rootfs = path.join(d.ws, 'rootfs');
  fs.mkdirSync(path.join(rootfs, 'etc'), { recursive: true });
  fs.writeFileSync(path.join(rootfs, 'etc', 'motd'), 'hi\n');
  ok(t, d.cli(['image', 'import', rootfs, ref]), 'import');
}

t.test('--help and -h on every command and subcommand', async (t) => {
  const d = await startDaemon(t, { label: 'habits-help' });
  const top = d.cli(['--help']);
  t.equal(top.status, 0);
  const todo = listedCommands(top.stdout, []);
  t.ok(todo.length >= 20, `top-level commands listed (${todo.length})`);
  const seen: string[] = [];
  while (todo.length) {
    const cmd = todo.shift()!;
    for (const flag of ['--help', '-h']) {
      const r = d.cli([...cmd, flag]);
      t.equal(r.status, 0, `strata ${cmd.join(' ')} ${flag} exits 0: ${r.stderr}`);
      t.match(r.stdout, new RegExp(`^strata ${cmd.join(' ')}\\b`), `strata ${cmd.join(' ')} ${flag} shows its usage`);
      t.equal(r.stderr, '');
      if (flag === '--help') {
        const usage = r.stdout.split('\n')[0];
        if (/[<[]/.test(usage)) t.match(r.stdout, /\nPositionals:\n/, `strata ${cmd.join(' ')} --help lists its positionals`);
        todo.push(...listedCommands(r.stdout, cmd));
      }
    }
    seen.push(cmd.join(' '));
  }
  for (const c of ['run', 'exec', 'container create', 'image ls', 'volume prune', 'system df']) t.ok(seen.includes(c), `${c} was checked`);

  const run = d.cli(['run', '--help']);
  t.match(run.stdout, /Positionals:\n\s+image\s.*\n\s+command\s/, 'run --help shows IMAGE and COMMAND');
  t.match(run.stdout, /--rm\b/);
  t.match(d.cli(['run', '--rm', '-h']).stdout, /^strata run/, 'run --rm -h: help');
  t.match(d.cli(['exec', '--help']).stdout, /Positionals:\n\s+container\s/, 'exec --help shows CONTAINER');
  t.match(d.cli(['container', 'create', '--help']).stdout, /Positionals:\n\s+image\s/, 'container create --help shows IMAGE');
});

t.test('--format: Go templates, json lines, inspect -f', async (t) => {
  const d = await startDaemon(t, { label: 'habits-format' });
  importTiny(t, d, 'fmt:1');
  const id = ok(t, d.cli(['container', 'create', '--name', 'one', 'fmt:1']), 'create one');
  ok(t, d.cli(['container', 'create', '--name', 'two', 'fmt:1']), 'create two');
  ok(t, d.cli(['volume', 'create', 'vol1']), 'volume create');

  t.equal(ok(t, d.cli(['ps', '-a', '--format', '{{.Names}}']), 'ps names').split('\n').sort().join(' '), 'one two');
  t.match(ok(t, d.cli(['ps', '-a', '--no-trunc', '--format', '{{.ID}} {{.Image}}']), 'ps id'), new RegExp(`${id} fmt:1`));
  const tbl = ok(t, d.cli(['ps', '-a', '--format', 'table {{.ID}}\\t{{.Names}}\\t{{.Status}}']), 'ps table');
  const lines = tbl.split('\n');
  t.match(lines[0], /^CONTAINER ID   NAMES   STATUS$/, 'table: docker headers, aligned');
  t.equal(lines.length, 3);
  t.match(lines[1], /^[0-9a-f]{12}   (one|two) +Created$/);
  const js = ok(t, d.cli(['ps', '-a', '--format', '{{json .}}']), 'json .').split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.same(js.map((o) => o.Names).sort(), ['one', 'two']);
  const lines2 = ok(t, d.cli(['ps', '-a', '--format', 'json']), 'ps json').split('\n');
  t.equal(lines2.length, 2, '--format json: one object per line');
  const steady = (o: Record<string, unknown>) => ({ ...o, RunningFor: undefined }); // "N seconds ago" may tick between runs
  t.same(lines2.map((l) => steady(JSON.parse(l) as Record<string, unknown>)), js.map(steady), "--format json: the row's fields, as '{{json .}}'");
  t.same(Object.keys(js[0]!).sort(), ['CreatedAt', 'ID', 'Image', 'Mountpoint', 'Names', 'RunningFor', 'Size', 'State', 'Status'], "ps json: docker's keys");
  const imgRow = JSON.parse(ok(t, d.cli(['images', '--format', 'json']), 'images json')) as Record<string, unknown>;
  t.match(imgRow, { Repository: 'fmt', Tag: '1', ID: /^[0-9a-f]{12}$/ }, "images json: docker's keys");
  const volRow = JSON.parse(ok(t, d.cli(['volume', 'ls', '--format', 'json']), 'volume ls json')) as Record<string, unknown>;
  t.match(volRow, { Driver: 'local', Name: 'vol1', Scope: 'local', Links: 0 }, "volume ls json: docker's keys");
  t.equal(ok(t, d.cli(['images', '--format', '{{.Repository}}:{{.Tag}}']), 'images'), 'fmt:1');
  t.equal(ok(t, d.cli(['volume', 'ls', '--format', '{{.Driver}} {{.Name}}']), 'volume ls'), 'local vol1');
  t.equal(ok(t, d.cli(['volume', 'ls', '--format', '{{upper .Name}}|{{len .Labels}}']), 'funcs'), 'VOL1|0');

  t.equal(ok(t, d.cli(['container', 'inspect', '-f', '{{.Name}} {{.State.Status}} {{.Config.Image}}', 'one']), 'inspect -f'), 'one created fmt:1');
  t.match(ok(t, d.cli(['container', 'inspect', '-f', '{{.GraphDriver.Data.UpperDir}}', 'one']), 'GraphDriver'), new RegExp(`/containers/${id}/upper$`));
  t.equal(ok(t, d.cli(['volume', 'inspect', '--format', '{{.Name}} {{.Options}}', 'vol1']), 'volume inspect'), 'vol1 map[]');
  const config = ok(t, d.cli(['image', 'inspect', '-f', '{{json .Config}}', 'fmt:1']), 'image inspect json field');
  t.match(JSON.parse(config), { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: null, WorkingDir: '' });
  t.equal(ok(t, d.cli(['image', 'inspect', '-f', '{{.Config.Env}}', 'fmt:1']), 'field path'), '[PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin]', 'a list prints as Go prints it');
  t.match(ok(t, d.cli(['image', 'inspect', '-f', '{{.RootFS.Type}} {{len .RootFS.Layers}} {{join .RepoTags ","}}', 'fmt:1']), 'RootFS'), /^layers 1 fmt:1$/);
  t.match(ok(t, d.cli(['info', '--format', 'json']), 'info json'), /"Driver": "strata-fuse"[\s\S]*"ServerVersion"[\s\S]*"DockerRootDir"/, 'info: docker names');
  const bad = d.cli(['ps', '--format', '{{bogus .ID}}']);
  t.equal(bad.status, 2, 'an unknown template function is a usage error');
  t.match(bad.stderr, /function "bogus" not defined/);
  t.equal(d.cli(['ps', '--format', '{{.ID']).status, 2, 'an unclosed action is a usage error');
});

t.test('ps MOUNTPOINT, volume prune without a terminal, system df build cache', async (t) => {
  const d = await startDaemon(t, { label: 'habits-state' });
  const ctx = path.join(d.ws, 'ctx');
  fs.mkdirSync(ctx);
  fs.writeFileSync(path.join(ctx, 'data.bin'), Buffer.alloc(50_000, 7));
  fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM scratch\nCOPY data.bin /data.bin\n');
  ok(t, d.cli(['build', '-q', '-t', 'cached:1', ctx]), 'build');

  // MOUNTPOINT: shortened in the table, whole with --no-trunc and in JSON.
  ok(t, d.cli(['container', 'create', '--name', 'm', 'cached:1']), 'create');
  const mp = ok(t, d.cli(['container', 'mount', 'm']), 'mount');
  t.ok(mp.length > 40, 'the default mountpoint is long');
  const row = ok(t, d.cli(['ps']), 'ps').split('\n')[1];
  t.notOk(row.includes(mp), 'the table shortens it');
  t.match(row, /…/);
  t.ok(row.includes(mp.slice(-10)), 'its end is kept');
  t.ok(ok(t, d.cli(['ps', '--no-trunc']), 'ps --no-trunc').includes(mp), '--no-trunc shows it whole');
  t.equal((JSON.parse(ok(t, d.cli(['ps', '--format', 'json']), 'ps json')) as { Mountpoint: string }).Mountpoint, mp, 'JSON has it whole');
  t.equal(ok(t, d.cli(['ps', '--format', '{{.Mountpoint}}']), 'template'), mp);
  ok(t, d.cli(['container', 'unmount', 'm']), 'unmount');
  ok(t, d.cli(['rm', 'm']), 'rm');

  // volume prune with no terminal to ask on and no -f: nothing removed, and it says why.
  ok(t, d.cli(['volume', 'create', 'spare']), 'volume create');
  const p = d.cli(['volume', 'prune', '-a'], { input: 'y\n' });
  t.equal(p.status, 1);
  t.match(p.stderr, /Nothing removed: .*not a terminal.*-f/);
  t.equal(ok(t, d.cli(['volume', 'ls', '-q']), 'ls'), 'spare', 'the volume is still there');
  t.match(ok(t, d.cli(['volume', 'prune', '-a', '-f']), 'prune -f'), /spare/);

  // The Build Cache row: TOTAL and RECLAIMABLE agree with SIZE.
  const cacheRow = () => ok(t, d.cli(['system', 'df']), 'df').split('\n').find((l) => l.startsWith('Build Cache'))!.split(/\s{2,}/);
  t.same(cacheRow().slice(1), ['0', '0', '0B', '0B'], 'layers an image uses are not counted as cache');
  ok(t, d.cli(['rmi', 'cached:1']), 'rmi');
  const [, total, active, size, reclaim] = cacheRow();
  t.equal(total, '1', 'the layer only the cache keeps is counted');
  t.equal(active, '0');
  t.match(size, /^5\d(\.\d)?kB$/, 'its size');
  t.equal(reclaim, size);
  // --format json: docker's one object per summary row, the same figures as the table.
  const rows = ok(t, d.cli(['system', 'df', '--format', 'json']), 'df json').split('\n').map((l) => JSON.parse(l) as Record<string, string>);
  t.same(rows.map((r) => r.Type), ['Images', 'Containers', 'Local Volumes', 'Build Cache']);
  t.same(rows[3], { Type: 'Build Cache', TotalCount: '1', Active: '0', Size: size, Reclaimable: size });
  const df = JSON.parse(ok(t, d.cli(['system', 'df', '-v', '--format', 'json']), 'df -v json')) as { BuildCacheCount: number; BuildCacheSize: number };
  t.equal(df.BuildCacheCount, 1);
  t.ok(df.BuildCacheSize >= 50_000, `${df.BuildCacheSize} bytes`);
});

t.test('strata completion bash: generated from the command definitions', async (t) => {
  const d = await startDaemon(t, { label: 'habits-completion' });
  const script = ok(t, d.cli(['completion', 'bash']), 'completion bash');
  t.match(script, /complete .*-F _strata_yargs_completions strata/);
  const file = path.join(d.ws, 'strata-completion.bash');
  fs.writeFileSync(file, script + '\n');
  const complete = (...words: string[]) => {
    const r = spawnSync('bash', ['-c', `source ${file}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _strata_yargs_completions; printf '%s\\n' "\${COMPREPLY[@]}"`], {
      encoding: 'utf8',
      env: { PATH: `${path.dirname(STRATA())}:/usr/local/bin:/usr/bin:/bin`, STRATA_SOCKET: d.socket },
    });
    t.equal(r.status, 0, r.stderr);
    return r.stdout.split('\n').filter(Boolean).sort();
  };
  t.same(complete('strata', 'ima'), ['image', 'images'], 'top-level commands');
  t.same(complete('strata', 'container', 'c'), ['commit', 'create'], 'subcommands');
  t.ok(complete('strata', 'volume', '').includes('prune'), 'every subcommand of volume');
  t.ok(complete('strata', '').includes('completion'));
  const zsh = d.cli(['completion', 'zsh']);
  t.equal(zsh.status, 2, 'an unknown shell is a usage error');
});

t.test('image save refuses a terminal for stdout without -o', async (t) => {
  const d = await startDaemon(t, { label: 'habits-save' });
  importTiny(t, d, 'tty:1');
  // util-linux script(1) gives the command a pseudo-terminal for its stdout.
  const r = spawnSync('script', ['-qec', `${STRATA()} --socket ${d.socket} image save tty:1`, '/dev/null'], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin', TERM: 'dumb' } });
  t.equal(r.status, 2, 'a usage error');
  t.match(r.stdout, /refusing to write an archive to a terminal: use -o FILE/);
  const piped = d.cli(['image', 'save', 'tty:1']);
  t.equal(piped.status, 0, 'a pipe is fine');
  t.ok(piped.stdout.length > 0);
});
