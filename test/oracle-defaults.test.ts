// strata-mount with no options behaves as what it replaces: kernel overlayfs mounted with no options
// on this kernel (redirect_dir off but followed, index, metacopy and xino off) and fuse-overlayfs.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isMounted, missingCapability, mountStrata, strataProgram } from './lib/mount-union';
import { Pair } from './lib/pair';
import { stdLayers } from './lib/fixtures';
import type { Entry } from './lib/layers';
import { py } from './lib/scripts';
import { run } from './lib/exec';
import { makeWorkspace } from './lib/workspace';

/** The kernel's defaults, pinned where this host's module parameters differ from the kernel's own. */
function kernelDefaults(): string[] {
  const param = (name: string) => {
    try {
      return fs.readFileSync(`/sys/module/overlay/parameters/${name}`, 'utf8').trim();
    } catch {
      return 'N';
    }
  };
  const pinned: string[] = [];
  for (const name of ['redirect_dir', 'index', 'metacopy']) if (param(name) === 'Y') pinned.push(`${name}=off`);
  if (param('xino_auto') === 'Y') pinned.push('xino=off');
  return pinned;
}

/** A layer that renamed `orig` to `moved` with a redirect, over one that has `orig`. */
const redirectLayers = (): Entry[][] => [
  [
    { path: 'moved', type: 'redirect', target: 'orig' },
    { path: 'orig', type: 'whiteout' },
    { path: 'abs/inner', type: 'redirect', target: '/deep/dir' },
    { path: 'deep/dir', type: 'whiteout' },
  ],
  [
    { path: 'orig/f', type: 'file', content: 'in orig\n' },
    { path: 'deep/dir/g', type: 'file', content: 'in deep dir\n' },
  ],
];

const why = missingCapability({ fuse: true, overlay: true });
if (why) {
  t.comment(`skipping: ${why}`);
  t.plan(0, why);
} else {
  const rawRename = py('import os,sys\ntry:\n  os.rename(sys.argv[1], sys.argv[2]); print("ok")\nexcept OSError as e:\n  print(e.strerror)', 'd1', 'd1r');

  t.test('no options: rename(2) of a dir with lower parts is EXDEV, mv copies it, uppers equal', async (t) => {
    const p = new Pair(t, { lowers: stdLayers(), programDefaults: true, kernelOpts: kernelDefaults() });
    const r = p.same(t, `${rawRename}; mv d1 d1moved && mv mdir d1moved/ && mkdir nd && mv nd nd2 && ls -aR d1moved nd2 && ls d1 2>&1; true`);
    t.match(r.stdout, /^Invalid cross-device link$/m, 'the kernel says EXDEV (and strata with it)');
    p.checkAll(t);
  });

  t.test('no options: redirects the layers carry are followed (relative and absolute)', async (t) => {
    const p = new Pair(t, { lowers: redirectLayers(), programDefaults: true, kernelOpts: kernelDefaults() });
    const r = p.same(t, 'cat moved/f abs/inner/g; ls -aR');
    t.match(r.stdout, /in orig\nin deep dir\n/);
    p.checkAll(t);
  });

  t.test('redirect_dir=nofollow: a lookup that meets a redirect fails with EPERM, as in the kernel', async (t) => {
    const p = new Pair(t, {
      lowers: redirectLayers(),
      programDefaults: true,
      kernelOpts: [...kernelDefaults(), 'redirect_dir=nofollow'],
      strataOpts: ['redirect_dir=nofollow'],
    });
    const r = p.same(t, 'ls -aR; cat moved/f 2>&1; true');
    t.match(r.stdout, /Operation not permitted/, 'a lookup that meets a redirect is refused (EPERM)');
    p.checkMerged(t);
  });

  t.test('redirect_dir=follow: followed but not made', async (t) => {
    const p = new Pair(t, { lowers: redirectLayers(), programDefaults: true, kernelOpts: [...kernelDefaults(), 'redirect_dir=follow'], strataOpts: ['redirect_dir=follow'] });
    p.same(t, `cat moved/f; mv moved moved2 2>&1; ${rawRename.replace(/'d1' 'd1r'/, "'moved' 'm2'")}; ls -a`);
    p.checkAll(t);
  });

  t.test('index=on and metacopy=on are refused by name; off, and xino, are accepted', async (t) => {
    const ws = makeWorkspace(t, 'defaults');
    const lower = path.join(ws, 'lower');
    fs.mkdirSync(lower);
    for (const opt of ['index=on', 'metacopy=on', 'xino=maybe']) {
      const r = run(strataProgram(), ['-o', `lowerdir=${lower},${opt}`, path.join(ws, 'mnt')]);
      t.not(r.status, 0, `${opt} fails`);
      t.match(r.stderr, opt.split('=')[0]!, `and the message names ${opt.split('=')[0]}`);
    }
    const mnt = path.join(ws, 'ok');
    mountStrata(t, { lowers: [lower], mnt, extraOpts: ['index=off', 'metacopy=off', 'xino=auto'] });
    t.ok(isMounted(mnt), 'index=off,metacopy=off,xino=auto mount');
  });
}
