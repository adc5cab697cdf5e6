// strata-mount's command line (daemon/mount-program/options.ts): fuse-overlayfs' -o options, the
// flags, and a usage text that names every option the parser accepts. Pure; milliseconds.
import t from 'tap';
import { ALWAYS, MOUNT_SWITCHES, parseMountArgs, USAGE, UsageError } from '../../daemon/mount-program/options';

/** Options handled one by one in the parser, with a value it accepts. */
const VALUED: [string, string][] = [
  ['upperdir', '/u'],
  ['workdir', '/w'],
  ['fsname', 'x'],
  ['volatile', ''],
  ['fsync', '0'],
  ['squash_to_root', ''],
  ['squash_to_uid', '5'],
  ['squash_to_gid', '5'],
  ['uidmapping', '0:1000:1'],
  ['gidmapping', '0:1000:1'],
  ['xattr_permissions', '1'],
  ['redirect_dir', 'on'],
  ['index', 'off'],
  ['metacopy', 'off'],
  ['xino', 'auto'],
  ['userxattr', ''],
  ['passthrough', '0'],
];

const opt = (k: string, v: string) => (v === '' ? k : `${k}=${v}`);

t.test('the usage text names every option the parser accepts', async (t) => {
  for (const k of ['lowerdir', ...VALUED.map(([k]) => k), ...Object.keys(MOUNT_SWITCHES), ...ALWAYS]) {
    t.match(USAGE, new RegExp(`(^|[\\s,])${k}([=\\s|]|$)`, 'm'), `usage lists ${k}`);
  }
  for (const f of ['-f', '--foreground', '-d', '--debug', '--version', '--help']) t.ok(USAGE.includes(f), `usage lists ${f}`);
});

t.test('every listed option is accepted without a warning', async (t) => {
  for (const [k, v] of VALUED) {
    const cmd = parseMountArgs(['-o', `lowerdir=/l,${opt(k, v)}`, '/mnt']);
    t.same(cmd.warnings, [], `${opt(k, v)} accepted`);
  }
  for (const k of [...Object.keys(MOUNT_SWITCHES), ...ALWAYS]) t.same(parseMountArgs(['-o', `lowerdir=/l,${k}`, '/mnt']).warnings, [], `${k} accepted`);
});

t.test('lowerdir lists layers topmost first, separated by colons', async (t) => {
  t.same(parseMountArgs(['-o', 'lowerdir=/a:/b:/c', '/mnt']).lowers, ['/a', '/b', '/c']);
});

t.test('a backslash keeps a comma inside a value', async (t) => {
  t.same(parseMountArgs(['-o', 'lowerdir=/a\\,b,ro', '/mnt']).lowers, ['/a,b']);
});

t.test('-o options may be given several times and glued to the flag', async (t) => {
  const cmd = parseMountArgs(['-olowerdir=/l', '-o', 'ro', '/mnt']);
  t.same([cmd.lowers, cmd.mount.readOnly], [['/l'], true]);
});

t.test('SOURCE MOUNTPOINT: the source becomes the fsname', async (t) => {
  const cmd = parseMountArgs(['-o', 'lowerdir=/l', 'overlay', '/mnt']);
  t.same([cmd.mountpoint, cmd.mount.fsname], ['/mnt', 'overlay']);
});

t.test('an unknown option is ignored with a warning that names it', async (t) => {
  t.same(parseMountArgs(['-o', 'lowerdir=/l,context=x', '/mnt']).warnings, ["option 'context' is not supported and is ignored"]);
});

t.test('usage errors name what is wrong', async (t) => {
  t.throws(() => parseMountArgs(['/mnt']), new UsageError('lowerdir= is required'));
  t.throws(() => parseMountArgs(['-o', 'lowerdir=/l']), new UsageError('missing MOUNTPOINT'));
  t.throws(() => parseMountArgs(['-o', 'lowerdir=/l', '--bogus', '/mnt']), new UsageError('unknown flag --bogus'));
  t.throws(() => parseMountArgs(['-o', 'lowerdir=/l,index=on', '/mnt']), /index=on is not supported/);
  t.throws(() => parseMountArgs(['-o', 'lowerdir=/l,squash_to_uid=x', '/mnt']), /numeric id/);
});

t.test('-d implies the foreground', async (t) => {
  const cmd = parseMountArgs(['-d', '-o', 'lowerdir=/l', '/mnt']);
  t.same([cmd.foreground, cmd.debug], [true, true]);
});
