// daemon/store on a real SQLite file: migrations, pragmas, CRUD, resolution, cascades, references.
import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { AmbiguousError, ConflictError, DomainError, NotFoundError, SchemaVersionError } from '../daemon/model/errors';
import {
  SCHEMA_VERSION,
  Store,
  migrate,
  migrations,
  openDatabase,
  type ImageConfig,
} from '../daemon/store';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-store-'));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

let n = 0;
function dbFile(): string {
  return path.join(tmp, `db${++n}`, 'strata.db');
}

function hex(c: string): string {
  return c.repeat(64).slice(0, 64);
}

const config: ImageConfig = {
  env: ['PATH=/usr/bin:/bin'],
  cmd: ['/bin/sh'],
  entrypoint: null,
  workingDir: '/',
  user: '',
  labels: { a: 'b' },
  exposedPorts: ['80/tcp'],
  volumes: ['/data'],
};

function openStore(t: Test): Store {
  const s = Store.open(dbFile());
  t.teardown(() => s.close());
  return s;
}

/** Two layers L1 <- L2 and image A = [L1, L2] tagged alpine:latest. */
function seed(s: Store): { l1: string; l2: string; a: string } {
  const l1 = `sha256:${hex('1')}`;
  const l2 = `sha256:${hex('2')}`;
  s.layers.insert({ id: l1, parent: null, diffId: `sha256:${hex('d')}`, size: 100, state: 'ready' });
  s.layers.insert({ id: l2, parent: l1, diffId: `sha256:${hex('e')}`, size: 50, state: 'ready' });
  const a = `sha256:${'ab12'}${hex('0').slice(4)}`;
  s.images.insert({
    id: a,
    config,
    layers: [l1, l2],
    history: [{ created: '2024-01-01T00:00:00.000Z', createdBy: 'import', comment: '', emptyLayer: false, size: 150 }],
  });
  s.images.tag('alpine', a);
  return { l1, l2, a };
}

