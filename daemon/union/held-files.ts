// Files whose last name goes while they are open keep one in the work dir (as NFS's "silly
// rename" does), so that a process taking over the mount after a crash (fuse/journal.ts) can open
// them again: an open file whose name is gone still reads, writes and fstats there. Upper files
// get a hard link (made before the name goes: a file with no link left cannot get one back), a
// lower file a symlink to itself (a lower layer is never written). Named by nodeid, so a takeover
// finds a node's file without a journal record. Only for connections that can be taken over.
import * as fs from 'node:fs';
import * as native from '../../native-shims';

/** The directory's name inside the work dir (`work/work`, which a fresh mount, ours or the kernel's, clears). */
export const HELD_DIR = '#held';

export class HeldFiles {
  /** Nodes held by a hard link: their st_nlink counts it. */
  private readonly linked = new Set<number>();
  private readonly pointed = new Set<number>();
  private enabled = false;

  constructor(readonly dir: string) {}

  private path(id: number): string {
    return `${this.dir}/${id}`;
  }

  /** Holding starts (a connection that can be taken over); `resumed`: keep what a takeover may need. */
  start(resumed: boolean): void {
    this.enabled = true;
    if (!resumed) fs.rmSync(this.dir, { recursive: true, force: true });
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  has(id: number): boolean {
    return this.linked.has(id) || this.pointed.has(id);
  }

  /** The held link adds one to the file's st_nlink. */
  extraLinks(id: number): number {
    return this.linked.has(id) ? 1 : 0;
  }

  /** Gives node `id` a name here before its last one goes: a hard link to the upper file, or a symlink to the lower one. */
  hold(id: number, realPath: string, upper: boolean): void {
    if (!this.enabled) return;
    const p = this.path(id);
    fs.rmSync(p, { force: true }); // left by a run cut short before the name went
    if (upper) {
      fs.linkSync(realPath, p);
      this.linked.add(id);
    } else {
      fs.symlinkSync(realPath, p);
      this.pointed.add(id);
    }
  }

  /** An O_TMPFILE (never named): linked through its fd (needs CAP_DAC_READ_SEARCH; without it, not held). */
  holdFd(id: number, fd: number): boolean {
    if (!this.enabled) return false;
    try {
      native.linkatEmptyPath(fd, this.path(id));
    } catch {
      return false;
    }
    this.linked.add(id);
    return true;
  }

  /** The node is closed for good, or has a name again: its held name goes. */
  release(id: number): void {
    if (!this.linked.delete(id) && !this.pointed.delete(id)) return;
    fs.rmSync(this.path(id), { force: true });
  }

  /** After a takeover: opens node `id`'s held file (null: none), and counts it as held. */
  reopen(id: number, write: boolean): number | null {
    const p = this.path(id);
    const st = fs.lstatSync(p, { throwIfNoEntry: false });
    if (st === undefined) return null;
    const fd = fs.openSync(p, write ? fs.constants.O_RDWR : fs.constants.O_RDONLY);
    (st.isSymbolicLink() ? this.pointed : this.linked).add(id);
    return fd;
  }

  /** After a takeover: what no restored open file needs goes. */
  prune(): void {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch {
      return;
    }
    for (const name of names) if (!this.has(Number(name))) fs.rmSync(`${this.dir}/${name}`, { force: true });
  }

  /** The mount is over: nothing is held any more. */
  clear(): void {
    this.linked.clear();
    this.pointed.clear();
    if (this.enabled) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
