// strata build: Dockerfile steps, layers per step, the build cache, failures that leave nothing behind.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ImageInspect, SystemDf } from '../daemon/model/types';
import { startDaemon, type Daemon } from './lib/daemon';
import { importBusyboxImage, runtimeSkipReason } from './lib/base-image';
import { listMounts } from './lib/mount-table';

const skip = runtimeSkipReason();

type Inspect = ImageInspect;

function inspect(d: Daemon, ref: string): Inspect {
  const r = d.cli(['image', 'inspect', ref]);
  if (r.status !== 0) throw new Error(`inspect ${ref}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as Inspect[])[0];
}

function write(dir: string, files: Record<string, string>): void {
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), content);
  }
}

const usingCache = (out: string) => out.split('\n').filter((l) => l === ' ---> Using cache').length;

/** The step number of each " ---> Using cache" line. */
function cachedSteps(out: string): number[] {
  const steps: number[] = [];
  let cur = 0;
  for (const l of out.split('\n')) {
    const m = /^Step (\d+)\/\d+ : /.exec(l);
    if (m) cur = Number(m[1]);
    if (l === ' ---> Using cache') steps.push(cur);
  }
  return steps;
}

function mountsUnder(dir: string): string[] {
  return listMounts()
    .map((m) => m.mountPoint)
    .filter((p) => p === dir || p.startsWith(dir + '/'));
}

t.test('build', { skip }, async (t) => {
  const d = await startDaemon(t, { label: 'build' });
  importBusyboxImage(d, d.ws);
  const ctx = path.join(d.ws, 'ctx');
  const common = ['FROM base', 'RUN echo install > /opt/dep.txt', 'COPY deps.txt /app/deps.txt'];
  write(ctx, {
    'deps.txt': 'dep-v1\n',
    'src-a.txt': 'source A\n',
    'src-b.txt': 'source B\n',
    'Dockerfile.a': [...common, 'COPY src-a.txt /app/src.txt', 'ENTRYPOINT ["/bin/cat", "/app/src.txt"]'].join('\n') + '\n',
    'Dockerfile.b': [...common, 'COPY src-b.txt /app/src.txt', 'ENTRYPOINT ["/bin/sh", "-c", "cat /app/src.txt /app/deps.txt"]'].join('\n') + '\n',
  });
  const build = (file: string, tag: string, extra: string[] = []) => d.cli(['build', '-t', tag, '-f', path.join(ctx, file), ...extra, ctx], { timeout: 120_000 });

  await t.test('seed scenario: two Dockerfiles share their first steps', async (t) => {
    const a = build('Dockerfile.a', 'app-a');
    t.equal(a.status, 0, `first build succeeds: ${a.stderr}`);
    t.match(a.stdout, /^Step 1\/5 : FROM base$/m);
    t.match(a.stdout, /^Step 2\/5 : RUN echo install > \/opt\/dep.txt\n ---> Running in \w+/m);
    t.equal(usingCache(a.stdout), 0, 'nothing cached the first time');
    t.match(a.stdout, /^Successfully built [0-9a-f]{12}$/m);
    t.match(a.stdout, /^Successfully tagged app-a:latest$/m);

    const b = build('Dockerfile.b', 'app-b');
    t.equal(b.status, 0, `second build succeeds: ${b.stderr}`);
    t.same(cachedSteps(b.stdout), [2, 3], 'the install and dependency steps come from the cache');
    t.match(b.stdout, /^Step 4\/5 : COPY src-b.txt \/app\/src.txt\n ---> [0-9a-f]{12}$/m, 'the source step is built');

    const ia = inspect(d, 'app-a');
    const ib = inspect(d, 'app-b');
    t.equal(ia.Layers.length, 4, 'base + RUN + 2 COPY layers');
    t.same(ib.Layers.slice(0, 3).map((l) => l.Id), ia.Layers.slice(0, 3).map((l) => l.Id), 'three layers shared');
    t.not(ib.Layers[3].Id, ia.Layers[3].Id, 'the source layer differs');
    t.same(ia.Config.Entrypoint, ['/bin/cat', '/app/src.txt']);

    // df counts each shared layer once.
    const df = JSON.parse(d.cli(['system', 'df', '-v', '--format', 'json']).stdout) as SystemDf;
    const distinct = new Map<string, number>();
    for (const l of [...ia.Layers, ...ib.Layers, ...inspect(d, 'base').Layers]) distinct.set(l.Id, l.Size);
    t.equal(df.LayersSize, [...distinct.values()].reduce((x, y) => x + y, 0), 'layers size counts shared layers once');
    const dfa = df.Images.find((i) => i.RepoTags.includes('app-a:latest'))!;
    t.equal(dfa.UniqueSize, ia.Layers[3].Size, 'only the source layer is unique to app-a');
    t.equal(dfa.SharedSize, ia.Layers.slice(0, 3).reduce((x, l) => x + l.Size, 0), 'the first three layers are shared');
    const dfv = d.cli(['system', 'df', '-v']);
    t.equal(dfv.status, 0);
    t.match(dfv.stdout, /app-a/);

    const h = d.cli(['history', '--no-trunc', 'app-b']);
    t.equal(h.status, 0, h.stderr);
    t.match(h.stdout, /RUN \/bin\/sh -c echo install > \/opt\/dep.txt/);
    t.match(h.stdout, /COPY deps.txt \/app\/deps.txt\s+7B/);
    t.match(h.stdout, /COPY src-b.txt \/app\/src.txt\s+9B/);
    t.match(h.stdout, /ENTRYPOINT/);

    const ra = d.cli(['run', '--rm', 'app-a']);
    t.equal(ra.stdout, 'source A\n', 'the image runs its entrypoint');
    const rb = d.cli(['run', '--rm', 'app-b']);
    t.equal(rb.stdout, 'source B\ndep-v1\n');
    t.equal(d.cli(['run', '--rm', '--entrypoint', 'cat', 'app-b', '/opt/dep.txt']).stdout, 'install\n', 'the RUN step wrote into its layer');
  });

  await t.test('mtime-only change hits the cache; a content change rebuilds from there', async (t) => {
    const before = inspect(d, 'app-b').Id;
    const future = new Date(Date.now() + 3600_000);
    fs.utimesSync(path.join(ctx, 'deps.txt'), future, future);
    const b = build('Dockerfile.b', 'app-b');
    t.equal(b.status, 0, b.stderr);
    t.same(cachedSteps(b.stdout), [2, 3, 4, 5], 'every step cached');
    t.equal(inspect(d, 'app-b').Id, before, 'a fully cached build gives the same image');

    fs.writeFileSync(path.join(ctx, 'deps.txt'), 'dep-v2\n');
    const a = build('Dockerfile.a', 'app-a');
    t.equal(a.status, 0, a.stderr);
    t.same(cachedSteps(a.stdout), [2], 'only the step before the changed COPY is cached');
    t.equal(d.cli(['run', '--rm', '--entrypoint', 'cat', 'app-a', '/app/deps.txt']).stdout, 'dep-v2\n');

    const nc = build('Dockerfile.a', 'app-a', ['--no-cache']);
    t.equal(nc.status, 0, nc.stderr);
    t.equal(usingCache(nc.stdout), 0, '--no-cache uses nothing');
  });

  await t.test('a failing RUN leaves nothing behind', async (t) => {
    write(ctx, { 'Dockerfile.fail': 'FROM base\nRUN echo before-fail; false\nRUN echo never\n' });
    const layersDir = path.join(d.root, 'layers');
    const layersBefore = fs.readdirSync(layersDir).sort();
    const imagesBefore = d.cli(['images', '-q']).stdout;
    const r = build('Dockerfile.fail', 'failed');
    t.not(r.status, 0, 'non-zero exit');
    t.match(r.stdout, /before-fail/, 'the command output is shown');
    t.match(r.stderr, /The command '\/bin\/sh -c echo before-fail; false' returned a non-zero code: 1/);
    t.notMatch(r.stdout, /Step 3\/3/, 'the build stopped');
    t.not(d.cli(['image', 'inspect', 'failed']).status, 0, 'nothing tagged');
    t.equal(d.cli(['images', '-q']).stdout, imagesBefore, 'no new image');
    t.equal(d.cli(['ps', '-a', '-q']).stdout.trim(), '', 'no containers');
    t.same(mountsUnder(d.root), [], 'no mounts under the root');
    t.same(fs.readdirSync(layersDir).sort(), layersBefore, 'no orphan layers');
    t.same(fs.readdirSync(path.join(d.root, 'tmp')), [], 'no temp dirs');
  });

  await t.test('Dockerfile errors name the file and line', async (t) => {
    write(ctx, {
      'Dockerfile.typo': 'FROM base\n# a comment\nFORM base\n',
      'Dockerfile.missing': 'FROM base\nCOPY nothere.txt /x\n',
      'Dockerfile.url': 'FROM base\nADD https://example.com/file.tar /x/\n',
      'Dockerfile.noimage': 'FROM no-such-image\n',
    });
    const typo = build('Dockerfile.typo', 'x');
    t.not(typo.status, 0);
    t.match(typo.stderr, 'Dockerfile.typo:3: unknown instruction: FORM');
    const miss = build('Dockerfile.missing', 'x');
    t.not(miss.status, 0);
    t.match(miss.stderr, /Dockerfile.missing:2: .*nothere.txt/);
    const url = build('Dockerfile.url', 'x');
    t.not(url.status, 0);
    t.match(url.stderr, /Dockerfile.url:2: .*URL is not supported/);
    const noimg = build('Dockerfile.noimage', 'x');
    t.not(noimg.status, 0);
    t.match(noimg.stderr, /no such image: no-such-image/);
  });

  await t.test('instructions: ENV/ARG substitution, WORKDIR, USER, LABEL, globs, --chown, .dockerignore, ADD tar', async (t) => {
    const c2 = path.join(d.ws, 'ctx2');
    write(c2, {
      'files/a.conf': 'A\n',
      'files/b.conf': 'B\n',
      'files/skip.log': 'log\n',
      'files/sub/c.conf': 'C\n',
      'secret.txt': 'no\n',
      '.dockerignore': '# ignore\nsecret.txt\n**/*.log\n',
      'tree/t1': 't1\n',
      Dockerfile: [
        'FROM base',
        'ARG VERSION=1.0',
        'ARG FROM_CLI',
        'ENV APP_HOME=/srv/app \\',
        '    GREETING="hello world"',
        'LABEL version=$VERSION name="my app"',
        'WORKDIR ${APP_HOME}',
        'COPY files/*.conf ./conf/',
        'COPY --chown=user:user files/sub ${APP_HOME}/sub',
        'ADD tree.tar.gz /extracted/',
        'RUN echo "$GREETING $VERSION ${FROM_CLI:-unset} ${MISSING:-dflt}" > out.txt && chmod 640 out.txt',
        'EXPOSE 8080',
        'USER 1000',
        'CMD ["sh", "-c", "id -u; pwd"]',
      ].join('\n'),
    });
    fs.chmodSync(path.join(c2, 'files/a.conf'), 0o600);
    fs.writeFileSync(path.join(c2, 'files/run.sh'), '#!/bin/sh\n', { mode: 0o755 });
    const { runOk } = await import('./lib/exec');
    runOk('tar', ['-C', path.join(c2, 'tree'), '-czf', path.join(c2, 'tree.tar.gz'), '.']);
    const r = d.cli(['build', '-t', 'features', '--build-arg', 'FROM_CLI=cli', c2]);
    t.equal(r.status, 0, `build: ${r.stderr}\n${r.stdout}`);
    const i = inspect(d, 'features');
    t.ok(i.Config.Env.includes('GREETING=hello world'));
    t.equal(i.Config.WorkingDir, '/srv/app');
    t.equal(i.Config.User, '1000');
    t.same(i.Config.Labels, { version: '1.0', name: 'my app' });
    const run = (cmd: string) => d.cli(['run', '--rm', '-u', '0', 'features', 'sh', '-c', cmd]).stdout;
    t.equal(run('cat out.txt'), 'hello world 1.0 cli dflt\n', 'substitution and build args');
    t.equal(run('ls conf'), 'a.conf\nb.conf\n', 'glob copies only the matching files');
    t.equal(run('stat -c "%a %u" conf/a.conf'), '600 0\n', 'modes kept, owned by root');
    t.equal(run('stat -c "%u:%g" sub sub/c.conf'), '1000:1000\n1000:1000\n', '--chown applies');
    t.equal(run('cat /extracted/t1'), 't1\n', 'ADD extracts a local tar');
    t.equal(d.cli(['run', '--rm', 'features']).stdout, '1000\n/srv/app\n', 'CMD, USER and WORKDIR apply at run time');

    write(c2, { 'Dockerfile.ign': 'FROM base\nCOPY secret.txt /\n', 'Dockerfile.ign2': 'FROM base\nCOPY files /files/\n' });
    const ign = d.cli(['build', '-f', path.join(c2, 'Dockerfile.ign'), c2]);
    t.not(ign.status, 0, '.dockerignore hides files');
    t.match(ign.stderr, /secret.txt/);
    t.equal(d.cli(['build', '-t', 'ign2', '-f', path.join(c2, 'Dockerfile.ign2'), c2]).status, 0);
    t.equal(d.cli(['run', '--rm', 'ign2', 'find', '/files', '-name', '*.log']).stdout, '', 'ignored files are not copied');
  });
});
