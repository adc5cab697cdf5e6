// Raw HTTP/1.1 over a Unix socket, written byte for byte (paths, methods and bodies go out exactly as
// given, however malformed), for tests of the API edge and the fuzzer.
import * as net from 'node:net';

export interface RawResponse {
  /** 0 when no status line came back (connection closed or timed out first). */
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The client gave up waiting (timeout). */
  timedOut: boolean;
  /** The connection was reset or failed. */
  error?: string;
  ms: number;
}

export interface RawRequest {
  method: string;
  path: string;
  headers?: Record<string, string | number>;
  body?: Buffer | string;
  /** Send the head and body in pieces, this many ms apart (a slow client). */
  dribbleMs?: number;
  /** Close our side right after sending (a client that goes away). */
  hangUp?: boolean;
  timeoutMs?: number;
}

function decodeChunked(b: Buffer): Buffer {
  const out: Buffer[] = [];
  let off = 0;
  for (;;) {
    const nl = b.indexOf('\r\n', off);
    if (nl < 0) break;
    const n = parseInt(b.subarray(off, nl).toString('latin1'), 16);
    if (!Number.isFinite(n) || n === 0) break;
    out.push(b.subarray(nl + 2, nl + 2 + n));
    off = nl + 2 + n + 2;
  }
  return Buffer.concat(out);
}

function parse(raw: Buffer): { status: number; headers: Record<string, string>; body: string } {
  // interim answers (100 Continue) come before the real one
  while (/^HTTP\/1\.[01] 1\d\d /.test(raw.subarray(0, 13).toString('latin1')) && raw.indexOf('\r\n\r\n') >= 0) raw = raw.subarray(raw.indexOf('\r\n\r\n') + 4);
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) return { status: 0, headers: {}, body: '' };
  const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0])?.[1] ?? 0);
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let body = raw.subarray(end + 4);
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) body = decodeChunked(body);
  else if (headers['content-length'] !== undefined) body = body.subarray(0, Number(headers['content-length']));
  return { status, headers, body: body.toString('utf8') };
}

/** One request on a fresh connection (Connection: close unless the caller set it); never throws. */
export function rawRequest(socket: string, r: RawRequest): Promise<RawResponse> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let done = false;
    const c = net.connect(socket);
    const finish = (extra: Partial<RawResponse>) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      c.destroy();
      const p = parse(Buffer.concat(chunks));
      resolve({ ...p, timedOut: false, ...extra, ms: Date.now() - t0 });
    };
    const timer = setTimeout(() => finish({ timedOut: true }), r.timeoutMs ?? 10_000);
    c.on('data', (d: Buffer) => {
      chunks.push(d);
      const p = parse(Buffer.concat(chunks));
      // complete once a length-delimited body is all there (the server may keep the connection)
      if (p.status && p.headers['content-length'] !== undefined && Buffer.byteLength(p.body) >= Number(p.headers['content-length'])) finish({});
    });
    c.on('end', () => finish({}));
    c.on('close', () => finish({}));
    c.on('error', (e: NodeJS.ErrnoException) => finish({ error: e.code ?? e.message }));
    c.on('connect', async () => {
      const headers: Record<string, string | number> = { Host: 'strata', Connection: 'close', ...(r.headers ?? {}) };
      const body = r.body === undefined ? undefined : Buffer.isBuffer(r.body) ? r.body : Buffer.from(r.body);
      if (body !== undefined && !Object.keys(headers).some((k) => /^(content-length|transfer-encoding)$/i.test(k))) headers['Content-Length'] = body.length;
      const head = Buffer.from(`${r.method} ${r.path} HTTP/1.1\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`, 'latin1');
      const all = body ? Buffer.concat([head, body]) : head;
      try {
        if (r.dribbleMs) {
          for (let i = 0; i < all.length && !done; i += 7) {
            c.write(all.subarray(i, i + 7));
            await new Promise((res) => setTimeout(res, r.dribbleMs));
          }
        } else if (!c.write(all)) await new Promise((res) => c.once('drain', res));
        if (r.hangUp) finish({});
      } catch (e) {
        finish({ error: String(e) });
      }
    });
  });
}

/** JSON body of a response, or undefined. */
export function jsonBody(r: RawResponse): Record<string, unknown> | undefined {
  try {
    return JSON.parse(r.body) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}
