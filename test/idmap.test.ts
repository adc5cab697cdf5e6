// uidmapping= / gidmapping= and the override_stat xattr: the parser and the mapping as units, then
// on a real mount the edge cases: ids outside every range, chown to an unmapped id, the overflow
// id, the caller's ids on creation, copy-up keeping the owner, squash_to_* winning over mappings.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { IdMap, parseIdMapping } from '../daemon/union/idmap';
import { formatOverride, parseOverride } from '../daemon/union/override-stat';
import { LayerXattrs } from '../daemon/union/layer-xattrs';
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
  t.same(parseOverride('0:0:4755:file'), { uid: 0, gid: 0, mode: 0o4755, type: 'file', fileType: 0o100000 }, 'a trailing type');
  // containers-storage's types (FormatContainersOverrideXattrDevice): matched as prefixes, as fuse-overlayfs does.
  t.same(parseOverride('0:5:0640:char-1-3'), { uid: 0, gid: 5, mode: 0o640, type: 'char-1-3', fileType: 0o020000, rdev: { major: 1, minor: 3 } });
  t.same(parseOverride('0:0:660:block-8-16'), { uid: 0, gid: 0, mode: 0o660, type: 'block-8-16', fileType: 0o060000, rdev: { major: 8, minor: 16 } });
  t.same(parseOverride('1:1:755:directory')?.fileType, 0o040000);
  t.same(parseOverride('1:1:777:symlink')?.fileType, 0o120000);
  t.same(parseOverride('1:1:644:pipe')?.fileType, 0o010000);
  t.same(parseOverride('1:1:755:socket')?.fileType, 0o140000);
  t.equal(parseOverride('0:0:644:door'), null, 'an unknown type');
  t.equal(parseOverride('0:0:644:char-1'), null, 'a device without its minor');
  t.equal(parseOverride('0:0:644:char-1-3:x'), null, 'a fifth field');
  t.equal(formatOverride({ uid: 1, gid: 2, mode: 0o600, type: 'char-1-3' }), '1:2:600:char-1-3');
  t.equal(parseOverride('1000:1000'), null);
  t.equal(parseOverride('a:0:755'), null);
  t.equal(parseOverride('0:0:999'), null, 'mode is octal');
  t.equal(formatOverride({ uid: 7, gid: 8, mode: 0o640 }), '7:8:640');
});

