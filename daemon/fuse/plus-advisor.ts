// Whether READDIRPLUS replies carry attributes for the entries that are not directories.
//
// Attributes in a listing make the kernel build an inode for every entry. That is the win when
// the caller goes on to stat the entries (ls -l, du, tar: no LOOKUP round trip per entry), and
// a loss of about 5% when it only walks names (find, whose d_type needs no inode). The kernel
// does not say which caller it serves, so we watch what follows: a listing sent "bare" (files
// without attributes) followed by LOOKUPs of its names means attributes are wanted. Directories
// always carry attributes: every walker looks them up to descend.
//
// With attributes on, a caller that stats makes no request at all, so nothing tells it apart
// from one that does not: every so often one listing goes bare as a probe. Each probe that
// finds lookups doubles the interval to the next, so a long stat-ing walk pays for a handful.

const FIRST_PROBE_AFTER = 16;
const LONGEST_PROBE_INTERVAL = 1024;
/** Listings after a probe with no lookup of its names before the verdict is "bare": a
 * depth-first walker (fts) descends into a directory's first subdirectories before it
 * stats the files that follow them. */
const VERDICT_AFTER = 4;
/** Parents of the last bare listings whose lookups still count. */
const WATCHED = 4;

export class PlusAdvisor {
  private bare = false;
  private interval = FIRST_PROBE_AFTER;
  private untilProbe = FIRST_PROBE_AFTER;
  /** Listings since the probe awaiting its verdict, counting the probe; 0: none. */
  private probeAge = 0;
  private readonly watched: number[] = [];

  /** `changed` hears every switch (for the debug log). */
  constructor(private readonly changed: (filesBare: boolean) => void = () => {}) {}

  /**
   * A listing of `parent` starts (offset 0) and holds `files` entries that are not
   * directories: should they go without attributes?
   */
  startListing(parent: number, files: number): boolean {
    if (this.probeAge > 0 && ++this.probeAge > VERDICT_AFTER + 1) {
      this.probeAge = 0;
      this.bare = true;
      this.changed(true);
    }
    if (files === 0) return this.bare;
    if (!this.bare) {
      if (this.probeAge > 0 || --this.untilProbe > 0) return false;
      this.probeAge = 1;
    }
    this.watched.push(parent);
    if (this.watched.length > WATCHED) this.watched.shift();
    return true;
  }

  /** A LOOKUP under `parent` arrived. */
  lookedUp(parent: number): void {
    if (this.watched.length > 0 && this.watched.includes(parent)) this.wanted();
  }

  /** True while listings go without file attributes (for tests and logs). */
  get filesBare(): boolean {
    return this.bare;
  }

  private wanted(): void {
    if (this.bare) this.changed(false);
    this.bare = false;
    this.probeAge = 0;
    this.watched.length = 0;
    this.interval = Math.min(this.interval * 2, LONGEST_PROBE_INTERVAL);
    this.untilProbe = this.interval;
  }
}
