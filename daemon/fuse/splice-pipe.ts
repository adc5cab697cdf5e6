// A READ reply sent by splice: header and data go through a pipe to /dev/fuse, the file's
// page-cache pages handed over rather than copied through the process. Whoever answers
// READs (the session's thread, the read-offload thread) owns one pipe.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as native from '../../native-shims';
import { MAX_WRITE, OUT_HEADER_SIZE } from './protocol';

const PAGE = 4096;
const E = os.constants.errno;
/** reply(): nothing sent, the data must take the copying path. */
export const NOT_SENT = -1;

export class SplicePipe {
  private constructor(
    private readonly r: number,
    private readonly w: number,
    private readonly devNull: number,
    /** Capacity in bytes. */
    readonly size: number,
  ) {}

  /** A pipe as large as a 1 MiB READ needs (or as pipe-max-size allows an unprivileged process). */
  static open(): SplicePipe {
    const [r, w] = native.pipe2();
    let size = -1;
    for (const want of [MAX_WRITE + 2 * PAGE, 1 << 20, 256 * 1024]) if (size < 0) size = native.setPipeSize(w, want);
    return new SplicePipe(r, w, fs.openSync('/dev/null', 'w'), Math.max(size, 64 * 1024));
  }

  /** Whether `n` bytes fit: a pipe holds whole pages, the header's and an unaligned range's extra one. */
  fits(n: number): boolean {
    return n + 2 * PAGE <= this.size;
  }

  /**
   * Sends the first `headerLen` bytes of `header` (a reply's: len = 16 + n, error 0, unique; or a
   * notification's with its fields) and `n` bytes of `fileFd` at `offset` to `devFd`. NOT_SENT
   * when the data must be copied instead (a short splice from the file); else 0, or the errno
   * the kernel refused it with (ENOENT, an interrupted request that is gone, counts as 0).
   */
  reply(devFd: number, fileFd: number, offset: number, n: number, header: Buffer, headerLen = OUT_HEADER_SIZE): number {
    if (native.writeFrom(this.w, header, headerLen) !== headerLen) return this.failed();
    let moved = 0;
    while (moved < n) {
      const m = native.splice(fileFd, offset + moved, this.w, -1, n - moved, native.SPLICE_F_MOVE);
      if (m <= 0) return this.failed();
      moved += m;
    }
    const sent = native.splice(this.r, -1, devFd, -1, headerLen + n, native.SPLICE_F_MOVE);
    if (sent === headerLen + n) return 0;
    this.drain(); // anything left in the pipe is dropped
    return sent === -E.ENOENT ? 0 : sent < 0 ? -sent : E.EIO;
  }

  private failed(): number {
    this.drain();
    return NOT_SENT;
  }

  private drain(): void {
    // Non-blocking: nothing else writes to the pipe, so an empty pipe ends it.
    while (native.splice(this.r, -1, this.devNull, -1, this.size, native.SPLICE_F_NONBLOCK) > 0);
  }

  close(): void {
    for (const fd of [this.r, this.w, this.devNull]) fs.closeSync(fd);
  }
}
