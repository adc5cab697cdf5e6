// The places hosts put layers, upper and work dirs: each layout is built by the tests themselves
// (tmpfs, squashfs and xfs/btrfs loop images) below a workspace, whose removal unmounts them.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runOk } from './exec';
import { Entry, StackDirs, buildLayer } from './layers';

export type LayoutName = 'ext4' | 'tmpfs-lowers' | 'tmpfs-upper' | 'squashfs-lowers' | 'xfs' | 'btrfs-upper';

export interface Layout {
  name: LayoutName;
  /** what a host with this layout looks like */
  about: string;
  /** filesystem types mounted for the lowers and for upper+work (null: the workspace's own, ext4 here) */
  lowerFs: 'tmpfs' | 'squashfs' | 'xfs' | null;
  upperFs: 'tmpfs' | 'xfs' | 'btrfs' | null;
}

/**
 * Kernel overlay options a layout needs for a like-for-like comparison: where layers sit on several
 * filesystems, xino=on makes the kernel's inode numbers unique across them as strata's always are
 * (with xino=off two files of two layers may share an st_ino, which reads as a hard link).
 */
export function kernelOptsFor(layout: Layout): string[] {
  return layout.lowerFs === layout.upperFs ? [] : ['xino=on'];
}

export const LAYOUTS: Record<LayoutName, Layout> = {
  ext4: { name: 'ext4', about: 'lowers, upper and work on one ext4', lowerFs: null, upperFs: null },
  'tmpfs-lowers': { name: 'tmpfs-lowers', about: 'lowers on tmpfs, upper and work on ext4', lowerFs: 'tmpfs', upperFs: null },
  'tmpfs-upper': { name: 'tmpfs-upper', about: 'lowers on ext4, upper and work on tmpfs', lowerFs: null, upperFs: 'tmpfs' },
  'squashfs-lowers': { name: 'squashfs-lowers', about: 'lowers on read-only squashfs images, upper and work on ext4', lowerFs: 'squashfs', upperFs: null },
  xfs: { name: 'xfs', about: 'lowers, upper and work on one loop-mounted xfs (reflink copy-up)', lowerFs: 'xfs', upperFs: 'xfs' },
  'btrfs-upper': { name: 'btrfs-upper', about: 'lowers on ext4, upper and work on a loop-mounted btrfs', lowerFs: null, upperFs: 'btrfs' },
};

/** Every layout but the workspace's own: the ones a case is rotated through. */
export const OTHER_LAYOUTS: LayoutName[] = ['tmpfs-lowers', 'tmpfs-upper', 'squashfs-lowers', 'xfs', 'btrfs-upper'];

/** The layout a case runs in besides ext4: the cases of a file are spread over the others in turn. */
export function rotatedLayout(caseIndex: number): LayoutName {
  return OTHER_LAYOUTS[caseIndex % OTHER_LAYOUTS.length]!;
}

/** A sparse image file made into a filesystem and loop-mounted at `mnt`. */
function mountImage(fsType: 'xfs' | 'btrfs', dir: string, mnt: string): void {
  const img = path.join(dir, `${path.basename(mnt)}.img`);
  fs.closeSync(fs.openSync(img, 'w'));
  fs.truncateSync(img, 512 * 1024 * 1024);
  if (fsType === 'xfs') runOk('mkfs.xfs', ['-q', '-m', 'reflink=1', img]);
  else runOk('mkfs.btrfs', ['-q', img]);
  fs.mkdirSync(mnt, { recursive: true });
  runOk('mount', ['-o', 'loop', img, mnt]);
}

function mountFs(fsType: 'tmpfs' | 'xfs' | 'btrfs', dir: string, mnt: string): void {
  if (fsType === 'tmpfs') {
    fs.mkdirSync(mnt, { recursive: true });
    runOk('mount', ['-t', 'tmpfs', '-o', 'mode=0755,size=1g', 'strata-test', mnt]);
  } else {
    mountImage(fsType, dir, mnt);
  }
}

/**
 * The filesystems of a layout, mounted below `dir` once and shared by the stacks built in it
 * (the kernel's and strata's side of a pair, and every stacked level).
 */
export class LayoutRoots {
  readonly lowerBase: string;
  readonly upperBase: string;

  constructor(
    readonly layout: Layout,
    readonly dir: string,
  ) {
    fs.mkdirSync(dir, { recursive: true });
    this.lowerBase = dir;
    this.upperBase = dir;
    const shared = layout.lowerFs !== null && layout.lowerFs === layout.upperFs;
    if (layout.lowerFs === 'tmpfs' || layout.lowerFs === 'xfs') {
      this.lowerBase = path.join(dir, shared ? 'fs' : 'lowerfs');
      mountFs(layout.lowerFs, dir, this.lowerBase);
    }
    if (shared) this.upperBase = this.lowerBase;
    else if (layout.upperFs !== null) {
      this.upperBase = path.join(dir, 'upperfs');
      mountFs(layout.upperFs, dir, this.upperBase);
    }
  }

  /**
   * Builds a stack as buildStack does, with lowers and upper placed by the layout. Squashfs lowers
   * are built in a staging dir, packed into one image each and mounted read-only.
   */
  buildStack(name: string, lowers: Entry[][], upper: Entry[] = []): StackDirs {
    const root = path.join(this.dir, name);
    const upperRoot = path.join(this.upperBase, name);
    fs.mkdirSync(root, { recursive: true });
    const dirs: StackDirs = {
      root,
      lowers: lowers.map((_, i) => path.join(this.lowerBase, name, `l${i}`)),
      upper: path.join(upperRoot, 'upper'),
      work: path.join(upperRoot, 'work'),
      mnt: path.join(root, 'mnt'),
    };
    lowers.forEach((entries, i) => {
      if (this.layout.lowerFs !== 'squashfs') return buildLayer(dirs.lowers[i]!, entries);
      const stage = path.join(root, `stage-l${i}`);
      buildLayer(stage, entries);
      const img = path.join(root, `l${i}.sqfs`);
      runOk('mksquashfs', [stage, img, '-quiet', '-no-progress', '-noappend', '-xattrs']);
      fs.rmSync(stage, { recursive: true, force: true });
      fs.mkdirSync(dirs.lowers[i]!, { recursive: true });
      runOk('mount', ['-t', 'squashfs', '-o', 'loop,ro', img, dirs.lowers[i]!]);
    });
    buildLayer(dirs.upper, upper);
    fs.mkdirSync(dirs.work, { recursive: true });
    fs.mkdirSync(dirs.mnt, { recursive: true });
    return dirs;
  }

  /** A fresh upper and work dir for stacked level `level` of stack `name`, on the layout's upper filesystem. */
  freshUpper(name: string, level: number): { upper: string; work: string } {
    const base = path.join(this.upperBase, name);
    const out = { upper: path.join(base, `upper${level}`), work: path.join(base, `work${level}`) };
    fs.mkdirSync(out.upper, { recursive: true });
    fs.mkdirSync(out.work, { recursive: true });
    return out;
  }
}
