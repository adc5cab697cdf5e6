// What a union moves out of sight into its work dir to be removed: a removed directory's
// whiteouts, a merged directory replaced by a rename. Its name is gone from the union once
// the move is done, so the removal itself can wait for the reply to be sent: it is drained a
// bounded amount at a time after replies, and whatever is left goes when the union ends (a
// crash leaves it to the next mount's clean-up of the work dir).
import * as fs from 'node:fs';

export class Trash {
  private readonly queue: string[] = [];
  /** Entries of queue[0] still to remove; null until it is listed. */
  private names: string[] | null = null;

  get empty(): boolean {
    return this.queue.length === 0;
  }

  /** `path` (in the work dir, out of the union's sight) is to be removed, with all it holds. */
  add(path: string): void {
    this.queue.push(path);
  }

  /** Removes up to `budget` entries (the rest on a later call); a directory goes with its last entry. Never throws. */
  drain(budget = Infinity): void {
    while (budget > 0 && this.queue.length > 0) {
      const dir = this.queue[0];
      if (this.names === null) this.names = list(dir);
      for (; budget > 0 && this.names.length > 0; budget--) removeEntry(dir + '/' + this.names.pop()!);
      if (this.names.length > 0) return;
      removeDir(dir);
      this.queue.shift();
      this.names = null;
    }
  }
}

function list(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return []; // not a directory (removeDir copes), or already gone
  }
}

/** Whiteouts and other plain entries take one unlink; anything else the general way. */
function removeEntry(path: string): void {
  try {
    fs.unlinkSync(path);
  } catch {
    removeTree(path);
  }
}

function removeDir(path: string): void {
  try {
    fs.rmdirSync(path);
  } catch {
    removeTree(path);
  }
}

function removeTree(path: string): void {
  try {
    fs.rmSync(path, { recursive: true, force: true });
  } catch {
    // left for the work dir's clean-up at the next mount
  }
}
