// Differential harness: identical layer stacks mounted by kernel overlayfs (oracle) and by strata.
import * as path from 'node:path';
import type { Test } from 'tap';
import type { Entry, StackDirs } from './layers';
import { LAYOUTS, LayoutName, LayoutRoots, kernelOptsFor } from './layouts';
import { INDEX_BY_DEFAULT, mountKernelOverlay, mountStrata, unmount } from './mount-union';
import { RunResult, ShOptions, sh } from './exec';
import { Snapshot, SnapshotOptions, diffSnapshots, ignoreKernelPrivate, snapshot } from './snapshot';
import { TestLike, makeWorkspace } from './workspace';

export interface PairSpec {
  /** lower layers, topmost first */
  lowers: Entry[][];
  /** initial upper content; ignored when readonly */
  upper?: Entry[];
  /** mount without upperdir */
  readonly?: boolean;
  strataOpts?: string[];
  /** environment of the strata mount program (e.g. its log level and file) */
  strataEnv?: Record<string, string>;
  kernelOpts?: string[];
  /** mount only the strata side (for layer formats the kernel cannot read, e.g. OCI .wh. files) */
  strataOnly?: boolean;
  /** where lowers, upper and work live (default: all on the workspace's filesystem) */
  layout?: LayoutName;
  /** mount both with their own defaults, not the oracle options (redirect_dir=on, ...) */
  programDefaults?: boolean;
  /** strata serves the lowers' metadata from layer indexes (default: INDEX_BY_DEFAULT) */
  index?: boolean;
}

export type Assert = Test;

export interface PairResult {
  k: RunResult;
  s: RunResult;
}

export class Pair {
  readonly ws: string;
  readonly roots: LayoutRoots;
  readonly k: StackDirs;
  readonly s: StackDirs;
  /** how many times the upper has been stacked under a fresh one */
  level = 0;
  /** ns timestamp taken before the stacks were built: later mtimes snapshot as "recent" */
  readonly startNs: bigint;
  readonly spec: PairSpec;
  private readonly t: TestLike;

  constructor(t: TestLike, spec: PairSpec) {
    this.t = t;
    this.spec = spec;
    this.startNs = BigInt(Date.now() - 5000) * 1_000_000n;
    this.ws = makeWorkspace(t, 'pair');
    this.roots = new LayoutRoots(LAYOUTS[spec.layout ?? 'ext4'], this.ws);
    this.k = this.roots.buildStack('k', spec.lowers, spec.upper ?? []);
    this.s = this.roots.buildStack('s', spec.lowers, spec.upper ?? []);
    this.mount();
  }

  /**
   * Makes each side's upper the top lower of a new mount with a fresh upper (as an image build
   * commits a layer and starts the next), after checking that each program reads the other's
   * layers exactly as it reads its own: the kernel over strata's layers, strata over the kernel's,
   * both read-only, against the kernel over its own.
   */
  stack(t: Assert): void {
    this.unmount();
    this.level++;
    for (const [side, name] of [[this.k, 'k'], [this.s, 's']] as const) {
      side.lowers = [side.upper, ...side.lowers];
      Object.assign(side, this.roots.freshUpper(name, this.level));
    }
    if (!this.spec.strataOnly) {
      const mnt = (name: string) => path.join(this.ws, `cross${this.level}`, name);
      const extraOpts = kernelOptsFor(this.roots.layout);
      mountKernelOverlay(this.t, { lowers: this.k.lowers, mnt: mnt('kk'), extraOpts });
      mountKernelOverlay(this.t, { lowers: this.s.lowers, mnt: mnt('ks'), extraOpts });
      mountStrata(this.t, { lowers: this.k.lowers, mnt: mnt('sk'), indexDir: this.indexDir });
      const o = { recentAfterNs: this.startNs };
      const base = snapshot(mnt('kk'), o);
      this.compare(t, `level ${this.level}: the kernel reads strata's layers as it reads its own`, base, snapshot(mnt('ks'), o));
      this.compare(t, `level ${this.level}: strata reads the kernel's layers as the kernel does`, base, snapshot(mnt('sk'), o));
      for (const name of ['kk', 'ks', 'sk']) unmount(mnt(name));
    }
    this.mount();
  }