t.test('migrations apply, pragmas are set, reopen is idempotent', (t) => {
  const file = dbFile();
  const db = openDatabase(file);
  t.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
  t.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  t.equal(db.pragma('foreign_keys', { simple: true }), 1);
  t.equal(db.pragma('busy_timeout', { simple: true }), 5000);
  t.equal(db.pragma('synchronous', { simple: true }), 1, 'NORMAL');
  const tables = (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`).all() as { name: string }[]).map((r) => r.name);
  t.same(tables, ['build_cache', 'container_volumes', 'containers', 'image_layers', 'image_refs', 'images', 'layers', 'volumes']);
  db.prepare(`INSERT INTO volumes (name, created) VALUES ('keep', 'x')`).run();
  db.close();

  const again = openDatabase(file);
  t.equal(again.pragma('user_version', { simple: true }), SCHEMA_VERSION);
  t.equal((again.prepare(`SELECT count(*) AS n FROM volumes`).get() as { n: number }).n, 1, 'data survives reopen');
  again.close();
  t.end();
});

t.test('a database from a newer strata is refused', (t) => {
  const file = dbFile();
  openDatabase(file).close();
  const raw = new BetterSqlite3(file);
  raw.pragma(`user_version = ${SCHEMA_VERSION + 5}`);
  raw.close();
  t.throws(() => openDatabase(file), SchemaVersionError);
  t.throws(() => openDatabase(file), { message: new RegExp(`schema version ${SCHEMA_VERSION + 5}.*newer strata`) });
  const err = (() => {
    try {
      openDatabase(file);
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  t.ok(err instanceof DomainError, 'a DomainError');
  t.equal((err as SchemaVersionError).found, SCHEMA_VERSION + 5);
  const still = new BetterSqlite3(file);
  t.equal(still.pragma('user_version', { simple: true }), SCHEMA_VERSION + 5, 'refused database is left untouched');
  still.close();
  t.end();
});

t.test('a failing migration rolls back and leaves the version alone', (t) => {
  const file = dbFile();
  openDatabase(file).close();
  const db = new BetterSqlite3(file);
  const broken = [...migrations, { version: SCHEMA_VERSION + 1, name: 'broken', sql: 'CREATE TABLE extra (x); SELECT * FROM no_such_table;' }];
  t.throws(() => migrate(db, broken));
  t.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
  t.equal(db.prepare(`SELECT count(*) AS n FROM sqlite_master WHERE name = 'extra'`).pluck().get(), 0);
  const ok = [...migrations, { version: SCHEMA_VERSION + 1, name: 'extra', sql: 'CREATE TABLE extra (x);' }];
  t.same(migrate(db, ok), { from: SCHEMA_VERSION, to: SCHEMA_VERSION + 1, applied: [`${SCHEMA_VERSION + 1} extra`] });
  t.same(migrate(db, ok).applied, [], 'idempotent');
  db.close();
  t.end();
});

t.test('layers', (t) => {
  const s = openStore(t);
  const { l1, l2 } = seed(s);
  t.same(s.layers.get(l2), {
    id: l2,
    parent: l1,
    diffId: `sha256:${hex('e')}`,
    size: 50,
    created: s.layers.get(l2)!.created,
    createdBy: '',
    state: 'ready',
  });
  t.equal(s.layers.get('sha256:nope'), undefined);
  t.equal(s.layers.findByParentAndDiffId(null, `sha256:${hex('d')}`)?.id, l1);
  t.equal(s.layers.findByParentAndDiffId(l1, `sha256:${hex('e')}`)?.id, l2);
  t.equal(s.layers.findByParentAndDiffId(null, `sha256:${hex('e')}`), undefined);

  const l3 = `sha256:${hex('3')}`;
  s.layers.insert({ id: l3, parent: l2, diffId: `sha256:${hex('f')}`, createdBy: 'RUN x' });
  t.equal(s.layers.findByParentAndDiffId(l2, `sha256:${hex('f')}`), undefined, 'incomplete layers are not reused');
  t.same(s.layers.listIncomplete().map((l) => l.id), [l3]);
  s.layers.markReady(l3, 7);
  t.same(s.layers.listIncomplete(), []);
  t.equal(s.layers.get(l3)!.size, 7);
  t.same(s.layers.all().map((l) => l.id), [l1, l2, l3]);
  t.same(s.layers.stats(), { count: 3, size: 157 });

  t.throws(() => s.layers.insert({ id: l3, parent: null, diffId: 'x' }), ConflictError);
  t.throws(() => s.layers.insert({ id: 'sha256:orphan', parent: 'sha256:missing', diffId: 'x' }), NotFoundError);
  t.throws(() => s.layers.markReady('sha256:missing'), NotFoundError);
  t.throws(() => s.layers.delete(l2), ConflictError, 'parent of l3 and in an image');
  t.same(s.layers.references(l2), { images: 1, children: 1, buildCache: 0 });
  t.notOk(s.layers.isReferenced(l3));
  s.layers.delete(l3);
  t.equal(s.layers.get(l3), undefined);
  t.throws(() => s.layers.delete(l3), NotFoundError);
  t.end();
});

t.test('images: CRUD, refs, tag moves, cascade', (t) => {
  const s = openStore(t);
  const { l1, l2, a } = seed(s);
  const img = s.images.get(a)!;
  t.same(img.config, config);
  t.equal(img.topLayer, l2);
  t.equal(img.parent, null);
  t.same(img.history[0], { created: '2024-01-01T00:00:00.000Z', createdBy: 'import', comment: '', emptyLayer: false, size: 150 });
  t.same(s.images.layersOf(a).map((l) => l.id), [l1, l2]);
  t.equal(s.images.size(a), 150);
  t.throws(() => s.images.insert({ id: a, config, layers: [] }), ConflictError);
  t.throws(() => s.images.insert({ id: 'sha256:bad', config, layers: ['sha256:missing'] }), NotFoundError);
  t.equal(s.images.get('sha256:bad'), undefined, 'failed insert rolled back');

  const b = `sha256:${'ab34'}${hex('0').slice(4)}`;
  s.images.insert({ id: b, config: { ...config, cmd: ['echo'] }, layers: [l1], parent: a });
  t.same(s.images.layersOf(b).map((l) => l.id), [l1]);
  t.equal(s.images.tag('busybox:1.36', b), undefined);
  t.equal(s.images.tag('alpine:3', a), undefined);
  t.same(s.images.refsOf(a), ['alpine:3', 'alpine:latest']);

  // moving a ref reports the previous target
  t.equal(s.images.tag('alpine:3', b), a);
  t.same(s.images.refsOf(a), ['alpine:latest']);
  t.same(s.images.refsOf(b), ['alpine:3', 'busybox:1.36']);
  t.throws(() => s.images.tag('x:y', 'sha256:missing'), NotFoundError);

  const list = s.images.list();
  t.same(list.map((i) => [i.id, i.refs, i.size]).sort(), [
    [a, ['alpine:latest'], 150],
    [b, ['alpine:3', 'busybox:1.36'], 100],
  ].sort());

  t.equal(s.images.untag('alpine:3'), b);
  t.throws(() => s.images.untag('alpine:3'), NotFoundError);
  t.same(s.images.imagesUsingLayer(l1), [a, b]);
  t.same(s.images.imagesUsingLayer(l2), [a]);
  const sets = s.images.layerSets();
  t.same(sets.get(a)!.map((l) => l.id), [l1, l2]);
  t.same(sets.get(b)!.map((l) => l.id), [l1]);

  // FK cascade: deleting the image drops its refs and chain rows
  s.images.delete(b);
  t.equal(s.images.get(b), undefined);
  t.equal(s.images.refTarget('busybox:1.36'), undefined);
  t.same(s.images.imagesUsingLayer(l1), [a]);
  const rows = s.db.prepare(`SELECT count(*) AS n FROM image_refs WHERE image_id = ?`).get(b) as { n: number };
  t.equal(rows.n, 0);
  t.throws(() => s.images.delete(b), NotFoundError);
  t.end();
});

t.test('image resolve: name, tag, id, bare hex, prefix, ambiguity', (t) => {
  const s = openStore(t);
  const { l1, a } = seed(s);
  const b = `sha256:${'ab34'}${hex('0').slice(4)}`;
  s.images.insert({ id: b, config, layers: [l1] });
  s.images.tag('localhost:5000/team/app', b);

  t.equal(s.images.resolve('alpine')?.id, a, 'tag defaults to latest');
  t.equal(s.images.resolve('alpine:latest')?.id, a);
  t.equal(s.images.resolve('alpine:3'), undefined);
  t.equal(s.images.resolve('localhost:5000/team/app')?.id, b, 'registry port is not a tag');
  t.equal(s.images.resolve('localhost:5000/team/app:latest')?.id, b);
  t.equal(s.images.resolve(a)?.id, a, 'full id');
  t.equal(s.images.resolve(a.slice(7))?.id, a, 'bare 64-hex id');
  t.equal(s.images.resolve('ab12')?.id, a, '4-char prefix');
  t.equal(s.images.resolve('sha256:ab34')?.id, b, 'sha256: prefix');
  t.equal(s.images.resolve('ab1'), undefined, 'prefix too short');
  t.equal(s.images.resolve('ffff'), undefined);
  t.equal(s.images.resolve(''), undefined);
  t.equal(s.images.resolve('ab'), undefined, 'shared 2-char prefix: below the minimum, no lookup');
  t.end();
});

t.test('ambiguous image prefix throws AmbiguousError (a conflict)', (t) => {
  const s = openStore(t);
  const { l1 } = seed(s);
  s.images.insert({ id: `sha256:${'ab34'}${hex('0').slice(4)}`, config, layers: [l1] });
  s.images.insert({ id: `sha256:${'ab12f'}${hex('0').slice(5)}`, config, layers: [] });
  t.throws(() => s.images.resolve('ab12'), AmbiguousError);
  const err = (() => {
    try {
      s.images.resolve('sha256:ab12');
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  t.ok(err instanceof AmbiguousError, 'sha256: prefix is ambiguous too');
  t.equal((err as AmbiguousError).kind, 'conflict');
  t.equal((err as AmbiguousError).candidates.length, 2);
  t.equal(s.images.resolve('ab12f')?.id, `sha256:${'ab12f'}${hex('0').slice(5)}`);
  // a ref named like a hex prefix wins over the prefix
  s.images.tag('ab12', `sha256:${'ab34'}${hex('0').slice(4)}`);
  t.equal(s.images.resolve('ab12')?.id, `sha256:${'ab34'}${hex('0').slice(4)}`);
  t.end();
});

t.test('a layer shared by two images is deletable only after both go', (t) => {
  const s = openStore(t);
  const { l1, l2, a } = seed(s);
  const b = `sha256:${hex('b')}`;
  s.images.insert({ id: b, config, layers: [l1, l2] });
  s.buildCache.put('k1', l2, b);
  t.ok(s.layers.isReferenced(l2));

  s.images.delete(a);
  t.ok(s.layers.isReferenced(l2), 'still used by b');
  t.throws(() => s.layers.delete(l2), ConflictError);

  s.images.delete(b);
  t.equal(s.buildCache.get('k1')!.imageId, null, 'cache entry keeps the layer, loses the image');
  t.ok(s.layers.isReferenced(l2), 'build cache still points at it');
  t.same(s.layers.references(l2), { images: 0, children: 0, buildCache: 1 });
  t.equal(s.buildCache.size(), 50);
  s.buildCache.clear();
  t.notOk(s.layers.isReferenced(l2));
  t.ok(s.layers.isReferenced(l1), 'l1 is l2 parent');
  s.layers.delete(l2);
  t.notOk(s.layers.isReferenced(l1));
  s.layers.delete(l1);
  t.same(s.layers.all(), []);
  t.end();
});

t.test('containers', (t) => {
  const s = openStore(t);
  const { a } = seed(s);
  const c1 = hex('c');
  const c2 = 'cd' + hex('0').slice(2);
  s.volumes.insert({ name: 'data', labels: { x: 'y' } });
  const anon = hex('9');
  s.volumes.insert({ name: anon, anonymous: true });
  const mounts = [
    { type: 'volume' as const, source: 'data', target: '/data', readonly: false, resolvedSource: '/var/lib/strata/volumes/data/_data' },
    { type: 'bind' as const, source: '/etc', target: '/host-etc', readonly: true, resolvedSource: '/etc' },
  ];
  const row = s.containers.insert({ id: c1, name: 'web', imageId: a, imageRef: 'alpine', mounts }, ['data', anon]);
  t.equal(row.state, 'created');
  t.same(s.containers.get(c1), row);
  t.same(s.containers.get(c1)!.mounts, mounts);
  t.same(s.volumes.usedBy('data'), [c1]);
  t.throws(() => s.containers.insert({ id: c2, name: 'web', imageId: a, imageRef: 'alpine' }), ConflictError, 'name taken');
  t.throws(() => s.containers.insert({ id: c2, name: 'x', imageId: 'sha256:missing', imageRef: 'x' }), NotFoundError);
  t.throws(() => s.containers.insert({ id: c2, name: 'y', imageId: a, imageRef: 'x' }, ['nope']), NotFoundError);
  t.equal(s.containers.get(c2), undefined, 'rolled back');
  s.containers.insert({ id: c2, name: 'db', imageId: a, imageRef: a });

  t.equal(s.containers.resolve('web')?.id, c1);
  t.equal(s.containers.resolve('/web')?.id, c1);
  t.equal(s.containers.resolve(c1)?.id, c1);
  t.equal(s.containers.resolve('cccc')?.id, c1);
  t.equal(s.containers.resolve('cd')?.id, c2);
  t.throws(() => s.containers.resolve('c'), AmbiguousError);
  t.equal(s.containers.resolve('nope'), undefined);

  t.equal(s.containers.countByImage(a), 2);
  t.throws(() => s.images.delete(a), ConflictError, 'image in use');
  t.same(s.containers.list(false), []);
  t.equal(s.containers.list(true).length, 2);
  s.containers.setState(c1, 'mounted', '/mnt/c1');
  t.same(s.containers.listMounted().map((c) => [c.id, c.mountpoint]), [[c1, '/mnt/c1']]);
  t.same(s.containers.list(false).map((c) => c.id), [c1]);
  t.same(s.counts(), { images: 1, layers: 2, containers: 2, containersMounted: 1, volumes: 2 });
  s.containers.setState(c1, 'created', '/ignored');
  t.equal(s.containers.get(c1)!.mountpoint, null);
  t.throws(() => s.containers.setState('f'.repeat(64), 'mounted', '/x'), NotFoundError);

  t.same(s.containers.delete(c1).sort(), ['data', anon].sort(), 'returns attached volumes');
  t.same(s.volumes.usedBy('data'), [], 'attachments cascade');
  t.throws(() => s.containers.delete(c1), NotFoundError);
  s.containers.delete(c2);
  s.images.delete(a);
  t.equal(s.images.count(), 0);
  t.end();
});

t.test('volumes', (t) => {
  const s = openStore(t);
  const { a } = seed(s);
  const v = s.volumes.insert({ name: 'data', labels: { a: '1' }, options: { o: 'x' } });
  t.same(s.volumes.get('data'), v);
  t.same(v.driver, 'local');
  t.equal(v.anonymous, false);
  t.throws(() => s.volumes.insert({ name: 'data' }), ConflictError);
  s.volumes.insert({ name: 'other', anonymous: true });
  const c = hex('a');
  s.containers.insert({ id: c, name: 'c', imageId: a, imageRef: 'alpine' });
  s.volumes.attach(c, 'data');
  s.volumes.attach(c, 'data');
  t.throws(() => s.volumes.attach(c, 'missing'), NotFoundError);
  t.throws(() => s.volumes.attach(hex('f'), 'data'), NotFoundError);
  t.same(s.volumes.list().map((x) => [x.name, x.usedBy, x.anonymous]), [
    ['data', [c], false],
    ['other', [], true],
  ]);
  t.throws(() => s.volumes.delete('data'), ConflictError);
  t.same(s.volumes.detachAll(c), ['data']);
  s.volumes.delete('data');
  t.equal(s.volumes.get('data'), undefined);
  t.throws(() => s.volumes.delete('data'), NotFoundError);
  t.end();
});

t.test('build cache', (t) => {
  const s = openStore(t);
  const { l2, a } = seed(s);
  t.equal(s.buildCache.get('k'), undefined);
  s.buildCache.put('k', l2, a);
  t.match(s.buildCache.get('k'), { key: 'k', layerId: l2, imageId: a });
  s.buildCache.put('k', l2, null);
  t.equal(s.buildCache.get('k')!.imageId, null, 'put replaces');
  t.throws(() => s.buildCache.put('bad', 'sha256:missing'), NotFoundError);
  s.buildCache.put('k2', null, null);
  t.equal(s.buildCache.all().length, 2);
  t.equal(s.buildCache.clear(), 2);
  t.same(s.buildCache.all(), []);
  t.end();
});

t.test('transactions roll back multi-row writes', (t) => {
  const s = openStore(t);
  t.throws(() =>
    s.transaction(() => {
      s.volumes.insert({ name: 'one' });
      s.volumes.insert({ name: 'one' });
    }),
  );
  t.equal(s.volumes.get('one'), undefined);
  t.end();
});
