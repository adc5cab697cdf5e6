// Collects the garbage a burst of requests leaves, once the thread is idle. An engine thread waits
// in epoll_wait, never in Node's event loop, so V8's own idle-time collection (its memory reducer)
// never runs there: listings and lookups promoted during a `find` would stay in the heap, as RSS,
// until the next burst filled it up to V8's limit. Needs node's --expose-gc (bin/stratad and
// bin/strata-mount pass it); without it nothing is collected early.
import * as v8 from 'node:v8';

/** Quiet this long after serving, the thread collects. */
const IDLE_MS = 1_000;
/** ...if the heap has grown this much since the last collection (a quiet thread is not woken for nothing). */
const GROWTH_BYTES = 4 << 20;

export class IdleCollector {
  private readonly gc = (globalThis as { gc?: () => void }).gc;
  private usedAfterGc = 0;
  private served = false;

  /** The epoll_wait timeout to use now: -1 (wait for ever) unless a collection may be due. */
  timeout(): number {
    return this.served && this.gc !== undefined ? IDLE_MS : -1;
  }

  /** Requests were served. */
  busy(): void {
    this.served = true;
  }

  /** The wait timed out: nothing was served for IDLE_MS. */
  idle(): void {
    this.served = false;
    if (this.gc === undefined || v8.getHeapStatistics().used_heap_size < this.usedAfterGc + GROWTH_BYTES) return;
    this.gc();
    this.usedAfterGc = v8.getHeapStatistics().used_heap_size;
  }
}
