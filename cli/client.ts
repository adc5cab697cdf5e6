// HTTP/1.1 JSON client for stratad's API over a Unix socket (routes: daemon/model/types.ts).
// JSON calls go through socket-http.ts; node:http, costly to load, only for streamed transfers.
import type * as Http from 'node:http';
import type { Readable } from 'node:stream';
import { API_VERSION } from '../daemon/model/types';
import { requestOverSocket } from './socket-http';

import { DEFAULT_SOCKET } from '../daemon/model/types';

/** The socket to talk to: --socket, then $STRATA_SOCKET, then the default. */
export function resolveSocket(flag?: string): string {
  return flag || process.env.STRATA_SOCKET || DEFAULT_SOCKET;
}

/** The daemon answered with an error status; `message` is its ApiErrorBody.message. */
export class DaemonError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'DaemonError';
  }
}

/** The daemon could not be reached at all. */
export class ConnectError extends Error {
  constructor(
    readonly socket: string,
    readonly code: string,
  ) {
    super(
      code === 'EACCES'
        ? `permission denied while connecting to the strata daemon at ${socket}: try again with sudo`
        : `cannot connect to the strata daemon at ${socket}: is stratad running? Start it with: sudo stratad (or make daemon)`,
    );
    this.name = 'ConnectError';
  }
}

/** The daemon went away in the middle of a request (stopped, crashed, or closed the connection). */
export class DaemonGoneError extends Error {
  constructor(readonly socket: string) {
    super(`the strata daemon at ${socket} closed the connection before it answered: did stratad stop or crash? (see its log)`);
    this.name = 'DaemonGoneError';
  }
}

/** What a transport error means for the user: no daemon, or a daemon gone mid-request. */
export function transportError(err: NodeJS.ErrnoException, socket: string): Error {
  const code = err.code ?? '';
  if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'EACCES' || code === 'ENOTSOCK') return new ConnectError(socket, code);
  if (code === 'ECONNRESET' || code === 'EPIPE' || /socket hang up/.test(err.message)) return new DaemonGoneError(socket);
  return err;
}

/** The error body of a failed request: its JSON message, else its text, else the status. */
export function errorMessage(text: string, status: number): string {
  try {
    const m = (JSON.parse(text) as { message?: unknown }).message;
    if (typeof m === 'string') return m;
  } catch {
    // not JSON: the text itself
  }
  return text.trim() || `HTTP ${status}`;
}

export type Query = Record<string, string | number | boolean | undefined | string[]>;

