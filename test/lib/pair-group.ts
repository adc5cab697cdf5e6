// Several differential cases served by one pair of mounts: each case gets a dir of its own below the
// union root holding its own copy of the lowers, and runs its script there. Mounting (a strata-mount
// process, a kernel overlay, the cross-reads of every stacked level) costs far more than a case's
// script, so a group of cases in one layout pays it once per level instead of once per case.
// Every comparison is split per case dir and recorded, then replayed as that case's own subtest.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Test } from 'tap';
import type { ShOptions } from './exec';
import type { Entry } from './layers';
import type { LayoutName } from './layouts';
import { Assert, Pair, PairSpec } from './pair';
import { Snapshot, diffSnapshots } from './snapshot';

/** One level of a case: a script run in its dir, then its merged view (and upper dir) compared. */
export interface CaseLevel {
  script: string;
  msg?: string;
  opts?: ShOptions;
  /** 'merged': compare only the merged views (nothing written that the upper must show) */
  check?: 'all' | 'merged';
}

export interface GroupCase {
  /** the case's subtest name */
  name: string;
  lowers: Entry[][];
  /** level 0 on the first mount, level n after the upper has been stacked n times */
  levels: CaseLevel[];
}

interface Check {
  found: unknown;
  wanted: unknown;
  msg: string;
}

/** Entries of `layer` moved below `dir` (hard-link targets and absolute redirects with them). */
function below(dir: string, layer: Entry[]): Entry[] {
  return layer.map((e): Entry => {
    const p = path.posix.join(dir, e.path);
    if (e.type === 'hardlink') return { ...e, path: p, target: path.posix.join(dir, e.target) };
    if (e.type === 'redirect' && e.target.startsWith('/')) return { ...e, path: p, target: `/${dir}${e.target}` };
    return { ...e, path: p };
  });
}

/** The part of a snapshot below `dir`, keyed as a snapshot of `dir` itself would be. */
export function subtree(snap: Snapshot, dir: string): Snapshot {
  const prefix = `${dir}/`;
  const rel = (p: string) => (p === dir ? '.' : p.startsWith(prefix) ? p.slice(prefix.length) : null);
  const out: Snapshot = {};
  for (const [p, e] of Object.entries(snap)) {
    const r = rel(p);
    if (r === null) continue;
    out[r] = e.inoGroup === undefined ? e : { ...e, inoGroup: rel(e.inoGroup) ?? e.inoGroup };
  }
  return out;
}

/** A pair whose comparisons are made per case dir, each recorded for that case. */
class CasesPair extends Pair {
  /** indexes of the cases the current level compares */
  active: number[] = [];

  constructor(
    t: Test,
    spec: PairSpec,
    readonly dirs: string[],
    readonly checks: Check[][],
  ) {
    super(t, spec);
    // a case dir missing from the views would compare nothing with nothing
    for (const d of dirs) if (!fs.existsSync(path.join(this.k.mnt, d))) throw new Error(`${d} is not in the kernel's view`);
  }

  protected override compare(_t: Assert, msg: string, k: Snapshot, s: Snapshot): boolean {
    let ok = true;
    for (const i of this.active) {
      const diff = diffSnapshots(subtree(k, this.dirs[i]!), subtree(s, this.dirs[i]!));
      this.checks[i]!.push({ found: diff, wanted: [], msg });
      ok &&= diff.length === 0;
    }
    return ok;
  }
}

/**
 * A subtest `name` running `cases` in one pair of mounts in `layout`: level by level, every case
 * still having a level runs its script in its dir, then the merged views and (after unmounting) the
 * upper dirs are compared per case, then the uppers are stacked (Pair.stack: each program reads the
 * other's layers, compared per case). Each case is then reported as a subtest named as the case,
 * carrying its own comparisons, and failing too if the shared mounts failed on the way.
 */
export function caseGroup(t: Test, name: string, cases: GroupCase[], spec: { layout: LayoutName; index?: boolean }): void {
  t.test(name, async (t) => runCaseGroup(t, cases, spec));
}

function runCaseGroup(t: Test, cases: GroupCase[], spec: { layout: LayoutName; index?: boolean }): void {
  const dirs = cases.map((_, i) => `case${i}`);
  const checks: Check[][] = cases.map(() => []);
  const depth = Math.max(...cases.map((c) => c.lowers.length));
  const lowers = Array.from({ length: depth }, (_, j) => cases.flatMap((c, i) => below(dirs[i]!, c.lowers[j] ?? [])));
  let failure: unknown;
  try {
    const p = new CasesPair(t, { ...spec, lowers }, dirs, checks);
    const levels = Math.max(...cases.map((c) => c.levels.length));
    for (let level = 0; level < levels; level++) {
      const at = cases.map((c) => c.levels[level]);
      const running = at.flatMap((l, i) => (l ? [i] : []));
      p.active = running;
      if (level > 0) p.stack(t);
      for (const i of running) {
        const l = at[i]!;
        const r = p.sh(l.script, l.opts, dirs[i]);
        checks[i]!.push({ found: r.s, wanted: r.k, msg: l.msg ?? `same result: ${l.script.slice(0, 120)}` });
      }
      p.checkMerged(t);
      p.active = running.filter((i) => (at[i]!.check ?? 'all') === 'all');
      if (p.active.length) p.checkUpper(t);
    }
  } catch (err) {
    failure = err;
  }
  cases.forEach((c, i) => {
    t.test(c.name, async (t) => {
      for (const x of checks[i]!) t.same(x.found, x.wanted, x.msg);
      if (failure !== undefined) t.fail(`the mounts shared with ${cases.length - 1} other case(s) failed: ${String(failure)}`);
    });
  });
}
