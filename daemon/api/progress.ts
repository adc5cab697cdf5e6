// Writer side of the progress protocol (types-progress.ts): step lines, throttled byte progress,
// and the final result or error of a streamed NDJSON response.
import type * as http from 'node:http';
import { Transform } from 'node:stream';
import { humanSize } from './units';
import type { Logger } from '../log';
import { statusOf } from './errors';
import { Streamed } from './server';
import type { ByteCounter, ProgressMessage, ProgressReporter } from './types-progress';

/** At most one progress event per id per interval (plus the one at completion). */
export const PROGRESS_INTERVAL_MS = 100;

/** Sizes in step lines, as the CLI prints them (12.3MB). */
export const sizeText = humanSize;

/** "sha256:" + 12 hex digits: how layers are named in step lines and progress ids. */
export function digestShort(d: string): string {
  return d.slice(0, 'sha256:'.length + 12);
}

const nullCounter: ByteCounter = { add: () => undefined, done: () => undefined };

/** A reporter that drops everything (callers that do not stream). */
export const noProgress: ProgressReporter = { step: () => undefined, text: () => undefined, bytes: () => nullCounter };

/** A ProgressReporter writing NDJSON lines to a streamed response. */
export class ProgressWriter implements ProgressReporter {
  constructor(
    private readonly res: http.ServerResponse,
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

/** A Transform that passes its data through and counts it into `c` (done() is the caller's). */
export function countingStream(c: ByteCounter): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      c.add(chunk.length);
      cb(null, chunk);
    },
  });
}

export interface StreamOptions {
  /** Logs failures with status >= 500 (when errorOf is not given). */
  log?: Logger;
  what?: string;
  /** The final error line of a failure; default: its message and HTTP status. */
  errorOf?: (err: unknown) => { error: string; code: number };
}

/**
 * The streamed answer of a long operation: `task` reports steps and bytes through `p`; its value
 * becomes the final `{result}` line, a throw the final `{error, code}` line. `signal` aborts when
 * the client goes away.
 */
export function progressStream<R>(task: (p: ProgressWriter, signal: AbortSignal) => Promise<R>, opts: StreamOptions = {}): Streamed {
  return new Streamed(async (res) => {
    const ac = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) ac.abort();
    });
    const p = new ProgressWriter(res);
    try {
      const result = await task(p, ac.signal);
      p.send({ result });
    } catch (err) {
      if (opts.errorOf) {
        p.send(opts.errorOf(err));
        return;
      }
      const code = statusOf(err);
      const message = err instanceof Error ? err.message : String(err);
      if (code >= 500) opts.log?.error({ err: err instanceof Error ? err.stack : err, what: opts.what }, 'streamed request failed');
      else opts.log?.info({ status: code, what: opts.what, message }, 'streamed request refused');
      p.send({ error: message, code });
    }
  });
}
