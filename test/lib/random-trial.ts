// One run of the seeded random-operation differential: the same ops applied in lockstep to a kernel
// overlay mount and a strata mount over identical stacks, in a given layout, with the upper stacked
// under a fresh one between segments. Shared by random-ops.test.ts and scripts/random-ops-long.
import * as path from 'node:path';
import { run } from './exec';
import type { Entry, StackDirs } from './layers';
import { LAYOUTS, type LayoutName, LayoutRoots, kernelOptsFor } from './layouts';
import { mountKernelOverlay, mountStrata, unmount } from './mount-union';
import { rmTree, unmountUnder } from './mount-table';
import { type Op, applyOp, isDir } from './random-ops';
import { diffSnapshots, ignoreKernelPrivate, snapshot } from './snapshot';

export interface TrialOptions {
  layout: LayoutName;
  /** the ops are cut into this many segments; after each but the last, each upper becomes a lower */
  levels: number;
  /** compare merged views every this many ops (0: only at segment ends) */
  checkEvery: number;
  /** leave the stacks on disk (for a look after a failure) */
  keep?: boolean;
}

export interface Outcome {
  /** index of the first op whose result differed, or -1 */
  firstBadOp: number;
  detail: string[];
  /** ops where strata answered EXDEV to a directory rename and `mv` fallback was used */
  exdevFallbacks: number;
}

/** Runs `ops` on fresh stacks below `root`; unmounts (and unless `keep`, deletes) them before returning. */
export function runTrial(root: string, layers: Entry[][], ops: Op[], o: TrialOptions): Outcome {
  const roots = new LayoutRoots(LAYOUTS[o.layout], root);
  const kernelOpts = kernelOptsFor(roots.layout);
  const out: Outcome = { firstBadOp: -1, detail: [], exdevFallbacks: 0 };
  const startNs = BigInt(Date.now() - 5000) * 1_000_000n;
  const snapOpts = { recentAfterNs: startNs };
  try {
    const k = roots.buildStack('k', layers);
    const s = roots.buildStack('s', layers);
    const mount = (x: StackDirs, strata: boolean) =>
      strata
        ? mountStrata(undefined, { lowers: x.lowers, upper: x.upper, work: x.work, mnt: x.mnt })
        : mountKernelOverlay(undefined, { lowers: x.lowers, upper: x.upper, work: x.work, mnt: x.mnt, extraOpts: kernelOpts });
    const fail = (i: number, detail: string[]): Outcome => {
      out.firstBadOp = i;
      out.detail = detail;
      return out;
    };
    const viewsDiffer = (i: number, what: string, a: string, b: string): Outcome | null => {
      const d = diffSnapshots(snapshot(a, snapOpts), snapshot(b, snapOpts));
      return d.length ? fail(i, [`${what} after op #${i}:`, ...d.slice(0, 40)]) : null;
    };
    const perLevel = Math.ceil(ops.length / Math.max(1, o.levels));
    mount(k, false);
    mount(s, true);
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i]!;
      const rk = applyOp(k.mnt, op);
      let rs = applyOp(s.mnt, op);
      if (op.op === 'rename' && rs === 'EXDEV' && isDir(path.join(s.mnt, op.p))) {
        // strata may refuse to rename a lower dir; emulate what mv(1) does then, only when the kernel succeeded
        if (rk === 'ok') {
          const r = run('mv', ['-T', '--', path.join(s.mnt, op.p), path.join(s.mnt, op.to)]);
          rs = r.status === 0 ? 'ok' : `mv-fallback:${r.stderr.trim()}`;
        } else rs = rk;
        out.exdevFallbacks++;
      }
      if (rk !== rs) return fail(i, [`op #${i} ${JSON.stringify(op)}: kernel=${rk} strata=${rs}`]);
      const segmentEnd = (i + 1) % perLevel === 0 || i === ops.length - 1;
      if ((o.checkEvery > 0 && (i + 1) % o.checkEvery === 0) || segmentEnd) {
        const bad = viewsDiffer(i, 'merged views differ', k.mnt, s.mnt);
        if (bad) return bad;
      }
      if (!segmentEnd) continue;
      unmount(k.mnt);
      unmount(s.mnt);
      if (out.exdevFallbacks === 0) {
        const uo = { ...snapOpts, ignoreXattr: ignoreKernelPrivate, dirNlink: true };
        const d = diffSnapshots(snapshot(k.upper, uo), snapshot(s.upper, uo));
        if (d.length) return fail(i, [`upper dirs differ after op #${i}:`, ...d.slice(0, 40)]);
      }
      if (i === ops.length - 1) break;
      // The next segment runs over this one's result, as the next layer of an image.
      const level = Math.floor((i + 1) / perLevel);
      for (const [side, name] of [[k, 'k'], [s, 's']] as const) {
        side.lowers = [side.upper, ...side.lowers];
        Object.assign(side, roots.freshUpper(name, level));
      }
      // The kernel reads strata's layers as it reads its own (both read-only: a fresh upper has its own times).
      const cross = (name: string) => path.join(root, `cross${level}`, name);
      mountKernelOverlay(undefined, { lowers: k.lowers, mnt: cross('kk'), extraOpts: kernelOpts });
      mountKernelOverlay(undefined, { lowers: s.lowers, mnt: cross('ks'), extraOpts: kernelOpts });
      const bad = viewsDiffer(i, `the kernel over strata's layers differs from the kernel over its own (level ${level})`, cross('kk'), cross('ks'));
      unmount(cross('kk'));
      unmount(cross('ks'));
      if (bad) return bad;
      mount(k, false);
      mount(s, true);
    }
    return out;
  } finally {
    unmountUnder(root);
    if (!o.keep) rmTree(root);
  }
}
