// Runs script cases of the differential harness over the layout matrix and over stacked layers.
import type { Test } from 'tap';
import type { ShOptions } from './exec';
import type { Entry } from './layers';
import { type LayoutName, OTHER_LAYOUTS, rotatedLayout } from './layouts';
import { Pair } from './pair';
import { type GroupCase, caseGroup } from './pair-group';

export interface PairCase {
  name: string;
  script: string;
  opts?: ShOptions;
}

export interface PairCaseOptions {
  lowers: () => Entry[][];
  /** Stack each side's upper under a fresh one this many times, running the script again each time. */
  stackLevels?: number;
}

/** One case in one layout: same output, merged views and upper dirs equal; then the stacked levels. */
export function runPairCase(t: Test, c: PairCase, layout: LayoutName, o: PairCaseOptions & { index?: boolean }): void {
  const p = new Pair(t, { lowers: o.lowers(), layout, index: o.index });
  p.same(t, c.script, undefined, c.opts);
  p.checkAll(t);
  for (let level = 1; level <= (o.stackLevels ?? 0); level++) {
    p.stack(t);
    p.same(t, c.script, `level ${level}: same result again over the stacked layers`, c.opts);
    p.checkAll(t);
  }
}

/**
 * Every case runs on ext4 as before, alone in the union root, and once more in another layout, the
 * cases of a file taking the other layouts in turn, so each case also runs where lowers and upper
 * are on different filesystems (or all on one reflinking xfs); the stacked levels run in that second
 * layout, with strata reading the lowers through their metadata indexes (the ext4 run reads them
 * live). The cases sharing a second layout share its mounts, each in a dir of its own (pair-group.ts).
 */
export function pairCases(t: Test, cases: PairCase[], o: PairCaseOptions): void {
  const stacked = o.stackLevels ? `, stacked ${o.stackLevels}x` : '';
  for (const c of cases) t.test(c.name, async (t) => runPairCase(t, c, 'ext4', { ...o, stackLevels: 0 }));
  for (const layout of OTHER_LAYOUTS) {
    const group: GroupCase[] = cases
      .filter((_, i) => rotatedLayout(i) === layout)
      .map((c) => ({
        name: `${c.name} [${layout}${stacked}]`,
        lowers: o.lowers(),
        levels: Array.from({ length: (o.stackLevels ?? 0) + 1 }, (_, level) => ({
          script: c.script,
          opts: c.opts,
          msg: level > 0 ? `level ${level}: same result again over the stacked layers` : undefined,
        })),
      }));
    if (group.length) caseGroup(t, `${layout}${stacked}: ${group.length} cases sharing the mounts, each in its own dir`, group, { layout, index: true });
  }
}
