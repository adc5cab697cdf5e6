// Docker's habits in the strata CLI, against a real daemon: --help everywhere.
import t from 'tap';
import { startDaemon } from './lib/daemon';

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
