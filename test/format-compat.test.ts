// On-disk format compatibility: an upper written through strata must read back identically under kernel
// overlayfs, and an upper written by the kernel (whiteouts, opaque dirs, redirects) must read back under strata.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { missingCapability, mountKernelOverlay, mountStrata, unmount } from './lib/mount-union';
import { stdLayers } from './lib/fixtures';
import { buildStack } from './lib/layers';
import { diffSnapshots, snapshot } from './lib/snapshot';
import { makeWorkspace } from './lib/workspace';
import { sh } from './lib/exec';

const why = missingCapability({ fuse: true, overlay: true });
if (why) {
  t.comment(`skipping: ${why}`);
  t.plan(0, why);
} else {
  const OPS =
    'set -e; echo more >> a.txt; chmod 600 top.txt; chown 1000:1000 m.txt; setfattr -n user.k -v v x.txt; rm c.txt; rm -rf d2; mkdir d2; echo n > d2/n; ' +
    'rm keep/k2; rmdir keep; mkdir keep; rm -rf d1/sub; mkdir -p newdir/deep; echo f > newdir/deep/f; ln newdir/deep/f hardl; ln -s a.txt sl; ' +
    'mv m.txt m2.txt; mv hl1 hl1-renamed; mknod cdev c 1 3; mkfifo ff; echo again > b.txt; rmdir empty; mkdir empty; touch empty/e; ' +
    'touch -d "2010-10-10 10:10:10.101010101" top.txt';
  // renames of lower dirs: kernel writes trusted.overlay.redirect; strata may redirect or fall back to copy (mv)
  const DIR_RENAMES = 'set -e; mv mdir mdir-moved; mv rodir d1/rodir-moved; mv xdir xdir2; mkdir xdir; touch xdir/new';

  for (const withDirRenames of [false, true]) {
    const sfx = withDirRenames ? ' (with lower-dir renames)' : '';

    t.test('upper written by strata, mounted by kernel overlayfs' + sfx, async (t) => {
      const ws = makeWorkspace(t, 'fmt');
      const startNs = BigInt(Date.now() - 5000) * 1_000_000n;
      const st = buildStack(path.join(ws, 's'), stdLayers());
      mountStrata(t, { lowers: st.lowers, upper: st.upper, work: st.work, mnt: st.mnt });
      const r = sh(st.mnt, withDirRenames ? `${OPS}; ${DIR_RENAMES}` : OPS);
      t.equal(r.status, 0, `ops succeed through strata ${r.stderr}`);
      const before = snapshot(st.mnt, { recentAfterNs: startNs });
      unmount(st.mnt);
      const kmnt = path.join(ws, 'kmnt');
      const kwork = path.join(ws, 'kwork');
      fs.mkdirSync(kwork);
      mountKernelOverlay(t, { lowers: st.lowers, upper: st.upper, work: kwork, mnt: kmnt });
      const after = snapshot(kmnt, { recentAfterNs: startNs });
      t.same(diffSnapshots(before, after, ['strata', 'kernel']), [], 'kernel shows the same merged view');
    });

    t.test('upper written by kernel overlayfs, mounted by strata' + sfx, async (t) => {
      const ws = makeWorkspace(t, 'fmt');
      const startNs = BigInt(Date.now() - 5000) * 1_000_000n;
      const st = buildStack(path.join(ws, 'k'), stdLayers());
      mountKernelOverlay(t, { lowers: st.lowers, upper: st.upper, work: st.work, mnt: st.mnt });
      const r = sh(st.mnt, withDirRenames ? `${OPS}; ${DIR_RENAMES}` : OPS);
      t.equal(r.status, 0, `ops succeed through the kernel ${r.stderr}`);
      const before = snapshot(st.mnt, { recentAfterNs: startNs });
      unmount(st.mnt);
      const smnt = path.join(ws, 'smnt');
      const swork = path.join(ws, 'swork');
      fs.mkdirSync(swork);
      mountStrata(t, { lowers: st.lowers, upper: st.upper, work: swork, mnt: smnt });
      const after = snapshot(smnt, { recentAfterNs: startNs });
      t.same(diffSnapshots(before, after, ['kernel', 'strata']), [], 'strata shows the same merged view');
      // strata must keep working on a kernel-written upper
      const w = sh(smnt, 'rm -rf d2 && mkdir d2 && ls -A d2 && cat d1/sub/z 2>&1; true');
      t.equal(w.stdout, 'cat: d1/sub/z: No such file or directory\n', 'opaque/whiteouts written by the kernel stay effective');
    });
  }
}

