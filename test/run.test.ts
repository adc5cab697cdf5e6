// strata run / exec: processes through runc in a mounted container root.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startDaemon } from './lib/daemon';
import { importBusyboxImage, runtimeSkipReason } from './lib/base-image';

const skip = runtimeSkipReason();

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Interface names in a /proc/net/dev listing. */
function interfaces(text: string): string[] {
  return text
    .split('\n')
    .slice(2)
    .map((l) => l.split(':')[0].trim())
    .filter(Boolean)
    .sort();
}

t.test('run and exec', { skip }, async (t) => {
  const d = await startDaemon(t, { label: 'run' });
  importBusyboxImage(d, d.ws);

  await t.test('output and exit code; --rm removes the container', async (t) => {
    const r = d.cli(['run', '--rm', 'base', 'sh', '-c', 'echo hi; exit 3']);
    t.equal(r.stdout, 'hi\n');
    t.equal(r.status, 3, "the command's exit code is strata's");
    t.equal(d.cli(['ps', '-a', '-q']).stdout.trim(), '', 'no container left');
    const ok = d.cli(['run', '--rm', 'base', 'ls', '-ld', '/']);
    t.equal(ok.status, 0, 'options after the image belong to the command');
    t.match(ok.stdout, /^d/);
    const err = d.cli(['run', '--rm', 'base', 'sh', '-c', 'echo oops >&2; exit 0']);
    t.equal(err.stderr, 'oops\n', 'stderr streams too');
  });

  await t.test('without --rm the container stays, unmounted', async (t) => {
    const r = d.cli(['run', '--name', 'keeper', 'base', 'sh', '-c', 'echo kept > /kept.txt']);
    t.equal(r.status, 0, r.stderr);
    const ps = d.cli(['ps', '-a']);
    t.match(ps.stdout, /keeper/);
    t.match(ps.stdout, /Exited \(0\) (Less than a second|\d+ seconds?) ago/, 'ps: exited, with its code');
    t.match(d.cli(['ps', '--no-trunc', '-a']).stdout, /Exited \(0\)/);
    const three = d.cli(['run', '--name', 'three', 'base', 'sh', '-c', 'exit 3']);
    t.equal(three.status, 3);
    t.match(d.cli(['ps', '-a', '--format', '{{.Names}}: {{.Status}}']).stdout, /^three: Exited \(3\) .* ago$/m);
    t.equal(d.cli(['rm', 'three']).status, 0);
    t.match(d.cli(['diff', 'keeper']).stdout, /A \/kept.txt/, 'the write is in its layer');
    t.equal(d.cli(['rm', 'keeper']).status, 0);
  });

  await t.test('-e, -w and -u apply', async (t) => {
    const r = d.cli(['run', '--rm', '-e', 'FOO=bar', '-e', 'EMPTY=', '-w', '/tmp', '-u', '1000', 'base', 'sh', '-c', 'echo "$FOO|$EMPTY|$HOME"; pwd; id -u; id -g']);
    t.equal(r.status, 0, r.stderr);
    t.equal(r.stdout, 'bar||/home/user\n/tmp\n1000\n1000\n');
    const named = d.cli(['run', '--rm', '-u', 'user:staff', 'base', 'sh', '-c', 'id -u; id -g']);
    t.equal(named.stdout, '1000\n50\n', 'user and group names resolve through the image');
    const mk = d.cli(['run', '--rm', '-w', '/new/dir', 'base', 'pwd']);
    t.equal(mk.stdout, '/new/dir\n', 'a missing workdir is created');
    const bad = d.cli(['run', '--rm', '-u', 'nobody-here', 'base', 'true']);
    t.not(bad.status, 0);
    t.match(bad.stderr, /unable to find user nobody-here/);
    t.equal(d.cli(['ps', '-a', '-q']).stdout.trim(), '', 'a failed start leaves no container');
  });

  await t.test('-v volume: writes land in the volume, which --rm leaves alone', async (t) => {
    const r = d.cli(['run', '--rm', '-v', 'data1:/data', 'base', 'sh', '-c', 'echo written > /data/f']);
    t.equal(r.status, 0, r.stderr);
    t.equal(fs.readFileSync(path.join(d.root, 'volumes', 'data1', '_data', 'f'), 'utf8'), 'written\n');
    t.match(d.cli(['volume', 'ls']).stdout, /data1/, 'the named volume survives --rm');
    const again = d.cli(['run', '--rm', '--mount', 'type=volume,source=data1,target=/d2,readonly', 'base', 'sh', '-c', 'cat /d2/f; echo x > /d2/g']);
    t.match(again.stdout, /written/);
    t.not(again.status, 0, 'a readonly mount refuses writes');
    const host = path.join(d.ws, 'bind');
    fs.mkdirSync(host);
    t.equal(d.cli(['run', '--rm', '-v', `${host}:/b`, 'base', 'sh', '-c', 'echo bound > /b/x']).status, 0);
    t.equal(fs.readFileSync(path.join(host, 'x'), 'utf8'), 'bound\n', 'bind mounts work');
  });

  await t.test('no network unless --network host', async (t) => {
    const r = d.cli(['run', '--rm', 'base', 'cat', '/proc/net/dev']);
    t.equal(r.status, 0, r.stderr);
    t.same(interfaces(r.stdout), ['lo'], 'only loopback');
    const hostIfs = interfaces(fs.readFileSync('/proc/net/dev', 'utf8'));
    const h = d.cli(['run', '--rm', '--network', 'host', 'base', 'cat', '/proc/net/dev']);
    t.equal(h.status, 0, h.stderr);
    t.same(interfaces(h.stdout), hostIfs, "the host's interfaces");
  });

  await t.test('exec into a running container', async (t) => {
    const bg = d.cliAsync(['run', '--rm', '--name', 'sleeper', 'base', 'sh', '-c', 'echo started; while [ ! -f /tmp/stop ]; do sleep 0.1; done; exit 7'], { timeout: 60_000 });
    let up = false;
    for (let i = 0; i < 100 && !up; i++) {
      up = d.cli(['exec', 'sleeper', 'true']).status === 0;
      if (!up) await delay(100);
    }
    t.ok(up, 'the container is running');
    t.match(d.cli(['ps', '--format', '{{.Names}}: {{.Status}}']).stdout, /^sleeper: Up (Less than a second|\d+ seconds?)$/m, 'ps: Up while it runs');
    const r = d.cli(['exec', 'sleeper', 'echo', 'ok']);
    t.equal(r.status, 0, r.stderr);
    t.equal(r.stdout, 'ok\n');
    const env = d.cli(['exec', '-e', 'Y=2', '-w', '/tmp', 'sleeper', 'sh', '-c', 'echo $Y; pwd; exit 4']);
    t.equal(env.stdout, '2\n/tmp\n');
    t.equal(env.status, 4, "exec returns the command's exit code");
    const missing = d.cli(['exec', 'sleeper', 'no-such-command']);
    t.equal(missing.status, 127, 'exec: a command not found exits 127, as docker');
    t.match(missing.stderr, /no-such-command.*not found/);
    t.equal(d.cli(['exec', 'sleeper', '/tmp']).status, 126, 'exec: a command that cannot be executed exits 126');
    t.equal(d.cli(['exec', 'sleeper', 'touch', '/tmp/stop']).status, 0);
    const done = await bg;
    t.equal(done.stdout, 'started\n');
    t.equal(done.status, 7);
    const gone = d.cli(['exec', 'sleeper', 'true']);
    t.not(gone.status, 0, 'no exec once it is gone');
    t.equal(d.cli(['ps', '-a', '-q']).stdout.trim(), '');
  });

  await t.test('errors', async (t) => {
    const r = d.cli(['run', '--rm', 'no-such-image', 'true']);
    t.not(r.status, 0);
    t.match(r.stderr, /no such image/);
    const nocmd = d.cli(['run', '--rm', 'base']);
    t.not(nocmd.status, 0);
    t.match(nocmd.stderr, /no command specified/);
    const nf = d.cli(['run', '--rm', 'base', '/no/such/binary']);
    t.equal(nf.status, 127, 'a missing executable exits 127, as docker');
    t.equal(d.cli(['run', '--rm', 'base', 'no-such-command']).status, 127, 'a command not in PATH: 127');
    const nx = d.cli(['run', '--rm', 'base', '/tmp']);
    t.equal(nx.status, 126, 'a command that cannot be executed (a directory) exits 126');
    t.match(nx.stderr, /permission denied/);
    t.equal(d.cli(['run', '--rm', 'base', 'sh', '-c', 'exit 1']).status, 1, "the command's own failure keeps its code");
    const notRunning = d.cli(['exec', 'nope', 'true']);
    t.not(notRunning.status, 0);
    t.equal(d.cli(['ps', '-a', '-q']).stdout.trim(), '', 'nothing left behind');
  });
});