/** Build "/a/b?x=1" — path segments are passed already joined; use `seg()` for user-supplied parts. */
export function withQuery(path: string, query?: Query): string {
  if (!query) return path;
  const parts: string[] = [];
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined || v === false) continue;
    for (const one of Array.isArray(v) ? v : [v]) parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(one === true ? '1' : String(one))}`);
  }
  return parts.length ? `${path}?${parts.join('&')}` : path;
}

/** URL-encode one path segment (image refs contain ':' and '/'). */
export function seg(s: string): string {
  return encodeURIComponent(s);
}

export class Client {
  constructor(readonly socket: string) {}

  get<T>(path: string, query?: Query): Promise<T> {
    return this.request<T>('GET', withQuery(path, query));
  }
  post<T>(path: string, body?: unknown, query?: Query): Promise<T> {
    return this.request<T>('POST', withQuery(path, query), body ?? {});
  }
  delete<T>(path: string, query?: Query): Promise<T> {
    return this.request<T>('DELETE', withQuery(path, query));
  }

  /** GETs a binary body into `out` (e.g. stdout); rejects if the daemon aborts it midway. */
  download(path: string, out: NodeJS.WritableStream, onBytes?: (n: number) => void): Promise<number> {
    const http = require('node:http') as typeof Http;
    return new Promise<number>((resolve, reject) => {
      const req = http.request({ socketPath: this.socket, method: 'GET', path }, (res) => {
        const status = res.statusCode ?? 0;
        if (status < 200 || status >= 300) {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => reject(new DaemonError(errorMessage(Buffer.concat(chunks).toString('utf8'), status), status)));
          return;
        }
        let bytes = 0;
        res.on('data', (c: Buffer) => {
          bytes += c.length;
          onBytes?.(c.length);
          if (!out.write(c)) {
            res.pause();
            out.once('drain', () => res.resume());
          }
        });
        res.on('aborted', () => reject(new Error('the daemon stopped the transfer midway (see its log)')));
        res.on('error', (err: NodeJS.ErrnoException) => reject(transportError(err, this.socket)));
        res.on('end', () => (res.complete ? resolve(bytes) : reject(new Error('the transfer ended early'))));
      });
      req.on('error', (err: NodeJS.ErrnoException) => reject(transportError(err, this.socket)));
      req.end();
    });
  }

  /** POSTs a stream (an archive) as the body; resolves with the JSON answer. */
  upload<T>(path: string, body: NodeJS.ReadableStream, contentType = 'application/x-tar'): Promise<T> {
    return this.request<T>('POST', path, undefined, { body, contentType });
  }

  async request<T>(method: string, path: string, body?: unknown, stream?: { body: NodeJS.ReadableStream; contentType: string }): Promise<T> {
    if (stream) return this.streamRequest<T>(method, path, stream);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (payload) headers['Content-Type'] = 'application/json';
    let r;
    try {
      r = await requestOverSocket(this.socket, method, path, headers, payload);
    } catch (err) {
      throw transportError(err as NodeJS.ErrnoException, this.socket);
    }
    const version = r.headers['api-version'];
    if (version !== undefined && version !== API_VERSION) {
      throw new Error(`the strata daemon at ${this.socket} speaks API version ${version} and this strata ${API_VERSION}: restart stratad from the same build as this CLI`);
    }
    return answer<T>(r.status, r.statusText, r.headers['content-type'], r.body.toString('utf8'));
  }

  private streamRequest<T>(method: string, path: string, stream: { body: NodeJS.ReadableStream; contentType: string }): Promise<T> {
    const http = require('node:http') as typeof Http;
    const headers: Http.OutgoingHttpHeaders = { Accept: 'application/json', 'Content-Type': stream.contentType };
    return new Promise<T>((resolve, reject) => {
      const req = http.request({ socketPath: this.socket, method, path, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          try {
            resolve(answer<T>(res.statusCode ?? 0, res.statusMessage ?? '', res.headers['content-type'], Buffer.concat(chunks).toString('utf8')));
          } catch (err) {
            reject(err);
          }
        });
      });
      let answered = false;
      req.on('response', () => (answered = true));
      req.on('error', (err: NodeJS.ErrnoException) => {
        // The daemon may answer (e.g. 413) and close before the whole upload was sent: its answer wins.
        if (answered) return;
        (stream?.body as Readable | undefined)?.destroy();
        reject(transportError(err, this.socket));
      });
      stream.body.on('error', (err) => {
        req.destroy();
        reject(err);
      });
      stream.body.pipe(req);
    });
  }
}

/** A JSON answer's value, or the DaemonError its error status carries. */
function answer<T>(status: number, statusText: string, contentType: string | undefined, text: string): T {
  const isJson = /\bjson\b/i.test(String(contentType ?? ''));
  let parsed: unknown = text;
  if (text.length && (isJson || /^\s*[[{"]/.test(text))) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
  }
  if (status < 200 || status >= 300) {
    const msg =
      parsed && typeof parsed === 'object' && typeof (parsed as { message?: unknown }).message === 'string'
        ? (parsed as { message: string }).message
        : text.trim() || `${status} ${statusText}`.trim();
    throw new DaemonError(msg, status);
  }
  return (text.length ? parsed : {}) as T;
}
