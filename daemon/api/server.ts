// HTTP/1.1 with JSON bodies on a Unix socket, like Docker's engine API, so
// `curl --unix-socket` works. Routing is a small table of method + path pattern.
// Every request runs inside one error boundary: whatever a handler throws becomes a status and a
// JSON message (mapped once, in errors.ts), logged with the request's id; nothing a client sends
// can take the daemon down.
import * as http from 'node:http';
import { PassThrough, type Readable } from 'node:stream';
import type { Logger } from '../log';
import { jsonErrorWhere } from '../util/json-error';
import { invalid, tooLarge } from '../model/errors';
import { HttpError, toApiError } from './errors';
import { API_VERSION } from '../model/types';

export interface ApiRequest {
  params: Record<string, string>;
  query: URLSearchParams;
  body: Record<string, unknown>;
  /** The request body itself, unread (routes added with `{ upload: true }` only). */
  upload: Readable;
}

export type Handler = (req: ApiRequest) => unknown;

/**
 * A handler's answer that is written progressively (e.g. build output): the server sends
 * status 200 with chunked encoding and hands the response to `write`, which must end it.
 */
export class Streamed {
  constructor(
    readonly write: (res: http.ServerResponse) => Promise<void>,
    readonly contentType = 'application/x-ndjson',
  ) {}
}

export interface RouteOptions {
  /** The body is a stream (an archive, a build context) handed to the handler unread, without the size limit of JSON bodies. */
  upload?: boolean;
}

interface Route {
  method: string;
  parts: string[];
  handler: Handler;
  upload: boolean;
}

/** Largest JSON request body. */
export const MAX_BODY = 1 << 20;
/** How long a client may take to send a JSON body. */
const BODY_TIMEOUT_MS = 30_000;
/** After refusing a body, how much more of it is read (and dropped) so the client sees the answer. */
const DRAIN_LIMIT = 64 << 20;
const DRAIN_TIMEOUT_MS = 5_000;

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw invalid(`malformed path: "${s.length > 64 ? s.slice(0, 64) + '...' : s}" is not valid percent-encoded UTF-8`);
  }
}

export class Router {
  private readonly routes: Route[] = [];

  add(method: string, pattern: string, handler: Handler, opts: RouteOptions = {}): this {
    this.routes.push({ method, parts: pattern.split('/').filter(Boolean), handler, upload: opts.upload === true });
    return this;
  }

  /** The route for a request; throws a 400 for a path that cannot be decoded. */
  match(method: string, path: string): { route: Route; params: Record<string, string> } | 'method' | undefined {
    const segs = path.split('/').filter(Boolean);
    let pathMatched = false;
    for (const r of this.routes) {
      if (r.parts.length !== segs.length) continue;
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < segs.length && ok; i++) {
        if (r.parts[i].startsWith(':')) params[r.parts[i].slice(1)] = decodeSegment(segs[i]);
        else ok = r.parts[i] === segs[i];
      }
      if (!ok) continue;
      if (r.method !== method) {
        pathMatched = true;
        continue;
      }
      return { route: r, params };
    }
    return pathMatched ? 'method' : undefined;
  }
}

/** How reading a body ended. */
type BodyEnd = 'complete' | 'limit' | 'timeout' | 'gone';

/** Reads a request body, kept (for parsing) or dropped, bounded in bytes and time. */
function consume(req: http.IncomingMessage, o: { keep: boolean; limit: number; timeoutMs: number }): Promise<{ data: Buffer; end: BodyEnd }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (end: BodyEnd) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.removeListener('data', onData);
      resolve({ data: Buffer.concat(chunks), end });
    };
    const timer = setTimeout(() => settle('timeout'), o.timeoutMs);
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > o.limit) settle('limit');
      else if (o.keep) chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => settle('complete'));
    req.on('error', () => settle('gone'));
    req.on('aborted', () => settle('gone'));
    req.resume();
  });
}

