// HTTP/1.1 with JSON bodies on a Unix socket, like Docker's engine API, so
// `curl --unix-socket` works. Routing is a small table of method + path pattern.
import * as http from 'node:http';
import type { Logger } from '../log';
import { ApiError, badRequest, statusOf } from './errors';

export interface ApiRequest {
  params: Record<string, string>;
  query: URLSearchParams;
  body: Record<string, unknown>;
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

interface Route {
  method: string;
  parts: string[];
  handler: Handler;
}

const MAX_BODY = 1 << 20;

export class Router {
  private readonly routes: Route[] = [];

  add(method: string, pattern: string, handler: Handler): this {
    this.routes.push({ method, parts: pattern.split('/').filter(Boolean), handler });
    return this;
  }

  match(method: string, path: string): { handler: Handler; params: Record<string, string> } | 'method' | undefined {
    const segs = path.split('/').filter(Boolean);
    let pathMatched = false;
    for (const r of this.routes) {
      if (r.parts.length !== segs.length) continue;
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < segs.length && ok; i++) {
        if (r.parts[i].startsWith(':')) params[r.parts[i].slice(1)] = decodeURIComponent(segs[i]);
        else ok = r.parts[i] === segs[i];
      }
      if (!ok) continue;
      if (r.method !== method) {
        pathMatched = true;
        continue;
      }
      return { handler: r.handler, params };
    }
    return pathMatched ? 'method' : undefined;
  }
}

function readBody(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new ApiError(413, 'request body too large'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8').trim();
      if (text === '') return resolve({});
      try {
        const v = JSON.parse(text) as unknown;
        if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not an object');
        resolve(v as Record<string, unknown>);
      } catch {
        reject(badRequest('request body is not a JSON object'));
      }
    });
    req.on('error', reject);
  });
}

function send(res: http.ServerResponse, status: number, value: unknown): void {
  const text = typeof value === 'string' ? value : JSON.stringify(value ?? {});
  res.writeHead(status, {
    'Content-Type': typeof value === 'string' ? 'text/plain; charset=utf-8' : 'application/json',
    'Content-Length': Buffer.byteLength(text),
    'Api-Version': '1',
  });
  res.end(text);
}

export function createApiServer(router: Router, log: Logger): http.Server {
  return http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://strata');
    const method = req.method ?? 'GET';
    // Docker clients prefix a version (/v1.43/...); accept and ignore it.
    const path = url.pathname.replace(/^\/v\d+(\.\d+)?(?=\/)/, '');
    const m = router.match(method, path);
    if (m === undefined) return send(res, 404, { message: `no such endpoint: ${method} ${path}` });
    if (m === 'method') return send(res, 405, { message: `method ${method} not allowed on ${path}` });
    readBody(req)
      .then((body) => m.handler({ params: m.params, query: url.searchParams, body }))
      .then((out) => {
        if (!(out instanceof Streamed)) return send(res, 200, out);
        res.writeHead(200, { 'Content-Type': out.contentType, 'Api-Version': '1', 'Cache-Control': 'no-cache' });
        res.flushHeaders();
        return out.write(res).then(
          () => {
            if (!res.writableEnded) res.end();
          },
          (err: unknown) => {
            log.error({ err: err instanceof Error ? err.stack : err, method, path }, 'streamed response failed');
            // Abort rather than end: a cleanly ended stream would look complete to the client.
            res.destroy();
          },
        );
      })
      .catch((err: unknown) => {
        const status = statusOf(err);
        const message = err instanceof Error ? err.message : String(err);
        if (status >= 500) log.error({ err: err instanceof Error ? err.stack : err, method, path }, 'API request failed');
        else log.info({ status, method, path, message }, 'API request refused');
        send(res, status, { message });
      });
  });
}
