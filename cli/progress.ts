// Client side of the progress protocol (daemon/model/progress.ts), shared by build, save, load,
// commit, pull and push: POSTs a request, prints step lines ({stream}) to stdout as they come, draws
// byte progress bars ({progress}) on stderr when it is a terminal (nothing otherwise), and returns the
// final {result}. Transfers the CLI counts itself (import's upload, export's download) are drawn by
// the same renderer (countedTransfer).
import type * as Http from 'node:http';
import type { ProgressDetail, ProgressMessage } from '../daemon/model/progress';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { MUX_CONTENT_TYPE, MUX_DATA, MUX_PROGRESS, MuxReader } from '../daemon/model/progress';
import { DaemonError, DaemonGoneError, errorMessage, transportError } from './client';
import { humanSize } from './format';

/** A request body: JSON, or a stream (an archive) sent as it is read. */
export type PostBody = { json: unknown } | { stream: NodeJS.ReadableStream; contentType?: string } | undefined;

/**
 * POSTs `body` and hands each NDJSON line of the (streamed) answer to `onMessage`. A multiplexed
 * answer (daemon/model/progress.ts) has its data channel handed to `onData` (which may return a promise to
 * apply back-pressure) and its progress lines to `onMessage`.
 */
export function streamPost(
  socket: string,
  urlPath: string,
  body: PostBody,
  onMessage: (m: Record<string, unknown>) => void,
  onData?: (chunk: Buffer) => void | Promise<void>,
): Promise<void> {
  const payload = body !== undefined && 'json' in body ? Buffer.from(JSON.stringify(body.json)) : undefined;
  const headers: Record<string, string | number> = {};
  if (payload) {
    headers['Content-Type'] = 'application/json';
    headers['Content-Length'] = payload.length;
  } else if (body !== undefined && 'stream' in body) {
    headers['Content-Type'] = body.contentType ?? 'application/x-tar';
  }
  const upload = body !== undefined && 'stream' in body ? (body.stream as Readable) : undefined;
  // Once answered, the upload is not read any more (a pipe or FIFO would otherwise keep the CLI alive).
  return streamPostOnce(socket, urlPath, body, headers, payload, onMessage, onData).finally(() => {
    if (upload && !upload.readableEnded) upload.destroy();
  });
}

function streamPostOnce(
  socket: string,
  urlPath: string,
  body: PostBody,
  headers: Record<string, string | number>,
  payload: Buffer | undefined,
  onMessage: (m: Record<string, unknown>) => void,
  onData?: (chunk: Buffer) => void | Promise<void>,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let answered = false;
    let failed = false;
    const fail = (err: Error) => {
      failed = true;
      reject(err);
    };
    const http = require('node:http') as typeof Http; // required here: costly to load, and only transfers need it
    const req = http.request({ socketPath: socket, method: 'POST', path: urlPath, headers }, (res) => {
      answered = true;
      const status = res.statusCode ?? 0;
      const muxed = String(res.headers['content-type'] ?? '') === MUX_CONTENT_TYPE;
      let buf = '';
      let errText = '';
      const decoder = new StringDecoder('utf8');
      const lines = (text: string) => {
        buf += text;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.trim() === '') continue;
          try {
            onMessage(JSON.parse(line) as Record<string, unknown>);
          } catch (err) {
            fail(err as Error);
          }
        }
      };
      let pending: Promise<void> = Promise.resolve();
      const mux = new MuxReader((channel, data) => {
        if (channel === MUX_PROGRESS) lines(decoder.write(data));
        else if (channel === MUX_DATA && onData) {
          const r = onData(data);
          if (r instanceof Promise) {
            res.pause();
            pending = r.then(
              () => void res.resume(),
              (err: Error) => {
                res.destroy();
                fail(err);
              },
            );
          }
        }
      });
      res.on('data', (chunk: Buffer) => {
        if (status !== 200) errText += chunk.toString('utf8');
        else if (muxed) mux.push(chunk);
        else lines(decoder.write(chunk));
      });
      res.on('error', (err: NodeJS.ErrnoException) => fail(transportError(err, socket)));
      res.on('aborted', () => fail(new DaemonGoneError(socket)));
      res.on('end', () => {
        if (failed) return;
        if (status !== 200) return fail(new DaemonError(errorMessage(errText, status), status));
        if (buf.trim() !== '') {
          try {
            onMessage(JSON.parse(buf) as Record<string, unknown>);
          } catch {
            // a truncated last line: the daemon went away
          }
        }
        void pending.then(() => resolve());
      });
    });
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (!answered) fail(transportError(err, socket));
    });
    if (body !== undefined && 'stream' in body) {
      body.stream.on('error', (err: Error) => {
        req.destroy();
        fail(err);
      });
      body.stream.pipe(req);
    } else req.end(payload);
  });
}

const BAR_WIDTH = 30;

/**
 * `sha256:abcd1234  Loading [=====>     ]  12.3MB/45.6MB  8.1MB/s` (no bar when the total is unknown;
 * the rate, bytes a second, when given).
 */
export function progressLine(p: ProgressDetail, rate?: number): string {
  const speed = rate === undefined ? '' : `  ${humanSize(rate)}/s`;
  if (p.total === null || p.total <= 0) {
    return `${p.id}  ${p.action}  ${humanSize(p.current)}${p.total === 0 ? '/0B' : ''}${speed}`;
  }
  const frac = Math.max(0, Math.min(1, p.current / p.total));
  const filled = Math.floor(frac * BAR_WIDTH);
  const bar = frac >= 1 ? '='.repeat(BAR_WIDTH) : '='.repeat(filled) + '>' + ' '.repeat(BAR_WIDTH - filled - 1);
  return `${p.id}  ${p.action} [${bar}]  ${humanSize(p.current)}/${humanSize(p.total)}${speed}`;
}

