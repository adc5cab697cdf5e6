// Differential harness: identical layer stacks mounted by kernel overlayfs (oracle) and by strata.
import * as path from 'node:path';
import type { Test } from 'tap';
import { Entry, StackDirs, buildStack } from './layers';
import { mountKernelOverlay, mountStrata, unmount } from './mount';
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
  kernelOpts?: string[];
  /** mount only the strata side (for layer formats the kernel cannot read, e.g. OCI .wh. files) */
  strataOnly?: boolean;
}

export type Assert = Test;

export interface PairResult {
  k: RunResult;
  s: RunResult;
}

export class Pair {
  readonly ws: string;
  readonly k: StackDirs;
  readonly s: StackDirs;
  /** ns timestamp taken before the stacks were built: later mtimes snapshot as "recent" */
  readonly startNs: bigint;
  readonly spec: PairSpec;
  private readonly t: TestLike;

  constructor(t: TestLike, spec: PairSpec) {
    this.t = t;
    this.spec = spec;
    this.startNs = BigInt(Date.now() - 5000) * 1_000_000n;
    this.ws = makeWorkspace(t, 'pair');
    this.k = buildStack(path.join(this.ws, 'k'), spec.lowers, spec.upper ?? []);
    this.s = buildStack(path.join(this.ws, 's'), spec.lowers, spec.upper ?? []);
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
        extraOpts: this.spec.kernelOpts,
      });
    }
    mountStrata(this.t, {
      lowers: this.s.lowers,
      upper: ro ? undefined : this.s.upper,
      work: ro ? undefined : this.s.work,
      mnt: this.s.mnt,
      extraOpts: this.spec.strataOpts,
    });
  }

  unmount(): void {
    unmount(this.k.mnt);
    unmount(this.s.mnt);
  }

  remount(): void {
    this.unmount();
    this.mount();
  }

  /** Run the same shell script in both mountpoints; output has the mountpoint replaced by $MNT. */
  sh(script: string, opts: ShOptions = {}): PairResult {
    const norm = (r: RunResult, mnt: string): RunResult => ({
      status: r.status,
      stdout: r.stdout.split(mnt).join('$MNT'),
      stderr: r.stderr.split(mnt).join('$MNT'),
    });
    const env = (mnt: string) => ({ ...(opts.env ?? {}), MNT: mnt });
    return {
      k: norm(sh(this.k.mnt, script, { ...opts, env: env(this.k.mnt) }), this.k.mnt),
      s: norm(sh(this.s.mnt, script, { ...opts, env: env(this.s.mnt) }), this.s.mnt),
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

  checkMerged(t: Assert, msg = 'merged views equal', opts: SnapshotOptions = {}): boolean {
    return t.same(this.mergedDiff(opts), [], msg);
  }

  /** Unmounts both sides (flushing strata) before comparing the upper dirs. */
  checkUpper(t: Assert, msg = 'upper dirs equal', opts: SnapshotOptions = {}): boolean {
    this.unmount();
    return t.same(this.upperDiff(opts), [], msg);
  }

  /** merged views, then (after unmount) upper dirs. */
  checkAll(t: Assert, opts: SnapshotOptions = {}, upperOpts: SnapshotOptions = opts): void {
    this.checkMerged(t, 'merged views equal', opts);
    this.checkUpper(t, 'upper dirs equal', upperOpts);
  }
}
