// Writer side of the progress protocol (daemon/model/progress.ts): step lines, throttled byte progress,
// and the final result or error of a streamed NDJSON response.
import { Writable } from 'node:stream';
import { MUX_CONTENT_TYPE, MUX_DATA, MUX_PROGRESS, muxHeader } from '../model/progress';
import type { Logger } from '../log';
import { toApiError } from './errors';
import { Streamed } from './server';
import type { ByteCounter, ProgressMessage, ProgressReporter } from '../model/progress';

/** At most one progress event per id per interval (plus the one at completion). */
export const PROGRESS_INTERVAL_MS = 100;

/** A ProgressReporter writing NDJSON lines to a streamed response. */
export class ProgressWriter implements ProgressReporter {
  constructor(
    private readonly res: Writable,
    private readonly now: () => number = Date.now,
  ) {}

  send(m: ProgressMessage<unknown>): void {
    if (!this.res.writableEnded && !this.res.destroyed) this.res.write(JSON.stringify(m) + '\n');
  }

  step(line: string): void {
    this.send({ stream: line.endsWith('\n') ? line : line + '\n' });
  }

  text(chunk: string): void {
    if (chunk !== '') this.send({ stream: chunk });
  }

  bytes(id: string, action: string, total: number | null): ByteCounter {
    let current = 0;
    let last = this.now();
    let finished = false;
    const emit = (t: number | null) => this.send({ progress: { id, action, current, total: t } });
    emit(total); // a bar can be drawn right away
    return {
      add: (n) => {
        if (finished || n <= 0) return;
        current += n;
        if (total !== null && current >= total) return; // the completion event is done()'s
        const t = this.now();
        if (t - last >= PROGRESS_INTERVAL_MS) {
          last = t;
          emit(total);
        }
      },
      done: () => {
        if (finished) return;
        finished = true;
        emit(current); // completion: current === total
      },
    };
  }
}

export interface StreamOptions {
  /** Logs failures with status >= 500 (when errorOf is not given). */
  log?: Logger;
  what?: string;
  /** The final error line of a failure; default: its message and HTTP status. */
  errorOf?: (err: unknown) => { error: string; code: number };
}

/** Runs `task` with progress going to `lines`; its value or error becomes the final line. */
async function runWithProgress<R>(lines: Writable, signal: AbortSignal, task: (p: ProgressWriter, signal: AbortSignal) => Promise<R>, opts: StreamOptions): Promise<void> {
  const p = new ProgressWriter(lines);
  try {
    const result = await task(p, signal);
    p.send({ result });
  } catch (err) {
    if (opts.errorOf) {
      p.send(opts.errorOf(err));
      return;
    }
    const { status: code, message } = toApiError(err);
    if (code >= 500) opts.log?.error({ err: err instanceof Error ? err.stack : err, what: opts.what }, 'streamed request failed');
    else opts.log?.info({ status: code, what: opts.what, message }, 'streamed request refused');
    p.send({ error: message, code });
  }
}

function abortOnClose(res: Writable): AbortSignal {
  const ac = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) ac.abort();
  });
  return ac.signal;
}

/**
 * The streamed answer of a long operation: `task` reports steps and bytes through `p`; its value
 * becomes the final `{result}` line, a throw the final `{error, code}` line. `signal` aborts when
 * the client goes away.
 */
export function progressStream<R>(task: (p: ProgressWriter, signal: AbortSignal) => Promise<R>, opts: StreamOptions = {}): Streamed {
  return new Streamed((res) => runWithProgress(res, abortOnClose(res), task, opts));
}

/** One channel of a multiplexed response: each write becomes one frame. */
class MuxChannel extends Writable {
  constructor(
    private readonly res: Writable,
    private readonly id: number,
  ) {
    super();
    // A client gone mid-answer fails the writes; writers see it (destroyed), it must not be an uncaught error.
    this.on('error', () => undefined);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.res.destroyed) return cb(new Error('the client went away'));
    for (let off = 0; off < chunk.length; off += 0xffff_ffff) {
      const part = chunk.subarray(off, off + 0xffff_ffff);
      this.res.write(muxHeader(this.id, part.length));
      if (!this.res.write(part) && off + part.length >= chunk.length) {
        this.res.once('drain', () => cb());
        return;
      }
    }
    cb();
  }
}

/**
 * Like progressStream, for an operation that also produces data (an archive): the answer is
 * multiplexed (daemon/model/progress.ts), the data on one channel, the progress lines on the other.
 */
export function progressStreamWithData<R>(task: (p: ProgressWriter, data: Writable, signal: AbortSignal) => Promise<R>, opts: StreamOptions = {}): Streamed {
  return new Streamed(async (res) => {
    const data = new MuxChannel(res, MUX_DATA);
    const lines = new MuxChannel(res, MUX_PROGRESS);
    await runWithProgress(lines, abortOnClose(res), (p, signal) => task(p, data, signal), opts);
    await new Promise<void>((resolve) => lines.end(resolve));
  }, MUX_CONTENT_TYPE);
}