  mount(): void {
    const ro = this.spec.readonly;
    if (!this.spec.strataOnly) {
      mountKernelOverlay(this.t, {
        lowers: this.k.lowers,
        upper: ro ? undefined : this.k.upper,
        work: ro ? undefined : this.k.work,
        mnt: this.k.mnt,
        extraOpts: [...kernelOptsFor(this.roots.layout), ...(this.spec.kernelOpts ?? [])],
        programDefaults: this.spec.programDefaults,
      });
    }
    mountStrata(this.t, {
      lowers: this.s.lowers,
      upper: ro ? undefined : this.s.upper,
      work: ro ? undefined : this.s.work,
      mnt: this.s.mnt,
      extraOpts: this.spec.strataOpts,
      env: this.spec.strataEnv,
      programDefaults: this.spec.programDefaults,
      indexDir: this.indexDir,
    });
  }

  /** Where strata's layer indexes are kept, when this pair uses them. */
  get indexDir(): string | undefined {
    return (this.spec.index ?? INDEX_BY_DEFAULT) ? path.join(this.ws, 'indexes') : undefined;
  }

  unmount(): void {
    unmount(this.k.mnt);
    unmount(this.s.mnt);
  }

  remount(): void {
    this.unmount();
    this.mount();
  }

  /**
   * Run the same shell script in both mountpoints (in `dir` below them); output has the mountpoint
   * replaced by $MNT.
   */
  sh(script: string, opts: ShOptions = {}, dir = ''): PairResult {
    const norm = (r: RunResult, mnt: string): RunResult => ({
      status: r.status,
      stdout: r.stdout.split(mnt).join('$MNT'),
      stderr: r.stderr.split(mnt).join('$MNT'),
    });
    const env = (mnt: string) => ({ ...(opts.env ?? {}), MNT: mnt });
    return {
      k: norm(sh(path.join(this.k.mnt, dir), script, { ...opts, env: env(this.k.mnt) }), this.k.mnt),
      s: norm(sh(path.join(this.s.mnt, dir), script, { ...opts, env: env(this.s.mnt) }), this.s.mnt),
    };
  }

  /** Run in both and assert identical exit status / stdout / stderr. Returns the kernel's result. */
  same(t: Assert, script: string, msg?: string, opts: ShOptions = {}): RunResult {
    const r = this.sh(script, opts);
    if (process.env.STRATA_TEST_VERBOSE) t.comment(`kernel: status=${r.k.status}\n${r.k.stdout}${r.k.stderr}`);
    t.same(r.s, r.k, msg ?? `same result: ${script.slice(0, 120)}`);
    return r.k;
  }

  snapMerged(opts: SnapshotOptions = {}): { k: Snapshot; s: Snapshot } {
    const o = { recentAfterNs: this.startNs, ...opts };
    return { k: snapshot(this.k.mnt, o), s: snapshot(this.s.mnt, o) };
  }

  snapUpper(opts: SnapshotOptions = {}): { k: Snapshot; s: Snapshot } {
    const o: SnapshotOptions = { recentAfterNs: this.startNs, ignoreXattr: ignoreKernelPrivate, dirNlink: true, ...opts };
    return { k: snapshot(this.k.upper, o), s: snapshot(this.s.upper, o) };
  }

  mergedDiff(opts: SnapshotOptions = {}): string[] {
    const { k, s } = this.snapMerged(opts);
    return diffSnapshots(k, s);
  }

  upperDiff(opts: SnapshotOptions = {}): string[] {
    const { k, s } = this.snapUpper(opts);
    return diffSnapshots(k, s);
  }

  /** Asserts that strata's snapshot `s` equals the kernel's `k` (CasesPair asserts it per case dir). */
  protected compare(t: Assert, msg: string, k: Snapshot, s: Snapshot): boolean {
    return t.same(diffSnapshots(k, s), [], msg);
  }

  checkMerged(t: Assert, msg = 'merged views equal', opts: SnapshotOptions = {}): boolean {
    const { k, s } = this.snapMerged(opts);
    return this.compare(t, msg, k, s);
  }

  /** Unmounts both sides (flushing strata) before comparing the upper dirs. */
  checkUpper(t: Assert, msg = 'upper dirs equal', opts: SnapshotOptions = {}): boolean {
    this.unmount();
    const { k, s } = this.snapUpper(opts);
    return this.compare(t, msg, k, s);
  }

  /** merged views, then (after unmount) upper dirs. */
  checkAll(t: Assert, opts: SnapshotOptions = {}, upperOpts: SnapshotOptions = opts): void {
    this.checkMerged(t, 'merged views equal', opts);
    this.checkUpper(t, 'upper dirs equal', upperOpts);
  }
}
