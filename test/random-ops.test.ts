// Seeded random-operation differential test: the same op sequence is applied in lockstep (Node fs calls, absolute
// paths) to a kernel overlay mount and a strata mount over identical fresh 3-layer stacks; every op's result/errno,
// periodic merged views, and the final merged views and upper dirs must be equal.
// Env: STRATA_SEED (default random), STRATA_RANDOM_OPS (default 2000), STRATA_RANDOM_CHECK_EVERY (default 200),
//      STRATA_SHRINK_BUDGET_MS (default 90000; 0 disables shrinking).
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { missingCapability, mountKernelOverlay, mountStrata, unmount } from './lib/mount';
import { buildStack, StackDirs } from './lib/layers';
import { diffSnapshots, ignoreKernelPrivate, snapshot } from './lib/snapshot';
import { makeWorkspace } from './lib/workspace';
import { Op, applyOp, isDir, randomLayers, randomOps } from './lib/random-ops';
import { run } from './lib/exec';
import { rmTree, unmountUnder } from './lib/mounts';

interface Outcome {
  /** index of the first op whose result differed, or -1 */
  firstBadOp: number;
  detail: string[];
  /** ops where strata answered EXDEV to a directory rename and `mv` fallback was used */
  exdevFallbacks: number;
}

const why = missingCapability({ fuse: true, overlay: true });
if (why) {
  t.comment(`skipping: ${why}`);
  t.plan(0, why);
} else {
  const seed = process.env.STRATA_SEED ? Number(process.env.STRATA_SEED) : Math.floor(Math.random() * 2 ** 31);
  const nOps = Number(process.env.STRATA_RANDOM_OPS || 2000);
  const every = Number(process.env.STRATA_RANDOM_CHECK_EVERY || 200);
  const shrinkBudget = Number(process.env.STRATA_SHRINK_BUDGET_MS ?? 90_000);

  const differential = (seed: number, nOps: number): void => {
  t.test(`random ops (seed ${seed}, ${nOps} ops)`, async (t) => {
    t.comment(`STRATA_SEED=${seed}`);
    const ws = makeWorkspace(t, 'rand');
    const layers = randomLayers(seed);
    const ops = randomOps(seed, nOps);
    let trialNo = 0;

    /** Run `ops` on fresh stacks; compare in lockstep. Unmounts and deletes its stacks before returning. */
    const trial = (ops: Op[], checkEvery: number, keep = false): Outcome => {
      const root = path.join(ws, `trial${trialNo++}`);
      const k = buildStack(path.join(root, 'k'), layers);
      const s = buildStack(path.join(root, 's'), layers);
      const startNs = BigInt(Date.now() - 5000) * 1_000_000n;
      const out: Outcome = { firstBadOp: -1, detail: [], exdevFallbacks: 0 };
      const mount = (x: StackDirs, strata: boolean) =>
        (strata ? mountStrata : mountKernelOverlay)(undefined, { lowers: x.lowers, upper: x.upper, work: x.work, mnt: x.mnt });
      try {
        mount(k, false);
        mount(s, true);
        const views = (i: number): boolean => {
          const o = { recentAfterNs: startNs };
          const d = diffSnapshots(snapshot(k.mnt, o), snapshot(s.mnt, o));
          if (d.length) {
            out.firstBadOp = i;
            out.detail = [`merged views differ after op #${i}:`, ...d.slice(0, 40)];
            return false;
          }
          return true;
        };
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
          if (rk !== rs) {
            out.firstBadOp = i;
            out.detail = [`op #${i} ${JSON.stringify(op)}: kernel=${rk} strata=${rs}`];
            return out;
          }
          if (checkEvery > 0 && (i + 1) % checkEvery === 0 && !views(i)) return out;
        }
        if (!views(ops.length - 1)) return out;
        unmount(k.mnt);
        unmount(s.mnt);
        if (out.exdevFallbacks === 0) {
          const o = { recentAfterNs: startNs, ignoreXattr: ignoreKernelPrivate, dirNlink: true };
          const d = diffSnapshots(snapshot(k.upper, o), snapshot(s.upper, o));
          if (d.length) {
            out.firstBadOp = ops.length - 1;
            out.detail = ['upper dirs differ at the end:', ...d.slice(0, 40)];
          }
        }
        return out;
      } finally {
        unmountUnder(root);
        if (!keep) rmTree(root);
      }
    };

    const t0 = Date.now();
    const res = trial(ops, every);
    t.comment(`${ops.length} ops in ${Date.now() - t0} ms, ${res.exdevFallbacks} EXDEV dir-rename fallbacks`);
    if (res.exdevFallbacks) t.comment('upper dirs not compared: strata used EXDEV for directory renames (kernel used redirects)');
    if (res.firstBadOp < 0) {
      t.pass(`kernel and strata agree on all ${ops.length} ops, merged views and upper dirs`);
      return;
    }
    t.comment(`FAILED with STRATA_SEED=${seed}`);
    for (const l of res.detail) t.comment(l);

    // shrink: the prefix up to the first failing op, then delta debugging (ddmin) within a time budget
    let cur = ops.slice(0, res.firstBadOp + 1);
    const fails = (cand: Op[]): boolean => cand.length > 0 && trial(cand, 1).firstBadOp >= 0;
    const deadline = Date.now() + shrinkBudget;
    if (shrinkBudget > 0 && fails(cur)) {
      let n = 2;
      while (cur.length >= 2 && Date.now() < deadline) {
        const chunk = Math.ceil(cur.length / n);
        let reduced = false;
        for (let i = 0; i < n && Date.now() < deadline; i++) {
          const complement = [...cur.slice(0, i * chunk), ...cur.slice((i + 1) * chunk)];
          if (fails(complement)) {
            cur = complement;
            n = Math.max(n - 1, 2);
            reduced = true;
            break;
          }
        }
        if (!reduced) {
          if (n >= cur.length) break;
          n = Math.min(cur.length, n * 2);
        }
      }
      const final = trial(cur, 1);
      t.comment(`shrunk to ${cur.length} op(s) (STRATA_SEED=${seed}; layers are derived from the seed):`);
      for (const op of cur) t.comment(`  ${JSON.stringify(op)}`);
      for (const l of final.detail) t.comment(l);
    } else {
      t.comment('shrinking skipped (disabled, or the failing prefix did not reproduce on its own: flaky?)');
    }
    t.fail(`kernel and strata disagree (STRATA_SEED=${seed}): ${res.detail[0]}`);
  });
  };

  // Seeds that once exposed a bug (rename by hard-link name, rename marking order, a symlink
  // on an absolute redirect's path), replayed as regressions; then a fresh seed every run.
  for (const [s, n] of [[9191, 800], [1814357058, 800], [4242, 400], [466558424, 400]]) differential(s, n);
  differential(seed, nOps);
}
