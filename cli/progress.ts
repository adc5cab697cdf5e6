// Client side of the progress protocol (daemon/api/types-progress.ts), shared by build, save and load:
// POSTs a request, prints step lines ({stream}) to stdout as they come, draws byte progress bars
// ({progress}) on stderr when it is a terminal (nothing otherwise), and returns the final {result}.
import * as http from 'node:http';
import type { ProgressDetail, ProgressMessage } from '../daemon/api/types-progress';
import { ConnectError, DaemonError } from './client';
import { humanSize } from './format';

/** POSTs `body` and hands each NDJSON line of the (streamed) answer to `onMessage`. */
export function streamPost(socket: string, urlPath: string, body: unknown, onMessage: (m: Record<string, unknown>) => void): Promise<void> {
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath: socket, method: 'POST', path: urlPath, headers: { 'Content-Type': 'application/json', 'Content-Length': payload.length } },
      (res) => {
        const status = res.statusCode ?? 0;
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          if (status !== 200) return;
          let nl: number;
          while ((nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            if (line.trim() === '') continue;
            try {
              onMessage(JSON.parse(line) as Record<string, unknown>);
            } catch (err) {
              reject(err);
            }
          }
        });
        res.on('error', reject);
        res.on('end', () => {
          if (status !== 200) {
            let msg = buf.trim();
            try {
              msg = (JSON.parse(buf) as { message?: string }).message ?? msg;
            } catch {
              // plain text
            }
            reject(new DaemonError(msg || `HTTP ${status}`, status));
            return;
          }
          if (buf.trim() !== '') {
            try {
              onMessage(JSON.parse(buf) as Record<string, unknown>);
            } catch {
              // a truncated last line: the daemon went away
            }
          }
          resolve();
        });
      },
    );
    req.on('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? '';
      if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'EACCES' || code === 'ENOTSOCK') reject(new ConnectError(socket, code));
      else reject(err);
    });
    req.end(payload);
  });
}

const BAR_WIDTH = 30;

/** `sha256:abcd1234  Loading [=====>     ]  12.3MB/45.6MB` (no brackets when the total is unknown). */
export function progressLine(p: ProgressDetail): string {
  if (p.total === null || p.total <= 0) {
    return `${p.id}  ${p.action}  ${humanSize(p.current)}${p.total === 0 ? '/0B' : ''}`;
  }
  const frac = Math.max(0, Math.min(1, p.current / p.total));
  const filled = Math.floor(frac * BAR_WIDTH);
  const bar = frac >= 1 ? '='.repeat(BAR_WIDTH) : '='.repeat(filled) + '>' + ' '.repeat(BAR_WIDTH - filled - 1);
  return `${p.id}  ${p.action} [${bar}]  ${humanSize(p.current)}/${humanSize(p.total)}`;
}

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
  /** Bar lines currently on screen (below the last text). */
  private drawn = 0;
  /** The last text written did not end with a newline (RUN output mid-line): no bars until it does. */
  private midLine = false;

  constructor(
    private readonly stdout: TermOut = process.stdout,
    private readonly stderr: TermOut = process.stderr,
    readonly bars: boolean = process.stderr.isTTY === true,
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
    this.clear();
    if (isComplete(p)) {
      this.active.delete(p.id);
      if (!this.midLine) this.stderr.write(this.fit(progressLine(p)) + '\n');
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
    for (const p of this.active.values()) s += '\r\x1b[2K' + this.fit(progressLine(p)) + '\n';
    this.stderr.write(s);
    this.drawn = this.active.size;
  }
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
export async function runStreamed<R>(socket: string, urlPath: string, body: unknown, opts: { quiet?: boolean } = {}): Promise<R> {
  const r = opts.quiet ? new ProgressRenderer(process.stdout, process.stderr, false) : new ProgressRenderer();
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
    });
  } finally {
    r.finish();
  }
  if (end === undefined) throw new Error('the daemon ended the response without a result (did it stop?)');
  if ('error' in end) throw new StreamError(end.error, end.code);
  return (end as { result: R }).result;
}
