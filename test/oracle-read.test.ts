// Differential read-side tests: merged view of the standard 3-layer stack vs kernel overlayfs.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { missingCapability, mountStrata } from './lib/mount-union';
import { Pair } from './lib/pair';
import { stdLayers, xattrWhiteoutLayers } from './lib/fixtures';
import { READDIR_PY, py } from './lib/scripts';
import { listing, snapshot } from './lib/snapshot';
import { buildLayer } from './lib/layers';
import { makeWorkspace } from './lib/workspace';
import { sh } from './lib/exec';

const why = missingCapability({ fuse: true, overlay: true });
if (why) {
  t.comment(`skipping: ${why}`);
  t.plan(0, why);
} else {
  t.test('read-through: merged view of 3 layers equals kernel (types, modes, owners, mtimes, xattrs, hardlinks)', async (t) => {
    const p = new Pair(t, { lowers: stdLayers() });
    p.checkMerged(t);
    // sanity of the oracle itself, so a broken fixture cannot make the test vacuous
    const s = snapshot(p.s.mnt, { content: false });
    for (const gone of ['b.txt', 'wdir/w1', 'd2/p', 'keep/k1']) t.notOk(s[gone], `${gone} is hidden`);
    for (const here of ['wdir/w2', 'wdir/w3', 'd2/q', 'keep/k2', 'd1/new.txt', 'd1/y', 'd1/sub/z', 'd1/sub/t', 'm.txt', 'top.txt']) {
      t.ok(s[here], `${here} is visible`);
    }
    t.equal(fs.readFileSync(path.join(p.s.mnt, 'a.txt'), 'utf8'), 'middle a\n', 'upper layer wins');
  });

  t.test('xattr whiteouts (trusted.overlay.whiteout + parent opaque=x) in lower layers', async (t) => {
    const p = new Pair(t, { lowers: xattrWhiteoutLayers() });
    p.checkMerged(t);
    p.same(t, 'ls -a xw xw/sub; cat xw/w1 xw/sub/s1 gone 2>&1; stat -c %n xw/w2 plain; true');
    const s = listing(snapshot(p.s.mnt));
    t.same(s, ['. dir', 'plain file', 'xw dir', 'xw/sub dir', 'xw/sub/s2 file', 'xw/top file', 'xw/w2 file'], 'expected view');
  });

  t.test('lookup of whited-out and opaque-hidden names fails with ENOENT like the kernel', async (t) => {
    const p = new Pair(t, { lowers: stdLayers() });
    p.same(t, 'for f in b.txt keep/k1 d2/p wdir/w1 wdir/.wh.w1 nonexist; do stat -c %n "$f" 2>&1; cat "$f" 2>&1; done; true');
    p.same(t, 'ls -a d2 wdir keep');
  });

  t.test('readdir: "." and ".." present, d_ino == st_ino, d_type', async (t) => {
    const p = new Pair(t, { lowers: stdLayers() });
    const r = p.same(t, py(READDIR_PY));
    t.notMatch(r.stdout, /dino_matches_stino=False/, 'kernel: every d_ino equals st_ino');
    const s = p.sh(py(READDIR_PY)).s;
    t.notMatch(s.stdout, /dino_matches_stino=False/, 'strata: every d_ino equals st_ino');
    t.match(s.stdout, /^\.\/\. type=4/m, '"." listed');
    t.match(s.stdout, /^\.\/d1\/\.\. type=4/m, '".." listed in subdir');
  });

  t.test('every entry reports the mount st_dev; lower hardlinks share st_ino', async (t) => {
    const p = new Pair(t, { lowers: stdLayers() });
    for (const [label, mnt] of [['kernel', p.k.mnt], ['strata', p.s.mnt]] as const) {
      const dev = fs.statSync(mnt).dev;
      const bad: string[] = [];
      const walk = (d: string): void => {
        for (const n of fs.readdirSync(d)) {
          const q = path.join(d, n);
          const st = fs.lstatSync(q);
          if (st.dev !== dev) bad.push(q);
          if (st.isDirectory()) walk(q);
        }
      };
      walk(mnt);
      t.same(bad, [], `${label}: all st_dev equal to the mount's`);
      t.equal(fs.statSync(path.join(mnt, 'hl1')).ino, fs.statSync(path.join(mnt, 'hl2')).ino, `${label}: hl1/hl2 same st_ino`);
      t.equal(fs.statSync(path.join(mnt, 'hl1')).nlink, 2, `${label}: nlink 2`);
    }
  });

  t.test('trusted.overlay.* xattrs are never visible in the merged view', async (t) => {
    const p = new Pair(t, { lowers: stdLayers() });
    p.same(t, 'getfattr -R -h -d -m - --absolute-names . 2>&1 | sort');
    const r = p.sh('getfattr -R -h -m - . 2>&1').s;
    t.notMatch(r.stdout, /trusted\.overlay/, 'no trusted.overlay.* listed');
    p.same(t, 'getfattr -h -n trusted.overlay.opaque d2 2>&1; getfattr -h -n trusted.overlay.whiteout wdir 2>&1; true');
    p.same(t, 'getfattr -h -n user.foo --only-values x.txt; echo; getfattr -h -d -m user. -e hex xdir x.txt');
  });

  t.test('statfs works (df, namelen)', async (t) => {
    const p = new Pair(t, { lowers: stdLayers() });
    const r = p.sh('df -P . >/dev/null && echo df-ok; stat -f -c "namelen=%l" .');
    t.same(r.s, r.k, 'df succeeds and namelen equal');
  });

  t.test('merged directories report st_nlink like the kernel (nlink=1 for merged dirs)', async (t) => {
    const p = new Pair(t, { lowers: stdLayers() });
    p.checkMerged(t, 'merged views equal incl. dir nlink', { dirNlink: true, content: false });
  });

  t.test('read-only mount (no upperdir): writes fail with EROFS like the kernel', async (t) => {
    const p = new Pair(t, { lowers: stdLayers(), readonly: true });
    p.checkMerged(t);
    p.same(t, 'touch new 2>&1; echo x >> a.txt 2>&1; rm top.txt 2>&1; mkdir q 2>&1; chmod 600 a.txt 2>&1; setfattr -n user.a -v 1 a.txt 2>&1; ln a.txt a2 2>&1; mv top.txt t2 2>&1; true');
    const r = p.sh('touch new').s;
    t.match(r.stderr, /Read-only file system/, 'strata: EROFS');
  });

  t.test('read-only mount with a single lower layer (strata only; the kernel needs 2 lowers)', async (t) => {
    const ws = makeWorkspace(t);
    const l = path.join(ws, 'l');
    buildLayer(l, [{ path: 'f', type: 'file', content: 'x\n' }]);
    const mnt = path.join(ws, 'mnt');
    mountStrata(t, { lowers: [l], mnt });
    t.equal(fs.readFileSync(path.join(mnt, 'f'), 'utf8'), 'x\n');
    const r = sh(mnt, 'touch g');
    t.match(r.stderr, /Read-only file system/, 'EROFS');
  });

  t.test('OCI whiteouts (.wh.<name>) and opaque markers (.wh..wh..opq) in lower layers (expected view; kernel does not read them)', async (t) => {
    const lowers = [
      [
        { path: 'gone.txt', type: 'whiteout' as const, format: 'oci' as const },
        { path: 'dir/gone2', type: 'whiteout' as const, format: 'oci' as const },
        { path: 'odir', type: 'opaque' as const, format: 'oci' as const },
        { path: 'odir/new', type: 'file' as const, content: 'new\n' },
        { path: 'gonedir', type: 'whiteout' as const, format: 'oci' as const },
      ],
      [
        { path: 'gone.txt', type: 'file' as const, content: 'x\n' },
        { path: 'kept.txt', type: 'file' as const, content: 'k\n' },
        { path: 'dir/gone2', type: 'file' as const, content: 'x\n' },
        { path: 'dir/kept2', type: 'file' as const, content: 'k\n' },
        { path: 'odir/old', type: 'file' as const, content: 'old\n' },
        { path: 'gonedir/inner', type: 'file' as const, content: 'i\n' },
      ],
    ];
    const p = new Pair(t, { lowers, strataOnly: true });
    const view = listing(snapshot(p.s.mnt));
    t.same(view, ['. dir', 'dir dir', 'dir/kept2 file', 'kept.txt file', 'odir dir', 'odir/new file'], 'expected merged view');
    const r = sh(p.s.mnt, 'cat gone.txt odir/old gonedir/inner .wh.gone.txt odir/.wh..wh..opq 2>&1; true');
    t.equal((r.stdout.match(/No such file or directory/g) ?? []).length, 5, 'direct lookups fail with ENOENT');
    // writing over an OCI whiteout must not resurrect the lower file
    const w = sh(p.s.mnt, 'echo new > gone.txt && cat gone.txt && mkdir gonedir && ls -A gonedir && echo done');
    t.equal(w.stdout, 'new\ndone\n', 'recreated names start empty');
  });
}
