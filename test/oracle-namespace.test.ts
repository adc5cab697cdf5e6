// Differential namespace tests: unlink/rmdir/whiteouts/opaque dirs/rename vs kernel overlayfs.
import t from 'tap';
import { missingCapability } from './lib/mount-union';
import { Pair } from './lib/pair';
import { pairCases } from './lib/pair-cases';
import { stdLayers, xattrWhiteoutLayers } from './lib/fixtures';
import { RENAMEAT2_PY, RENAME_EXCHANGE, RENAME_NOREPLACE, py } from './lib/scripts';
import { snapshot } from './lib/snapshot';

const why = missingCapability({ fuse: true, overlay: true });
if (why) {
  t.comment(`skipping: ${why}`);
  t.plan(0, why);
} else {
  const rn = (a: string, b: string, flags: number) => py(RENAMEAT2_PY, a, b, String(flags));

  // [name, script]: same output, then merged views and upper dirs equal
  const cases: Array<[string, string]> = [
    ['unlink of a lower file leaves a char 0/0 whiteout', 'rm a.txt top.txt d1/sub/z && ls -a . d1/sub && cat a.txt 2>&1; true'],
    ['unlink of an upper-only file leaves no whiteout', 'echo n > newfile && mkdir nd && echo n > nd/f && rm newfile nd/f && rmdir nd && ls -a'],
    ['unlink of a file recreated over a lower-layer whiteout', 'echo again > b.txt && cat b.txt && rm b.txt && cat b.txt 2>&1; ls -a; true'],
    ['unlink of a copied-up file', 'chmod 600 m.txt && rm m.txt && ls; cat m.txt 2>&1; true'],
    ['unlink of symlink, fifo, device and one of two hard links', 'rm sym fifo null hl1 && stat -c "%h %n" hl2 && cat hl2'],
    ['rmdir of an empty lower dir leaves a whiteout', 'rmdir empty && ls -a && stat empty 2>&1; true'],
    ['rmdir of a non-empty merged dir fails with ENOTEMPTY', 'rmdir d1 2>&1; rmdir keep 2>&1; rmdir d2 2>&1; ls -a d1 keep d2; true'],
    ['rmdir of a dir whose lower entries are all whited out succeeds', 'rm keep/k2 && rmdir keep && ls -a && ls keep 2>&1; true'],
    ['rm -rf of a lower dir, mkdir again: opaque, old files never reappear', 'rm -rf d1 && mkdir d1 && ls -a d1 && cat d1/x d1/y d1/sub/z d1/new.txt 2>&1; stat -c %n d1/sub 2>&1; touch d1/x && ls -a d1; true'],
    ['rm -rf of a lower dir, then a file with the same name', 'rm -rf d2 && echo file > d2 && cat d2 && ls -a; true'],
    ['rm -rf of a dir tree mixing upper and lower entries', 'touch d1/sub/up && mkdir d1/nd && touch d1/nd/f && rm -rf d1 && ls -a; true'],
    ['delete inside a layer-opaque dir only whites out entries that exist below', 'rm d2/q && ls -a d2 && touch d2/n && rm d2/n && ls -a d2'],
    ['delete an xattr-whiteout sibling and rmdir the dir', 'XW=1; true'],
    ['mkdir over a whited-out lower dir is opaque', 'rmdir empty && mkdir empty && ls -a empty && rm -rf mdir && mkdir mdir && ls -a mdir'],
    ['rename of a lower file to a new name (copy-up + whiteout)', 'mv m.txt renamed.txt && cat renamed.txt && cat m.txt 2>&1; mv d1/x d1/sub/xx && ls -a d1 d1/sub; true'],
    ['rename of a file overwriting a lower file', 'mv top.txt a.txt && cat a.txt && ls -a && echo u > u1 && mv u1 c.txt && cat c.txt'],
    ['rename onto a whiteout (target deleted before)', 'rm c.txt && mv top.txt c.txt && cat c.txt && rm d1/y && echo nu > nu && mv nu d1/y && cat d1/y && ls -a . d1'],
    ['rename of an upper-only dir', 'mkdir -p nd/sub && echo f > nd/sub/f && mv nd nd2 && ls -aR nd2 && mv nd2 d1/nd3 && ls -a d1 d1/nd3'],
    ['rename of a dir over an empty dir, and over a non-empty one (ENOTEMPTY)', 'mkdir e1 e2 && touch e1/f && mv -T e1 e2 && ls -a e2 && mkdir e3 && mv -T e3 d1 2>&1; mv -T e2 empty && ls -a empty; true'],
    ['rename of a file onto its own hard link is a no-op', 'python3 -c "import os; os.rename(\'hl1\', \'hl2\')" && ls -a && cat hl1 hl2'],
    ['rename of a symlink and a fifo', 'mv sym sym2 && readlink sym2 && mv fifo d1/fifo2 && stat -c %F d1/fifo2'],
    ['RENAME_NOREPLACE', `${rn('top.txt', 'a.txt', RENAME_NOREPLACE)}; ${rn('top.txt', 'fresh', RENAME_NOREPLACE)}; ${rn('m.txt', 'b.txt', RENAME_NOREPLACE)}; cat fresh b.txt; ls -a`],
    ['RENAME_EXCHANGE of files (lower/lower, lower/upper)', `echo up > up && ${rn('top.txt', 'm.txt', RENAME_EXCHANGE)} && ${rn('up', 'a.txt', RENAME_EXCHANGE)} && cat top.txt m.txt up a.txt; ${rn('top.txt', 'nonexist', RENAME_EXCHANGE)}`],
    ['RENAME_EXCHANGE of upper-only dirs and of a dir with a file', `mkdir x1 x2 && touch x1/a x2/b && ${rn('x1', 'x2', RENAME_EXCHANGE)} && ls x1 x2 && touch f && ${rn('x1', 'f', RENAME_EXCHANGE)} && ls -a . f`],
  ];
  // Renaming a directory that exists in a lower layer (redirect_dir=on on both sides): trusted.overlay.redirect.
  const lowerDirRenames: Array<[string, string]> = [
    ['rename of a lower dir (same parent)', 'mv d1 d1moved && ls -aR d1moved && ls d1 2>&1; true'],
    ['rename of a lower dir into another dir', 'mv mdir d1/sub/ && ls -aR d1/sub && ls mdir 2>&1; true'],
    ['rename of a lower dir, then modify and recreate the old name', 'mv d1 dd && rm dd/y && echo n > dd/sub/z && mkdir d1 && ls -a d1 && ls -aR dd'],
    ['rename of a merged dir over an empty lower dir', 'mv -T keep empty && ls -a empty && ls keep 2>&1; true'],
  ];
  // Each case runs again over its own result stacked as a lower, three times over.
  pairCases(
    t,
    [...cases, ...lowerDirRenames].filter(([, script]) => script !== 'XW=1; true').map(([name, script]) => ({ name, script })),
    { lowers: stdLayers, stackLevels: 3 },
  );

  t.test('unlink/rmdir in a dir with xattr whiteouts', async (t) => {
    const p = new Pair(t, { lowers: xattrWhiteoutLayers() });
    p.same(t, 'rm xw/w2 xw/top && rm xw/sub/s2 && rmdir xw/sub && ls -a xw && rm -rf xw && mkdir xw && ls -a xw');
    p.checkAll(t);
  });

  t.test('renamed lower dir: raw rename(2) result is either success (redirect) or EXDEV', async (t) => {
    const p = new Pair(t, { lowers: stdLayers() });
    const r = p.sh(py('import os,sys\ntry:\n  os.rename("d1","d1r"); print("ok")\nexcept OSError as e:\n  print(e.errno)'));
    t.equal(r.k.stdout.trim(), 'ok', 'kernel renames with redirect_dir=on');
    t.ok(['ok', '18'].includes(r.s.stdout.trim()), `strata: ok or EXDEV (got ${r.s.stdout.trim()})`);
    if (r.s.stdout.trim() === 'ok') {
      p.checkMerged(t, 'merged views equal', { mtime: false });
      p.unmount();
      const k = snapshot(p.k.upper);
      const s = snapshot(p.s.upper);
      t.same(s['d1r']?.xattrs['trusted.overlay.redirect'], k['d1r']?.xattrs['trusted.overlay.redirect'], 'same redirect xattr as the kernel');
      t.same(s['d1']?.type, k['d1']?.type, 'old name whited out like the kernel');
    }
  });
}
