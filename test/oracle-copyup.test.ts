// Differential copy-up tests: each operation on a lower entry must copy it up exactly like kernel overlayfs
// (content, mode, owner, ns timestamps, xattrs, sparse holes, st_ino) and leave an identical upper dir.
import t from 'tap';
import { missingCapability } from './lib/mount-union';
import { Pair } from './lib/pair';
import { pairCases } from './lib/pair-cases';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { mountKernelOverlay, mountStrata, unmount } from './lib/mount-union';
import { buildLayer } from './lib/layers';
import { runOk, sh } from './lib/exec';
import { diffSnapshots, ignoreKernelPrivate, snapshot } from './lib/snapshot';
import { makeWorkspace } from './lib/workspace';
import { sparseFile, stdLayers, xattrWhiteoutLayers } from './lib/fixtures';
import { READDIR_PY, py } from './lib/scripts';

const why = missingCapability({ fuse: true, overlay: true });
if (why) {
  t.comment(`skipping: ${why}`);
  t.plan(0, why);
} else {
  // [name, script]; the script runs in both mountpoints, output must match, then merged + upper dirs must match
  const cases: Array<[string, string]> = [
    ['write (append) to a lower file', 'echo more >> a.txt && cat a.txt && stat -c "%a %u %g %s" a.txt'],
    ['overwrite a lower file in a nested dir (parents copied up)', 'echo new > d1/sub/z && cat d1/sub/z && stat -c "%a %u %g" d1 d1/sub'],
    ['truncate a lower file', 'truncate -s 3 d1/x && cat d1/x; echo; truncate -s 100 m.txt && stat -c %s m.txt && od -c m.txt | tail -3'],
    ['chmod a lower file and a lower dir', 'chmod 0751 top.txt && chmod 0700 d1/sub && stat -c "%a %n" top.txt d1/sub d1'],
    ['chmod a setuid file keeps/clears bits like the kernel', 'chmod g+w suid && stat -c %a suid && echo >> suid && stat -c %a suid'],
    ['chown a lower file, a dir and a symlink (-h)', 'chown 1000:1000 m.txt && chown 1234:5678 mdir && chown -h 1000:1000 sym && stat -c "%u:%g %n" m.txt mdir sym a.txt'],
    ['touch with ns timestamps on lower file, dir and symlink', 'touch -m -d "2001-02-03 04:05:06.123456789" a.txt d1 && touch -h -m -d "2002-01-01 00:00:00.000000001" sym && stat -c "%y %n" a.txt d1 sym'],
    ['touch (now) copies up and updates mtime', 'touch top.txt && cat top.txt'],
    ['setxattr / removexattr on lower file and dir (other xattrs preserved)', 'setfattr -n user.new -v val x.txt && setfattr -x user.foo x.txt && setfattr -n user.d2 -v 2 xdir && getfattr -d -m user. -e hex x.txt xdir'],
    ['setxattr on a file copies up an xattr-less lower file', 'setfattr -n user.k -v v top.txt && getfattr -d -m - top.txt'],
    ['link(2) of a lower file copies it up; both names share st_ino, nlink 2', 'ln top.txt top-link && [ $(stat -c %i top.txt) = $(stat -c %i top-link) ] && stat -c "%h %n" top.txt top-link'],
    ['O_APPEND write', 'python3 -c "import os; fd=os.open(\'m.txt\', os.O_WRONLY|os.O_APPEND); os.write(fd, b\'appended\\n\'); os.close(fd)" && cat m.txt'],
    ['read-write open without writing copies up like the kernel', 'python3 -c "import os; os.close(os.open(\'c.txt\', os.O_RDWR))" && cat c.txt'],
    ['copy-up of a fifo, a char device and a symlink (chown)', 'chown 7:7 fifo null && chown -h 7:7 dangling && stat -c "%F %t:%T %u %n" fifo null dangling'],
    ['write into a file in a read-only (0555) lower dir', 'echo more >> rodir/f && cat rodir/f && stat -c %a rodir rodir/f'],
    ['copy-up of a file inside a layer-opaque dir', 'echo q2 >> d2/q && ls -a d2 && cat d2/p 2>&1; true'],
    ['copy-up of the deep file creates all parents', 'echo x >> deep/a/b/c/d/e/f.txt && stat -c "%a %n" deep deep/a/b/c/d/e'],
    ['truncate to 0 of a hardlinked lower file (index=off breaks the link like the kernel)', 'truncate -s 0 hl1 && stat -c "%s %h" hl1 hl2 && cat hl2 && [ $(stat -c %i hl1) = $(stat -c %i hl2) ] && echo same-ino || echo diff-ino'],
  ];
  pairCases(t, cases.map(([name, script]) => ({ name, script })), { lowers: stdLayers, stackLevels: 1 });

  t.test('set-id bits: unprivileged write, truncate, O_TRUNC open and fallocate clear them like the kernel; root keeps them; chown clears', async (t) => {
    const p = new Pair(t, { lowers: stdLayers() });
    p.same(t, 'for f in w t o fa g gm r c; do printf data > $f; done; chmod 6777 w t o fa r c; chown 0:1000 gm; chmod 2666 g gm; stat -c "%a %n" w t o fa g gm r c');
    const user = p.same(t, 'printf more >> w; truncate -s 2 t; printf x > o; fallocate -l 8192 fa; printf more >> g; printf more >> gm; stat -c "%a %n" w t o fa g gm', undefined, {
      asUser: { uid: 1000, gid: 1000 },
    });
    t.match(user.stdout, /^777 w$/m, 'a write by a user cleared set-user-ID and set-group-ID (strata agrees, checked above)');
    t.match(user.stdout, /^666 g$/m, 'set-group-ID without group execute goes when the writer is not in the group');
    t.match(user.stdout, /^2666 gm$/m, 'and stays when the writer is in the group');
    p.same(t, 'printf more >> r; stat -c "%a %n" r; chown 1000 c; stat -c "%a %u %n" c; cat w t o r');
    // The lower setuid file: an unprivileged writer copies it up and clears the bit.
    p.same(t, 'chmod 4777 suid');
    p.same(t, 'printf x >> suid; stat -c "%a %n" suid', undefined, { asUser: true });
    p.checkAll(t);
  });

  t.test('copy-up of a dir carrying opaque=x (xattr whiteouts) keeps the whiteouts effective, does not copy overlay xattrs', async (t) => {
    const p = new Pair(t, { lowers: xattrWhiteoutLayers() });
    p.same(t, 'touch xw/new xw/sub/new && ls -a xw xw/sub && cat xw/w1 xw/sub/s1 2>&1; echo x > gone; cat gone; true');
    p.checkAll(t);
  });

  // On one filesystem, and with the lowers on another (the origin names the lowers' UUID); xfs: a
  // filesystem with its own file handles.
  for (const layout of ['ext4', 'tmpfs-lowers', 'xfs'] as const) {
    t.test(`st_ino is stable across copy-up and remounts (files, dirs, symlinks) [${layout}]`, async (t) => {
      const p = new Pair(t, { lowers: stdLayers(), layout });
      const script =
        'for f in a.txt d1 d1/sub/z sym fifo x.txt; do b=$(stat -c %i $f); case $f in sym) chown -h 1:1 $f;; *) chown 1:1 $f;; esac; ' +
        'a=$(stat -c %i $f); [ "$a" = "$b" ] && echo "$f stable" || echo "$f changed"; done';
      p.same(t, script);
      t.notMatch(p.sh(script).s.stdout, /changed/, 'strata keeps st_ino');
      p.same(t, 'mv d1/sub d1/moved && ls d1'); // a lower directory moved: a redirect
      // ...and after a remount: the copy keeps its origin (trusted.overlay.origin)
      const names = 'a.txt d1 d1/moved/z sym fifo x.txt';
      const before = p.sh(`stat -c "%i %n" ${names}`);
      p.remount();
      const after = p.sh(`stat -c "%i %n" ${names}`);
      t.equal(after.s.stdout, before.s.stdout, 'strata st_ino stable across remount');
      t.equal(after.k.stdout, before.k.stdout, 'kernel st_ino stable across remount');
      t.notMatch(p.sh(py(READDIR_PY)).s.stdout, /dino_matches_stino=False/, 'after the remount d_ino still equals st_ino');
      if (layout !== 'ext4') return; // across filesystems strata numbers inodes as xino=on does, the kernel here xino=off
      // The kernel reads strata's upper as strata does, and the other way round.
      p.unmount();
      const cross = path.join(p.ws, 'cross-origin');
      mountKernelOverlay(t, { lowers: p.s.lowers, upper: p.s.upper, work: p.s.work, mnt: cross, extraOpts: ['redirect_dir=on', 'index=off', 'metacopy=off', 'xino=off'] });
      t.equal(sh(cross, `stat -c "%i %n" ${names}`).stdout, before.s.stdout, "the kernel on strata's upper: the same st_ino");
      unmount(cross);
      mountStrata(t, { lowers: p.k.lowers, upper: p.k.upper, work: p.k.work, mnt: cross });
      t.equal(sh(cross, `stat -c "%i %n" ${names}`).stdout, before.k.stdout, "strata on the kernel's upper: the same st_ino");
      unmount(cross);
    });
  }

  // Holes survive copy-up by every way of copying: copy_file_range (ext4), pread/pwrite across
  // filesystems (tmpfs lowers, btrfs upper), reflink (xfs).
  for (const layout of ['ext4', 'tmpfs-lowers', 'btrfs-upper', 'xfs'] as const) {
    t.test(`sparse file copy-up preserves holes [${layout}]`, async (t) => {
      const [top, middle, bottom] = stdLayers();
      const p = new Pair(t, { lowers: [top!, middle!, [...bottom!, sparseFile()]], layout });
      p.same(t, 'chmod 600 sparse.bin && stat -c %s sparse.bin && dd if=sparse.bin bs=1 skip=33554432 count=6 2>/dev/null; echo');
      p.checkMerged(t);
      p.unmount();
      for (const [label, upper] of [['kernel', p.k.upper], ['strata', p.s.upper]] as const) {
        const st = fs.statSync(`${upper}/sparse.bin`);
        t.ok(st.blocks * 512 < 4 * 1024 * 1024, `${label}: upper copy is sparse (${st.blocks * 512} bytes allocated of ${st.size})`);
      }
      t.same(p.upperDiff(), [], 'upper dirs equal');
    });
  }

  t.test('copy-up that runs out of space (upper on a small tmpfs) fails with ENOSPC and leaves nothing half-written', async (t) => {
    const ws = makeWorkspace(t, 'enospc');
    const lower = path.join(ws, 'lower');
    // 12 MiB of data that cannot be shared or skipped as holes, for a 8 MiB upper
    buildLayer(lower, [
      { path: 'big', type: 'file', content: Buffer.alloc(12 << 20, 7) },
      { path: 'dir/small', type: 'file', content: 'small\n' },
    ]);
    const sides = ['k', 's'].map((side) => {
      const fsDir = path.join(ws, `${side}-upperfs`);
      fs.mkdirSync(fsDir);
      runOk('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'strata-test', fsDir]);
      const d = { upper: path.join(fsDir, 'upper'), work: path.join(fsDir, 'work'), mnt: path.join(ws, `${side}-mnt`) };
      fs.mkdirSync(d.upper);
      fs.mkdirSync(d.work);
      const spec = { lowers: [lower], ...d, extraOpts: ['xino=on'] };
      if (side === 'k') mountKernelOverlay(t, spec);
      else mountStrata(t, { ...spec, extraOpts: [] });
      return d;
    });
    const script = 'echo more >> big; echo "status $?"; chmod 600 big; echo "status $?"; cmp -s big ../lower/big && echo "big intact"; echo x >> dir/small && cat dir/small';
    const [k, s] = sides.map((d) => sh(d.mnt, script.replace('../lower', lower)));
    t.same(s, k, 'same result as the kernel');
    t.match(k!.stderr, /No space left on device/, 'the kernel says ENOSPC');
    for (const d of sides) runOk('umount', [d.mnt]);
    const o = { ignoreXattr: ignoreKernelPrivate, mtime: false };
    t.same(diffSnapshots(snapshot(sides[0]!.upper, o), snapshot(sides[1]!.upper, o)), [], 'upper dirs equal: no partial big');
    const leftovers = fs.readdirSync(path.join(sides[1]!.work, 'work'));
    t.same(leftovers, [], 'nothing left in the work dir');
  });
}