/** Below this much time a rate says nothing (the first event of a bar). */
const MIN_RATE_MS = 200;

/** A completion event: current = total (the daemon sets total to current when it was unknown). */
function isComplete(p: ProgressDetail): boolean {
  return p.total !== null && p.current >= p.total;
}

export interface TermOut {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/**
 * Renders step text and progress events. On a terminal, the active bars are the last lines of the
 * screen (one per id, redrawn in place with cursor-up, `\r` and erase-line); a finished bar stays as a
 * plain line. Not on a terminal: the step text only.
 */
export class ProgressRenderer {
  private readonly active = new Map<string, ProgressDetail>();
  /** When each bar's first event came: its rate is bytes since then over the time since then. */
  private readonly started = new Map<string, { at: number; bytes: number }>();
  /** Bar lines currently on screen (below the last text). */
  private drawn = 0;
  /** The last text written did not end with a newline (RUN output mid-line): no bars until it does. */
  private midLine = false;

  constructor(
    private readonly stdout: TermOut = process.stdout,
    private readonly stderr: TermOut = process.stderr,
    readonly bars: boolean = process.stderr.isTTY === true,
    private readonly now: () => number = Date.now,
  ) {}

  text(s: string): void {
    if (s === '') return;
    this.clear();
    this.stdout.write(s);
    this.midLine = !s.endsWith('\n');
    this.draw();
  }

  progress(p: ProgressDetail): void {
    if (!this.bars) return;
    if (!this.started.has(p.id)) this.started.set(p.id, { at: this.now(), bytes: p.current });
    this.clear();
    if (isComplete(p)) {
      this.active.delete(p.id);
      if (!this.midLine) this.stderr.write(this.fit(progressLine(p, this.rate(p))) + '\n');
      this.started.delete(p.id);
    } else {
      this.active.set(p.id, p);
    }
    this.draw();
  }

  /** Removes the bars still drawn (before the result or an error is printed). */
  finish(): void {
    this.clear();
    this.active.clear();
  }

  private rate(p: ProgressDetail): number | undefined {
    const s = this.started.get(p.id);
    const ms = s === undefined ? 0 : this.now() - s.at;
    return s === undefined || ms < MIN_RATE_MS ? undefined : ((p.current - s.bytes) * 1000) / ms;
  }

  private fit(line: string): string {
    const cols = this.stderr.columns;
    return cols !== undefined && cols > 1 && line.length >= cols ? line.slice(0, cols - 1) : line;
  }

  private clear(): void {
    if (this.drawn === 0) return;
    let s = '';
    for (let i = 0; i < this.drawn; i++) s += '\x1b[1A\r\x1b[2K';
    this.stderr.write(s);
    this.drawn = 0;
  }

  private draw(): void {
    if (!this.bars || this.midLine || this.active.size === 0) return;
    let s = '';
    for (const p of this.active.values()) s += '\r\x1b[2K' + this.fit(progressLine(p, this.rate(p))) + '\n';
    this.stderr.write(s);
    this.drawn = this.active.size;
  }
}

/** How often a counted transfer redraws its bar (as the daemon's events come: PROGRESS_INTERVAL_MS). */
const REDRAW_MS = 100;

/**
 * Byte progress of a transfer the CLI counts itself (the upload of `image import`, the download of
 * `container export`), drawn as the daemon's progress events are: on stderr, only on a terminal.
 */
export function countedTransfer(id: string, action: string, total: number | null, r = new ProgressRenderer()): { add(n: number): void; done(ok?: boolean): void } {
  let current = 0;
  let last = 0;
  let finished = false;
  const show = (t: number | null) => r.progress({ id, action, current, total: t });
  if (r.bars) show(total);
  return {
    add(n) {
      current += n;
      const t = Date.now();
      if (!r.bars || finished || t - last < REDRAW_MS || (total !== null && current >= total)) return;
      last = t;
      show(total);
    },
    /** Finished: the completion line when `ok`, else the bar is just taken away (an error follows). */
    done(ok = true) {
      if (finished || !r.bars) return;
      finished = true;
      if (ok) show(current); // the completion line: current = total
      r.finish();
    },
  };
}

/** The final `{error}` line of a stream, as a thrown error (printed as one "Error: ..." line). */
export class StreamError extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
    this.name = 'StreamError';
  }
}

/**
 * POSTs to a streamed route and renders its progress; resolves with the final result, throws
 * StreamError for a final `{error}` (or a DaemonError / ConnectError as usual).
 */
export async function runStreamed<R>(
  socket: string,
  urlPath: string,
  body: PostBody,
  opts: { quiet?: boolean; onData?: (chunk: Buffer) => void | Promise<void>; textTo?: TermOut } = {},
): Promise<R> {
  const r = opts.quiet ? new ProgressRenderer(opts.textTo ?? process.stdout, process.stderr, false) : new ProgressRenderer(opts.textTo ?? process.stdout);
  let end: ProgressMessage<R> | undefined;
  try {
    await streamPost(socket, urlPath, body, (raw) => {
      const m = raw as ProgressMessage<R>;
      if ('stream' in m && typeof m.stream === 'string') {
        if (!opts.quiet) r.text(m.stream);
      } else if ('progress' in m && m.progress !== null && typeof m.progress === 'object') {
        r.progress(m.progress);
      } else if ('result' in m || 'error' in m) {
        end = m;
      }
    }, opts.onData);
  } finally {
    r.finish();
  }
  if (end === undefined) throw new DaemonGoneError(socket);
  if ('error' in end) throw new StreamError(end.error, end.code);
  return (end as { result: R }).result;
}
