// uidmapping= / gidmapping= and the override_stat xattr: the parser and the mapping as units, then
// on a real mount the edge cases: ids outside every range, chown to an unmapped id, the overflow
// id, the caller's ids on creation, copy-up keeping the owner, squash_to_* winning over mappings.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { IdMap, parseIdMapping } from '../daemon/union/idmap';
import { formatOverride, parseOverride } from '../daemon/union/override-stat';
import { run, sh } from './lib/exec';
import { missingCapability, mountStrata, strataProgram } from './lib/mount-union';
import { makeWorkspace } from './lib/workspace';

t.test('parseIdMapping', async (t) => {
  t.same(parseIdMapping('0:1000:1'), [{ disk: 0, shown: 1000, count: 1 }]);
  t.same(parseIdMapping(':0:100:10000'), [{ disk: 0, shown: 100, count: 10000 }], 'leading colon, as containers-storage writes it');
  t.same(parseIdMapping('0:1000:1:1:1001:65535'), [
    { disk: 0, shown: 1000, count: 1 },
    { disk: 1, shown: 1001, count: 65535 },
  ]);
  for (const bad of ['', '0:1000', 'abc:1:1', '0:0:0', '0:-1:5', '4294967295:0:2', '1:2:3:4']) {
    t.throws(() => parseIdMapping(bad), /invalid mapping/, `'${bad}' is refused`);
  }
});

t.test('IdMap: stored ids to shown ones and back, unmapped ones', async (t) => {
  const m = new IdMap(parseIdMapping('0:1000:10:100:5000:2'), 65534);
  t.equal(m.toShown(0), 1000);
  t.equal(m.toShown(9), 1009);
  t.equal(m.toShown(10), 65534, 'past the end of a range: overflow');
  t.equal(m.toShown(101), 5001);
  t.equal(m.toShown(102), 65534);
  t.equal(m.toDisk(1009), 9);
  t.equal(m.toDisk(5000), 100);
  t.equal(m.toDisk(999), null, 'below a range: unmapped');
  t.equal(m.toDisk(0), null);
  const id = new IdMap([], 65534);
  t.ok(id.identity);
  t.equal(id.toShown(12345), 12345);
  t.equal(id.toDisk(12345), 12345);
});

t.test('override_stat values', async (t) => {
  t.same(parseOverride('1000:1000:755'), { uid: 1000, gid: 1000, mode: 0o755 });
  t.same(parseOverride('0:0:4755:file'), { uid: 0, gid: 0, mode: 0o4755 }, 'a trailing type is allowed');
  t.equal(parseOverride('1000:1000'), null);
  t.equal(parseOverride('a:0:755'), null);
  t.equal(parseOverride('0:0:999'), null, 'mode is octal');
  t.equal(formatOverride({ uid: 7, gid: 8, mode: 0o640 }), '7:8:640');
});

const skip = missingCapability({ fuse: true });

function ids(p: string): [number, number] {
  const st = fs.lstatSync(p);
  return [st.uid, st.gid];
}

function layers(ws: string) {
  const d = { lower: `${ws}/lower`, upper: `${ws}/upper`, work: `${ws}/work`, mnt: `${ws}/mnt` };
  for (const p of Object.values(d)) fs.mkdirSync(p, { recursive: true });
  fs.chmodSync(d.lower, 0o777);
  fs.chmodSync(d.upper, 0o777); // the merged root takes the upper's mode: callers may create in it
  for (const [name, id] of [['f0', 0], ['f5', 5], ['f99', 99]] as const) {
    fs.writeFileSync(`${d.lower}/${name}`, name);
    fs.chownSync(`${d.lower}/${name}`, id, id);
  }
  return d;
}

