// Layers written by one mount read by the next: each step of a scenario runs on a new mount whose
// top lower is the previous step's upper (kernel and strata alike), so redirects, whiteouts and
// opaque dirs pile up across layers as image builds pile them up. Every level compares output,
// merged views and upper dirs, and each program reads the other's layers (Pair.stack).
import t, { type Test } from 'tap';
import { missingCapability } from './lib/mount-union';
import { Pair } from './lib/pair';
import type { Entry } from './lib/layers';
import { type LayoutName, OTHER_LAYOUTS, rotatedLayout } from './lib/layouts';
import { type CaseLevel, caseGroup } from './lib/pair-group';

const base = (): Entry[][] => [
  [
    { path: 'a/dir102/a', type: 'file', content: 'file a\n' },
    { path: 'a/empty102', type: 'dir' },
    { path: 'b', type: 'dir' },
    { path: 'c/d/e/f', type: 'file', content: 'deep f\n' },
    { path: 'p/q/r', type: 'file', content: 'r\n' },
    { path: 'w/x/y', type: 'file', content: 'y\n' },
  ],
];

// [name, one script per level]; the last level's upper is read once more by a stacked mount.
const scenarios: Array<[string, string[]]> = [
  ['relative redirect, then absolute (the renamed dir moved to another dir)', ['mv a/dir102 a/dir102x', 'mv a/dir102x a/empty102/dir102', 'cat a/empty102/dir102/a; ls -aR a']],
  ['absolute redirect, then relative', ['mv c/d b/d', 'mv b/d b/dd', 'cat b/dd/e/f; ls -aR b c']],
  ['absolute, absolute, absolute, absolute', ['mv c/d b/d', 'mv b/d a/empty102/d', 'mv a/empty102/d p/d2', 'mv p/d2 p/q/d3', 'cat p/q/d3/e/f; ls -aR']],
  ['relative three times', ['mv a a1', 'mv a1 a2', 'mv a2 a3', 'cat a3/dir102/a; ls -aR a3']],
  ['a parent renamed, then its child moved away (a redirect on the way of an absolute one)', ['mv a a2', 'mv a2/dir102 c/moved', 'cat c/moved/a; ls -aR a2 c']],
  ['a child moved away, then its old parent renamed', ['mv a/dir102 c/x', 'mv c c2', 'cat c2/x/a c2/d/e/f; ls -aR c2 a']],
  ['the target of an absolute redirect whited out and made anew', ['mv c/d b/d', 'rm -rf c && mkdir -p c/d && echo fresh > c/d/g', 'cat b/d/e/f c/d/g; ls -aR b c']],
  ['a redirected dir made opaque later', ['mv c/d b/d', 'rm -rf b/d && mkdir b/d && echo o > b/d/o', 'ls -aR b c; cat b/d/e/f 2>&1; true']],
  ['a renamed dir whose old name is whited out, then reused', ['mv w/x w/x2', 'mkdir w/x && echo n > w/x/n', 'mv w/x2 w/x3', 'cat w/x3/y w/x/n; ls -aR w']],
  ['a dir moved away and back', ['mv a/dir102 a/tmp', 'mv a/tmp a/dir102', 'mv a/dir102 b/', 'cat b/dir102/a; ls -aR a b']],
  ['files renamed and hard-linked across levels', ['mv p/q/r p/r2 && ln p/r2 p/r3', 'mv p/r3 w/x/r4 && rm p/r2', 'ln w/x/r4 p/q/r5', 'cat w/x/r4 p/q/r5; stat -c "%h %n" w/x/r4 p/q/r5']],
];

/** A scenario's levels: one per step, then its last upper read as a lower. */
function levels(steps: string[]): CaseLevel[] {
  return [
    ...steps.map((script, level) => ({ script: `${script} 2>&1; true`, msg: `level ${level}: ${script}` })),
    { script: 'find . | sort; find . -type f -exec cat {} + | sort', msg: 'the last upper read as a lower', check: 'merged' as const },
  ];
}

/** A scenario alone in the union root. */
function runScenario(t: Test, steps: string[], layout: LayoutName): void {
  const p = new Pair(t, { lowers: base(), layout });
  levels(steps).forEach((l, level) => {
    if (level > 0) p.stack(t);
    p.same(t, l.script, l.msg);
    if (l.check === 'merged') p.checkMerged(t);
    else p.checkAll(t);
  });
}

const why = missingCapability({ fuse: true, overlay: true });
if (why) {
  t.comment(`skipping: ${why}`);
  t.plan(0, why);
} else {
  // Each scenario alone on ext4, and in another layout, the scenarios taking the other layouts in
  // turn; those sharing a layout share its mounts, each in a dir of its own (pair-group.ts).
  for (const [name, steps] of scenarios) t.test(name, async (t) => runScenario(t, steps, 'ext4'));
  for (const layout of OTHER_LAYOUTS) {
    const group = scenarios
      .filter((_, i) => rotatedLayout(i) === layout)
      .map(([name, steps]) => ({ name: `${name} [${layout}]`, lowers: base(), levels: levels(steps) }));
    caseGroup(t, `${layout}: ${group.length} scenarios sharing the mounts, each in its own dir`, group, { layout });
  }
}