t.test('xattr names per layer: security.* and overlay names renamed where user.containers.override_stat rules', async (t) => {
  const ws = makeWorkspace(t, 'idmap');
  const [upper, plain, containers] = ['upper', 'plain', 'containers'].map((n) => fs.mkdirSync(`${ws}/${n}`) ?? `${ws}/${n}`);
  run('setfattr', ['-n', 'user.containers.override_stat', '-v', '0:0:755', containers]);
  const x = new LayerXattrs([upper, plain, containers], 2);
  t.same(x.overrides, ['user.containers.override_stat', null, 'user.containers.override_stat']);
  t.equal(x.stored(0, 'security.selinux'), 'user.containers.override_security.selinux');
  t.equal(x.stored(0, 'trusted.overlay.opaque'), 'user.containers.override_trusted.overlay.opaque');
  t.equal(x.stored(0, 'user.overlay.opaque'), 'user.containers.override_user.overlay.opaque');
  t.equal(x.stored(0, 'user.foo'), 'user.foo');
  t.equal(x.stored(0, 'user.containers.override_stat'), 'user.containers.override_stat');
  t.equal(x.stored(0, 'security.' + 'a'.repeat(230)), null, 'too long once renamed');
  t.equal(x.shown(0, 'user.containers.override_security.selinux'), 'security.selinux');
  t.equal(x.shown(0, 'security.selinux'), null, 'a real security.* xattr is not the union\'s');
  t.equal(x.shown(0, 'user.overlay.opaque'), null);
  t.equal(x.shown(0, 'user.containers.override_user.foo'), 'user.containers.override_user.foo', 'only inaccessible names are decoded');
  t.equal(x.stored(1, 'security.selinux'), 'security.selinux', 'a layer without the containers override keeps names');
  t.equal(x.stored(1, 'user.overlay.opaque'), null);
  t.equal(x.shown(1, 'user.containers.override_security.selinux'), 'user.containers.override_security.selinux');
  // Copy-up: decoded from the source layer, encoded for the upper; override xattrs are written, not copied.
  t.equal(x.copied(1, 'security.selinux'), 'user.containers.override_security.selinux');
  t.equal(x.copied(2, 'user.containers.override_security.ima'), 'user.containers.override_security.ima');
  t.equal(x.copied(2, 'user.containers.override_stat'), null);
  t.equal(new LayerXattrs([upper, plain], 1).override(0), 'security.fuseoverlayfs.override_stat');
  run('setfattr', ['-n', 'user.fuseoverlayfs.override_stat', '-v', '0:0:755', upper]);
  t.equal(new LayerXattrs([upper, plain], 2).override(0), 'user.fuseoverlayfs.override_stat', 'an upper already on the older user name keeps it');
  t.equal(new LayerXattrs([upper, plain]).override(0), 'user.fuseoverlayfs.override_stat', 'a root xattr selects it without the option');
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

function getfattr(p: string, name: string): string | null {
  const r = run('getfattr', ['--only-values', '-h', '-n', name, p]);
  return r.status === 0 ? r.stdout : null;
}

function xattrNames(p: string): string[] {
  return run('getfattr', ['-h', '-d', '-m', '-', '--absolute-names', p])
    .stdout.split('\n')
    .filter((l) => l.includes('='))
    .map((l) => l.slice(0, l.indexOf('=')))
    .sort();
}

t.test('override_stat :type: devices, dirs and files as containers-storage stores them', { skip: skip ?? false }, async (t) => {
  const ws = makeWorkspace(t, 'idmap');
  const d = layers(ws);
  run('setfattr', ['-n', 'user.containers.override_stat', '-v', '0:0:755', d.lower]);
  // A device an unprivileged extraction could not make: a regular file carrying its type.
  fs.writeFileSync(`${d.lower}/null`, '');
  run('setfattr', ['-n', 'user.containers.override_stat', '-v', '0:0:0666:char-1-3', `${d.lower}/null`]);
  fs.writeFileSync(`${d.lower}/sda`, '');
  run('setfattr', ['-n', 'user.containers.override_stat', '-v', '0:6:0660:block-8-0', `${d.lower}/sda`]);
  fs.mkdirSync(`${d.lower}/d`);
  run('setfattr', ['-n', 'user.containers.override_stat', '-v', '3:4:0750:dir', `${d.lower}/d`]);
  fs.writeFileSync(`${d.lower}/bad`, 'x');
  run('setfattr', ['-n', 'user.containers.override_stat', '-v', '0:0:644:door', `${d.lower}/bad`]);
  fs.symlinkSync('f0', `${d.lower}/ln`);
  mountStrata(t, { lowers: [d.lower], upper: d.upper, work: d.work, mnt: d.mnt, extraOpts: ['xattr_permissions=2'] });

  const dev = fs.lstatSync(`${d.mnt}/null`);
  t.ok(dev.isCharacterDevice(), 'char-1-3 shows as a character device');
  t.same([dev.uid, dev.gid, dev.mode & 0o7777, dev.rdev >> 8, dev.rdev & 0xff], [0, 0, 0o666, 1, 3]);
  const blk = fs.lstatSync(`${d.mnt}/sda`);
  t.ok(blk.isBlockDevice(), 'block-8-0 shows as a block device');
  t.same([blk.gid, blk.mode & 0o7777, blk.rdev >> 8, blk.rdev & 0xff], [6, 0o660, 8, 0]);
  const dir = fs.lstatSync(`${d.mnt}/d`);
  t.ok(dir.isDirectory());
  t.same([dir.uid, dir.gid, dir.mode & 0o7777], [3, 4, 0o750]);
  t.ok(fs.lstatSync(`${d.mnt}/bad`).isFile(), 'a value that does not parse leaves the real stat');
  t.ok(fs.lstatSync(`${d.mnt}/ln`).isSymbolicLink(), 'symlinks are never overridden');
  t.same([fs.lstatSync(d.mnt).uid, fs.lstatSync(d.mnt).mode & 0o7777], [0, 0o755], 'the upper root took the lower root\'s override');
  t.equal(getfattr(d.upper, 'user.containers.override_stat'), '0:0:755');

  // chmod copies the entry up and keeps its type in the upper's override.
  fs.chmodSync(`${d.mnt}/null`, 0o600);
  t.equal(getfattr(`${d.upper}/null`, 'user.containers.override_stat'), '0:0:600:char-1-3');
  t.ok(fs.lstatSync(`${d.upper}/null`).isFile(), 'still a regular file on disk');
  const dev2 = fs.lstatSync(`${d.mnt}/null`);
  t.ok(dev2.isCharacterDevice());
  t.same([dev2.mode & 0o7777, dev2.rdev & 0xff], [0o600, 3]);
  // A copy-up of a file without an override records its real owner and mode in the upper.
  fs.appendFileSync(`${d.mnt}/f5`, 'more');
  t.equal(getfattr(`${d.upper}/f5`, 'user.containers.override_stat'), '5:5:644');

  // New entries keep the caller's owner and mode in the xattr; the real mode stays usable.
  fs.writeFileSync(`${d.mnt}/new`, 'x', { mode: 0o600 });
  t.equal(getfattr(`${d.upper}/new`, 'user.containers.override_stat'), '0:0:600');
  t.equal(fs.lstatSync(`${d.upper}/new`).mode & 0o777, 0o755);
  t.equal(fs.lstatSync(`${d.mnt}/new`).mode & 0o777, 0o600);
});

t.test('xattr_permissions=2: security.* and overlay names are the union\'s own (renamed on disk)', { skip: skip ?? false }, async (t) => {
  const ws = makeWorkspace(t, 'idmap');
  const d = layers(ws);
  run('setfattr', ['-n', 'user.containers.override_stat', '-v', '0:0:755', d.lower]);
  run('setfattr', ['-n', 'security.real', '-v', 'disk', `${d.lower}/f0`]);
  run('setfattr', ['-n', 'user.containers.override_security.label', '-v', 'lower', `${d.lower}/f0`]);
  run('setfattr', ['-n', 'user.plain', '-v', 'p', `${d.lower}/f0`]);
  fs.mkdirSync(`${d.lower}/dir`);
  fs.writeFileSync(`${d.lower}/dir/kept`, 'x');
  mountStrata(t, { lowers: [d.lower], upper: d.upper, work: d.work, mnt: d.mnt, extraOpts: ['xattr_permissions=2'] });

  const f0 = `${d.mnt}/f0`;
  t.same(xattrNames(f0), ['security.label', 'user.plain'], 'a lower file: renamed names decoded, real security.* hidden');
  t.equal(getfattr(f0, 'security.label'), 'lower');
  t.equal(getfattr(f0, 'security.real'), null, 'the backing filesystem\'s security.* is not shown');

  // Setting a security.* xattr copies up and stores it renamed; the upper's real namespace stays empty.
  t.equal(run('setfattr', ['-n', 'security.mine', '-v', 'v1', f0]).status, 0);
  t.equal(getfattr(f0, 'security.mine'), 'v1');
  t.equal(getfattr(`${d.upper}/f0`, 'user.containers.override_security.mine'), 'v1');
  t.equal(getfattr(`${d.upper}/f0`, 'security.mine'), null);
  t.equal(getfattr(`${d.upper}/f0`, 'user.containers.override_security.label'), 'lower', 'copy-up kept the renamed xattr');
  t.equal(getfattr(`${d.upper}/f0`, 'security.real'), null, 'copy-up did not bring the real security.* along');
  t.equal(getfattr(`${d.upper}/f0`, 'user.plain'), 'p');
  t.same(xattrNames(f0), ['security.label', 'security.mine', 'user.containers.override_stat', 'user.plain']);
  t.equal(run('setfattr', ['-x', 'security.mine', f0]).status, 0);
  t.equal(getfattr(`${d.upper}/f0`, 'user.containers.override_security.mine'), null, 'removed under its stored name');

  // Overlay metadata names set through the union are stored renamed and change nothing.
  t.equal(run('setfattr', ['-n', 'user.overlay.opaque', '-v', 'y', `${d.mnt}/dir`]).status, 0);
  t.equal(getfattr(`${d.upper}/dir`, 'user.containers.override_user.overlay.opaque'), 'y');
  t.equal(getfattr(`${d.upper}/dir`, 'user.overlay.opaque'), null);
  t.equal(getfattr(`${d.mnt}/dir`, 'user.overlay.opaque'), 'y');
  t.ok(fs.existsSync(`${d.mnt}/dir/kept`), 'the directory did not become opaque');
});

t.test('without xattr_permissions: security.* kept as it is, overlay names refused', { skip: skip ?? false }, async (t) => {
  const ws = makeWorkspace(t, 'idmap');
  const d = layers(ws);
  mountStrata(t, { lowers: [d.lower], upper: d.upper, work: d.work, mnt: d.mnt });
  t.equal(run('setfattr', ['-n', 'security.mine', '-v', 'v1', `${d.mnt}/f0`]).status, 0);
  t.equal(getfattr(`${d.upper}/f0`, 'security.mine'), 'v1');
  t.not(run('setfattr', ['-n', 'user.overlay.opaque', '-v', 'y', `${d.mnt}/f0`]).status, 0, 'EPERM, as fuse-overlayfs');
  t.equal(getfattr(`${d.upper}/f0`, 'user.containers.override_user.overlay.opaque'), null);
});