t.test('mappings on a mount', { skip: skip ?? false }, async (t) => {
  const ws = makeWorkspace(t, 'idmap');
  const d = layers(ws);
  mountStrata(t, { lowers: [d.lower], upper: d.upper, work: d.work, mnt: d.mnt, extraOpts: ['uidmapping=0:1000:10', 'gidmapping=:0:1000:10'] });
  const overflow = Number(fs.readFileSync('/proc/sys/kernel/overflowuid', 'utf8'));

  t.same(ids(`${d.mnt}/f0`), [1000, 1000], 'stored 0 shows as 1000');
  t.same(ids(`${d.mnt}/f5`), [1005, 1005]);
  t.same(ids(`${d.mnt}/f99`), [overflow, overflow], 'an id outside every range shows as the overflow id');
  t.same(ids(d.mnt), [1000, 1000], 'the root too');

  // A caller's ids are stored through the mapping.
  const r = sh(d.mnt, 'echo x > byuser && mkdir dir && ln -s f0 link', { asUser: { uid: 1003, gid: 1004 } });
  t.equal(r.status, 0, r.stderr);
  for (const f of ['byuser', 'dir', 'link']) {
    t.same(ids(`${d.mnt}/${f}`), [1003, 1004], `${f} shows the caller`);
    t.same(ids(`${d.upper}/${f}`), [3, 4], `${f} is stored as 3:4`);
  }
  // root is unmapped here: what it creates is stored (and shown) as the overflow id, as fuse-overlayfs does.
  fs.writeFileSync(`${d.mnt}/byroot`, 'x');
  t.same(ids(`${d.upper}/byroot`), [overflow, overflow]);

  // chown maps back; an id outside the mapping is EINVAL, as the kernel refuses an unmapped id.
  fs.chownSync(`${d.mnt}/f0`, 1007, 1002);
  t.same(ids(`${d.mnt}/f0`), [1007, 1002]);
  t.same(ids(`${d.upper}/f0`), [7, 2]);
  t.throws(() => fs.chownSync(`${d.mnt}/f0`, 5, 1002), { code: 'EINVAL' }, 'chown to an unmapped uid');
  t.throws(() => fs.chownSync(`${d.mnt}/f0`, 1007, 999), { code: 'EINVAL' }, 'chown to an unmapped gid');
  t.throws(() => fs.chownSync(`${d.mnt}/f0`, overflow, overflow), { code: 'EINVAL' }, 'chown to the overflow id');
  t.same(ids(`${d.mnt}/f0`), [1007, 1002], 'unchanged after the refusals');

  // Copy-up keeps the stored owner, so the mapped owner shows unchanged.
  fs.chmodSync(`${d.mnt}/f5`, 0o600);
  t.same(ids(`${d.upper}/f5`), [5, 5]);
  t.same(ids(`${d.mnt}/f5`), [1005, 1005]);
  fs.appendFileSync(`${d.mnt}/f99`, 'more');
  t.same(ids(`${d.upper}/f99`), [99, 99], 'an unmapped owner is kept through copy-up');
  t.same(ids(`${d.mnt}/f99`), [overflow, overflow]);
});

t.test('squash_to_uid/gid win over the mappings', { skip: skip ?? false }, async (t) => {
  const ws = makeWorkspace(t, 'idmap');
  const d = layers(ws);
  mountStrata(t, { lowers: [d.lower], upper: d.upper, work: d.work, mnt: d.mnt, extraOpts: ['uidmapping=0:1000:10', 'gidmapping=0:1000:10', 'squash_to_uid=42', 'squash_to_gid=43'] });
  for (const f of ['f0', 'f5', 'f99']) t.same(ids(`${d.mnt}/${f}`), [42, 43], f);
});

t.test('bad mappings are refused by name', { skip: skip ?? false }, async (t) => {
  const ws = makeWorkspace(t, 'idmap');
  const d = layers(ws);
  const r = run(strataProgram(), ['-o', `lowerdir=${d.lower},uidmapping=0:1000`, d.mnt]);
  t.not(r.status, 0);
  t.match(r.stderr, /uidmapping: invalid mapping '0:1000'/);
  const r2 = run(strataProgram(), ['-o', `lowerdir=${d.lower},xattr_permissions=3`, d.mnt]);
  t.match(r2.stderr, /xattr_permissions takes 0, 1 or 2/);
});

t.test('xattr_permissions=2: owners and modes in user.containers.override_stat', { skip: skip ?? false }, async (t) => {
  const ws = makeWorkspace(t, 'idmap');
  const d = layers(ws);
  // A lower layer whose root selects overrides: its files show what their xattr says.
  fs.writeFileSync(`${d.lower}/ov`, 'x');
  run('setfattr', ['-n', 'user.containers.override_stat', '-v', '0:0:755', d.lower]);
  run('setfattr', ['-n', 'user.containers.override_stat', '-v', '7:8:4711', `${d.lower}/ov`]);
  mountStrata(t, { lowers: [d.lower], upper: d.upper, work: d.work, mnt: d.mnt, extraOpts: ['xattr_permissions=2'] });
  const ov = fs.statSync(`${d.mnt}/ov`);
  t.same([ov.uid, ov.gid, ov.mode & 0o7777], [7, 8, 0o4711], 'a lower file shows its override');
  fs.chownSync(`${d.mnt}/f5`, 1234, 4321);
  fs.chmodSync(`${d.mnt}/f5`, 0o640);
  const st = fs.statSync(`${d.mnt}/f5`);
  t.same([st.uid, st.gid, st.mode & 0o7777], [1234, 4321, 0o640], 'chown and chmod show through the override');
  t.same(ids(`${d.upper}/f5`), [5, 5], 'the real owner is left alone');
  t.equal(run('getfattr', ['--only-values', '-n', 'user.containers.override_stat', `${d.upper}/f5`]).stdout, '1234:4321:640');
  fs.chmodSync(`${d.mnt}/ov`, 0o700);
  const ov2 = fs.statSync(`${d.mnt}/ov`);
  t.same([ov2.uid, ov2.gid, ov2.mode & 0o7777], [7, 8, 0o700], 'a copied-up override keeps its owner');
});