async function readBody(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const { data, end } = await consume(req, { keep: true, limit: MAX_BODY, timeoutMs: BODY_TIMEOUT_MS });
  if (end === 'limit') throw tooLarge(`request body too large: the limit is ${MAX_BODY} bytes`);
  if (end === 'timeout') throw new BodyTimeout();
  if (end === 'gone') throw new ClientGone();
  const text = data.toString('utf8').trim();
  if (text === '') return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw invalid(`request body is not valid JSON: syntax error${jsonErrorWhere(err)}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw invalid('request body must be a JSON object');
  return v as Record<string, unknown>;
}

/** The client closed the connection before its request was complete: nobody to answer. */
class ClientGone extends HttpError {
  constructor() {
    super(499, 'the client went away before sending the whole request');
  }
}

class BodyTimeout extends HttpError {
  constructor() {
    super(408, `request body not received within ${BODY_TIMEOUT_MS / 1000} s`);
  }
}

function send(res: http.ServerResponse, status: number, value: unknown): void {
  if (res.headersSent || res.destroyed) {
    // Too late for a status: abort so the client does not take a partial answer for a whole one.
    res.destroy();
    return;
  }
  const text = typeof value === 'string' ? value : JSON.stringify(value ?? {});
  const headers: http.OutgoingHttpHeaders = {
    'Content-Type': typeof value === 'string' ? 'text/plain; charset=utf-8' : 'application/json',
    'Content-Length': Buffer.byteLength(text),
    'Api-Version': API_VERSION,
  };
  res.writeHead(status, headers);
  res.end(text);
}

/**
 * Reads and drops the rest of a request body, then calls `answer`. Bounded in bytes and time: past
 * them the answer goes out at once and the connection is closed after it.
 */
function drainThen(req: http.IncomingMessage, res: http.ServerResponse, answer: () => void): void {
  void consume(req, { keep: false, limit: DRAIN_LIMIT, timeoutMs: DRAIN_TIMEOUT_MS }).then(({ end }) => {
    if (end !== 'complete') res.once('finish', () => req.socket.destroy());
    answer();
  });
}

/**
 * The body of an upload as a stream of its own: a reader may stop (destroy it) without taking the
 * connection, which still carries the answer; a client that goes away makes it fail.
 */
function uploadOf(req: http.IncomingMessage): Readable {
  const body = new PassThrough();
  // Its readers see the error through their own listeners; unread, it must not be an uncaught one.
  body.on('error', () => undefined);
  req.pipe(body);
  const gone = () => {
    if (!req.complete) body.destroy(new ClientGone());
  };
  req.on('aborted', gone);
  req.on('error', gone);
  return body;
}

function emptyUpload(): Readable {
  const s = new PassThrough();
  s.end();
  return s;
}

let nextRequestId = 1;

export function createApiServer(router: Router, log: Logger): http.Server {
  const server = http.createServer((req, res) => {
    const id = nextRequestId++;
    const method = req.method ?? 'GET';
    let path = '';
    const fail = (err: unknown) => {
      const { status, message } = toApiError(err);
      if (status >= 500) log.error({ req: id, method, path, err: err instanceof Error ? err.stack : String(err) }, 'API request failed');
      else log.info({ req: id, method, path, status, message }, 'API request refused');
      req.unpipe();
      // A client still sending would be reset by a close and miss the answer: the rest of its body
      // is read first (and dropped).
      if (req.complete || req.destroyed || res.headersSent) send(res, status, { message });
      else drainThen(req, res, () => send(res, status, { message }));
    };
    try {
      const url = new URL(req.url ?? '/', 'http://strata');
      // Docker clients prefix a version (/v1.43/...); accept and ignore it.
      path = url.pathname.replace(/^\/v\d+(\.\d+)?(?=\/)/, '');
      const m = router.match(method, path);
      if (m === undefined) return fail(new HttpError(404, `no such endpoint: ${method} ${path}`));
      if (m === 'method') return fail(new HttpError(405, `method ${method} not allowed on ${path}`));
      const declared = Number(req.headers['content-length'] ?? 0);
      if (!m.route.upload && declared > MAX_BODY) return fail(tooLarge(`request body too large: ${declared} bytes, the limit is ${MAX_BODY} bytes`));
      const body: Promise<Record<string, unknown>> = m.route.upload ? Promise.resolve({}) : readBody(req);
      body
        .then((b) => m.route.handler({ params: m.params, query: url.searchParams, body: b, upload: m.route.upload ? uploadOf(req) : emptyUpload() }))
        .then((out) => {
          if (!(out instanceof Streamed)) return send(res, 200, out);
          res.writeHead(200, { 'Content-Type': out.contentType, 'Api-Version': API_VERSION, 'Cache-Control': 'no-cache' });
          res.flushHeaders();
          return out.write(res).then(
            () => {
              if (res.writableEnded) return;
              // An upload its reader stopped short of (a bad archive): a client still sending would
              // be reset by the close and miss the answer, so the rest of its body is read first.
              if (req.complete || req.destroyed) return void res.end();
              req.unpipe();
              drainThen(req, res, () => res.end());
            },
            (err: unknown) => {
              if (res.destroyed || req.socket.destroyed) log.info({ req: id, method, path }, 'the client went away during a streamed answer');
              else log.error({ req: id, method, path, err: err instanceof Error ? err.stack : String(err) }, 'streamed response failed');
              // Abort rather than end: a cleanly ended stream would look complete to the client.
              res.destroy();
            },
          );
        })
        .catch(fail);
    } catch (err) {
      fail(err);
    }
  });
  // A request that is not HTTP: answered with 400 (431 for oversize headers) as JSON, then the
  // connection is half-closed and the rest of what the client sends is dropped, so it reads the
  // answer instead of a reset; closed for good once the client is done or after a bound.
  const refused = new WeakSet<object>();
  server.on('clientError', (err: NodeJS.ErrnoException, socket: import('node:net').Socket) => {
    if (refused.has(socket)) return; // the parser keeps failing on what follows: already answered
    if (!socket.writable || err.code === 'ECONNRESET') return void socket.destroy();
    refused.add(socket);
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    const text = JSON.stringify({ message: status === 431 ? 'request headers too large' : `malformed HTTP request (${err.code ?? 'parse error'})` });
    log.info({ status, code: err.code }, 'malformed HTTP request refused');
    socket.end(`HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`);
    const timer = setTimeout(() => socket.destroy(), DRAIN_TIMEOUT_MS);
    let dropped = 0;
    socket.on('data', (c: Buffer) => {
      dropped += c.length;
      if (dropped > DRAIN_LIMIT) socket.destroy();
    });
    socket.on('end', () => socket.destroy());
    socket.on('close', () => clearTimeout(timer));
    socket.on('error', () => socket.destroy());
    socket.resume();
  });
  // Uploads may take long; JSON bodies have their own timeout (readBody), headers must come quickly.
  server.requestTimeout = 0;
  server.headersTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  return server;
}
