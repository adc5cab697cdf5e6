// One HTTP/1.1 request with a small body over a Unix socket, on node:net: the JSON calls most commands
// make. node:http costs several milliseconds to load and set up (agent, parser) for a CLI that exits
// after one answer; streamed uploads and downloads still use it (client.ts, progress.ts).
import * as net from 'node:net';

export interface RawResponse {
  status: number;
  statusText: string;
  /** Header names in lower case. */
  headers: Record<string, string>;
  body: Buffer;
}

/** A response head and body read so far: complete once its Content-Length (or last chunk) is in. */
class ResponseReader {
  private buf: Buffer = Buffer.alloc(0);
  private head: { status: number; statusText: string; headers: Record<string, string>; bodyStart: number } | undefined;

  add(chunk: Buffer): RawResponse | undefined {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    return this.complete(false);
  }

  /** The response when the connection ended: a body without a length runs to the end. */
  end(): RawResponse | undefined {
    return this.complete(true);
  }

  private complete(ended: boolean): RawResponse | undefined {
    if (!this.head) {
      const at = this.buf.indexOf('\r\n\r\n');
      if (at < 0) return undefined;
      const lines = this.buf.subarray(0, at).toString('latin1').split('\r\n');
      const m = /^HTTP\/1\.[01] (\d{3}) ?(.*)$/.exec(lines[0] ?? '');
      if (!m) throw new Error(`the strata daemon answered something that is not HTTP: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`);
      const headers: Record<string, string> = {};
      for (const l of lines.slice(1)) {
        const colon = l.indexOf(':');
        if (colon > 0) headers[l.slice(0, colon).trim().toLowerCase()] = l.slice(colon + 1).trim();
      }
      this.head = { status: Number(m[1]), statusText: m[2], headers, bodyStart: at + 4 };
    }
    const { status, statusText, headers, bodyStart } = this.head;
    const rest = this.buf.subarray(bodyStart);
    const done = (body: Buffer): RawResponse => ({ status, statusText, headers, body });
    if (status === 204 || status === 304) return done(Buffer.alloc(0));
    if (/\bchunked\b/i.test(headers['transfer-encoding'] ?? '')) {
      const body = dechunk(rest);
      if (body) return done(body);
      return ended ? truncated() : undefined;
    }
    if (headers['content-length'] !== undefined) {
      const len = Number(headers['content-length']);
      if (rest.length >= len) return done(rest.subarray(0, len));
      return ended ? truncated() : undefined;
    }
    return ended ? done(rest) : undefined;
  }
}

function truncated(): never {
  throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
}

/** The body of a complete chunked encoding, or undefined while its last chunk has not arrived. */
function dechunk(data: Buffer): Buffer | undefined {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = data.indexOf('\r\n', at);
    if (eol < 0) return undefined;
    const size = parseInt(data.subarray(at, eol).toString('latin1'), 16);
    if (Number.isNaN(size)) throw new Error('the strata daemon sent a malformed chunked body');
    if (size === 0) return Buffer.concat(parts);
    if (data.length < eol + 2 + size + 2) return undefined;
    parts.push(data.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

/** Send one request on a fresh connection to `socket` and read its whole answer. */
export function requestOverSocket(
  socket: string,
  method: string,
  path: string,
  headers: Record<string, string | number>,
  body?: Buffer,
): Promise<RawResponse> {
  return new Promise<RawResponse>((resolve, reject) => {
    const reader = new ResponseReader();
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      conn.destroy();
      fn();
    };
    const conn = net.connect(socket);
    const head = [`${method} ${path} HTTP/1.1`, 'Host: localhost', 'Connection: close'];
    for (const [k, v] of Object.entries(headers)) head.push(`${k}: ${v}`);
    if (body) head.push(`Content-Length: ${body.length}`);
    conn.write(head.join('\r\n') + '\r\n\r\n');
    if (body?.length) conn.write(body);
    const step = (fn: () => RawResponse | undefined) => {
      try {
        const r = fn();
        if (r) settle(() => resolve(r));
      } catch (err) {
        settle(() => reject(err));
      }
    };
    conn.on('data', (c: Buffer) => step(() => reader.add(c)));
    conn.on('end', () => step(() => reader.end() ?? truncated()));
    conn.on('error', (err) => settle(() => reject(err)));
    conn.on('close', () => step(() => reader.end() ?? truncated()));
  });
}
