// Runs script cases of the differential harness over the layout matrix and over stacked layers.
import type { Test } from 'tap';
import type { ShOptions } from './exec';
import type { Entry } from './layers';
import { type LayoutName, rotatedLayout } from './layouts';
import { Pair } from './pair';

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
 * Every case runs on ext4 as before, and once more in another layout, the cases of a file taking
 * the other layouts in turn, so each case also runs where lowers and upper are on different
 * filesystems (or all on one reflinking xfs); the stacked levels run in that second layout, with
 * strata reading the lowers through their metadata indexes (the ext4 run reads them live).
 */
export function pairCases(t: Test, cases: PairCase[], o: PairCaseOptions): void {
  cases.forEach((c, i) => {
    t.test(c.name, async (t) => runPairCase(t, c, 'ext4', { ...o, stackLevels: 0 }));
    const layout = rotatedLayout(i);
    t.test(`${c.name} [${layout}${o.stackLevels ? `, stacked ${o.stackLevels}x` : ''}]`, async (t) => runPairCase(t, c, layout, { ...o, index: true }));
  });
}
