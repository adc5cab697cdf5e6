// A seeded generator of malformed and hostile API requests, and the loop that sends them to a real
// stratad: bad escapes, odd methods, wrong types, truncated and huge bodies, slow clients, hostile
// names, refs and mount targets. Used by test/api-fuzz.test.ts (a bounded run in `make test`) and
// scripts/api-fuzz (the long run). Nothing it sends may write outside `ws` on the host: bind
// sources are always under it.
import { rawRequest, type RawRequest, type RawResponse } from './http';
import { rng } from './random-ops';

export { rng };

export interface FuzzContext {
  /** A directory of the test's own: every host path the fuzzer names is below it. */
  ws: string;
  /** Names of real objects, so some requests reach deep into the services. */
  image: string;
  container: string;
  volume: string;
}

export interface FuzzRequest extends RawRequest {
  /** What kind of mistake it is (for the report). */
  kind: string;
  /** false when the client gives up on purpose (truncated body, hang-up): no answer is expected. */
  expectAnswer: boolean;
}

type R = () => number;
const pick = <T>(r: R, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const int = (r: R, n: number) => Math.floor(r() * n);

const BAD_ESCAPES = ['%ZZ', '%', '%E0%A4%A', '%C0%80', '%FF', '%00', '%2F..%2F', '%ED%A0%80', '%%', '%G1', '%e2%82'];
const HOSTILE = [
  '..',
  '../../etc/passwd',
  '.',
  '',
  ' ',
  'a b',
  'UPPER',
  'x'.repeat(300),
  'x'.repeat(5000),
  '-rf',
  'sha256:',
  'sha256:' + 'a'.repeat(64),
  'a'.repeat(64),
  'abc@sha256:' + '0'.repeat(64),
  'name:tag:extra',
  'localhost:5000/x/y:z',
  ':',
  '/',
  '\u00e9\u4e2d\u0000',
  '$(id)',
  '`id`',
  '{"a":1}',
  'null',
  'base:1/../..',
  '\\x00',
];
const METHODS = ['GET', 'POST', 'DELETE', 'PUT', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE', 'BREW', 'get', 'POST ', 'M-SEARCH'];
const JUNK_VALUES: unknown[] = [null, true, false, 0, -1, 1e308, 'x', '', [], {}, [1, 'a'], { a: { b: [] } }, 'x'.repeat(10_000), ['x'.repeat(1000)], { mounts: 'x' }];

function segment(r: R, ctx: FuzzContext): string {
  const k = r();
  if (k < 0.3) return pick(r, BAD_ESCAPES) + pick(r, ['', 'x', 'abc']);
  if (k < 0.6) return encodeURIComponent(pick(r, HOSTILE));
  if (k < 0.7) return pick(r, HOSTILE).replace(/[\s?#]/g, '_');
  return encodeURIComponent(pick(r, [ctx.image, ctx.container, ctx.volume, 'nosuch']));
}

const TEMPLATES = [
  'GET /images/:x/json',
  'GET /images/:x/history',
  'POST /images/:x/tag',
  'DELETE /images/:x',
  'GET /containers/:x/json',
  'POST /containers/:x/mount',
  'POST /containers/:x/unmount',
  'GET /containers/:x/changes',
  'POST /containers/:x/commit',
  'DELETE /containers/:x',
  'GET /containers/:x/exec',
  'GET /containers/:x/export',
  'POST /images/:x/save',
  'GET /volumes/:x',
  'DELETE /volumes/:x',
  'POST /run/:x/finish',
  'POST /containers/create',
  'POST /volumes/create',
  'POST /volumes/prune',
  'POST /images/import',
  'POST /images/load',
  'POST /build',
  'POST /run/prepare',
  'GET /info',
  'GET /system/df',
  'GET /containers/json',
  'GET /images/json',
  'GET /volumes',
  'GET /_ping',
];

/** A JSON body shaped like a route's, with hostile or wrongly typed values. */
function hostileBody(r: R, ctx: FuzzContext): Record<string, unknown> {
  const val = (): unknown => (r() < 0.5 ? pick(r, JUNK_VALUES) : pick(r, HOSTILE));
  const inWs = (): string => ctx.ws + '/' + pick(r, ['src', 'a/b', 'x y', '..x', 'nul\u0000byte', 'long/' + 'l'.repeat(5000), 'name/' + 'n'.repeat(300), 'deep/' + 'd/'.repeat(int(r, 6))]);
  const target = (): unknown => pick(r, ['/', '/etc', '/proc', '/x', '../x', 'rel', '/a/../..', '/dev/null', '/etc/motd/below', '/' + 'x'.repeat(4000), '/x\u0000y', 5, null]);
  const fields: Record<string, () => unknown> = {
    image: () => (r() < 0.5 ? ctx.image : val()),
    name: val,
    ref: val,
    at: () => pick(r, ['/', '/etc', '/proc/self', '/usr/share', '/tmp', ctx.ws, ctx.ws + '/nope', ctx.ws + '/a\u0000b', '/' + 'x'.repeat(5000), 'relative', '', 7, ['x']]),
    volumes: () => (r() < 0.5 ? [`${inWs()}:${target()}`, `${pick(r, HOSTILE)}:/v`, '/only', `${ctx.volume}:/data:xx`, 'a:b:c:d'] : val()),
    mounts: () =>
      r() < 0.5
        ? [{ type: pick(r, ['bind', 'volume', 'tmpfs', 1]), source: r() < 0.5 ? inWs() : pick(r, ['', 'nosuch-source-dir', 7]), target: target(), readonly: val() }]
        : val(),
    labels: () => (r() < 0.5 ? { a: val() } : val()),
    options: () => (r() < 0.5 ? { size: '1G' } : val()),
    comment: val,
    author: val,
    createdBy: val,
    cmd: val,
    env: val,
    user: val,
    workdir: val,
    tty: val,
    network: val,
    remove: val,
    source: () => pick(r, ['/etc/shadow', '/proc/self/environ', inWs()]),
    input: () => pick(r, ['/etc/shadow', '/dev/zero', inWs()]),
    output: () => pick(r, ['/etc/evil', inWs()]),
    context: () => pick(r, ['/', '/etc', inWs()]),
  };
  const keys = Object.keys(fields);
  const body: Record<string, unknown> = {};
  for (let i = int(r, 5); i >= 0; i--) {
    const k = pick(r, keys);
    body[k] = fields[k]();
  }
  return body;
}

function queryString(r: R): string {
  if (r() < 0.6) return '';
  const parts: string[] = [];
  for (let i = int(r, 4); i >= 0; i--) {
    const k = pick(r, ['ref', 'message', 'format', 'force', 'all', 't', 'dockerfile', 'buildargs', 'nocache', 'network', 'remove', '%ZZ']);
    const v = pick(r, ['1', 'true', 'x:1', 'oci-archive', 'zip', '{', '{"a":1}', '{"a":[1]}', '%ZZ', '..', encodeURIComponent('sha256:' + 'f'.repeat(64)), 'x'.repeat(2000)]);
    parts.push(`${k}=${v}`);
  }
  return '?' + parts.join('&');
}

const POOL = ['p0', 'p1', 'p2', 'p3', 'p4', 'p5'];

/**
 * A well-formed request on a small pool of real objects: run concurrently, they race each other
 * (mount against rm, commit against rmi, save against rmi, ...) the way busy clients do.
 */
function validRequest(r: R, ctx: FuzzContext): FuzzRequest {
  const c = pick(r, [...POOL, ctx.container]);
  const v = pick(r, ['v0', 'v1', ctx.volume]);
  const img = pick(r, [ctx.image, 'fz:p0', 'fz:p1']);
  const json = (method: string, path: string, body: unknown): FuzzRequest => ({
    kind: 'valid',
    method,
    path,
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    expectAnswer: true,
    timeoutMs: 30_000,
  });
  const ops: (() => FuzzRequest)[] = [
    () => json('POST', '/containers/create', { image: ctx.image, name: c, volumes: [`${v}:/data`, `${ctx.ws}/bind-${int(r, 3)}:/b`] }),
    () => json('POST', `/containers/${c}/mount`, {}),
    () => json('POST', `/containers/${c}/unmount`, {}),
    () => json('DELETE', `/containers/${c}?force=1`, {}),
    () => json('POST', `/containers/${c}/commit`, { ref: pick(r, ['fz:p0', 'fz:p1']) }),
    () => json('GET', `/containers/${c}/changes`, {}),
    () => json('GET', `/containers/${c}/export`, {}),
    () => json('POST', `/images/${encodeURIComponent(img)}/tag`, { ref: pick(r, ['fz:p0', 'fz:p1', 'other:1']) }),
    () => json('DELETE', `/images/${encodeURIComponent(pick(r, ['fz:p0', 'fz:p1', 'other:1']))}?force=${int(r, 2)}`, {}),
    () => json('POST', `/images/${encodeURIComponent(img)}/save?format=${pick(r, ['oci-archive', 'docker-archive'])}`, {}),
    () => json('POST', '/volumes/create', { name: v }),
    () => json('DELETE', `/volumes/${v}`, {}),
    () => json('POST', '/volumes/prune', {}),
    () => json('GET', '/system/df', {}),
    () => json('GET', '/containers/json?all=1', {}),
  ];
  return pick(r, ops)();
}

/** The next request of the sequence. */
export function nextRequest(r: R, ctx: FuzzContext): FuzzRequest {
  if (r() < 0.12) return validRequest(r, ctx);
  const tpl = pick(r, TEMPLATES);
  const [m, p] = tpl.split(' ');
  let method = r() < 0.15 ? pick(r, METHODS) : m;
  let path = p.replace(':x', () => segment(r, ctx)) + queryString(r);
  if (r() < 0.1) path = pick(r, ['/v1.43', '/v99', '/v1.x', '//', '/./']) + path;
  if (r() < 0.05) path = path + pick(r, ['/', '//x', '/..', '#frag', '/%']);
  const req: FuzzRequest = { kind: 'route', method, path, expectAnswer: true, timeoutMs: 15_000 };
  const k = r();
  if (k < 0.35) {
    req.kind = 'hostile-json';
    req.headers = { 'Content-Type': 'application/json' };
    req.body = JSON.stringify(hostileBody(r, ctx));
  } else if (k < 0.45) {
    req.kind = 'bad-json';
    req.body = pick(r, ['{', '{"a":', '[', 'nul', '{"a":1}}', '"str"', '123', '[1,2]', '\u0000\u0001', '{"a":"\\ud800"}', '['.repeat(5000), '{"a":' + '['.repeat(2000), 'x'.repeat(20_000)]);
  } else if (k < 0.53) {
    req.kind = 'binary';
    const n = int(r, 20_000);
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = int(r, 256);
    // sometimes a tar-looking header or gzip magic up front
    if (r() < 0.3 && n > 2) b.set([0x1f, 0x8b], 0);
    if (r() < 0.3 && n > 262) b.write('ustar', 257, 'latin1');
    req.body = b;
  } else if (k < 0.6) {
    req.kind = 'truncated';
    const body = Buffer.from(JSON.stringify(hostileBody(r, ctx)));
    req.headers = { 'Content-Length': body.length + 1 + int(r, 100_000), 'Content-Type': 'application/json' };
    req.body = body;
    req.hangUp = true;
    req.expectAnswer = false;
  } else if (k < 0.63) {
    req.kind = 'huge';
    req.headers = { 'Content-Type': 'application/json' };
    req.body = Buffer.alloc((1 << 20) + 1 + int(r, 1 << 20), '{');
  } else if (k < 0.66) {
    req.kind = 'bad-headers';
    req.headers = pick(r, [
      { 'Content-Length': 'abc' },
      { 'Content-Length': '-5' },
      { 'Content-Length': '10', 'Transfer-Encoding': 'chunked' },
      { 'Transfer-Encoding': 'gzip, chunked' },
      { Expect: '100-continue' },
      { 'X-Long': 'y'.repeat(20_000) },
      { 'Content-Type': 'application/json; charset=utf-16' },
    ]) as unknown as Record<string, string>;
    if (req.headers['Transfer-Encoding']) req.body = '5\r\n{"a":\r\n0\r\n\r\n';
  } else if (k < 0.67) {
    req.kind = 'slow';
    req.dribbleMs = 1;
    req.headers = { 'Content-Type': 'application/json' };
    req.body = JSON.stringify(hostileBody(r, ctx)).slice(0, 200);
  } else if (k < 0.69) {
    req.kind = 'hang-up';
    req.hangUp = true;
    req.expectAnswer = false;
  } else if (k < 0.7) {
    req.kind = 'garbage-line';
    method = pick(r, ['\u0000', 'GET\tx', 'G E T', '']);
    path = pick(r, ['/ /', '*', 'http://x/info', '/\r\nX: y', '']);
    req.method = method;
    req.path = path;
  }
  req.method = method;
  req.path = path;
  return req;
}

export interface FuzzStats {
  sent: number;
  answered: number;
  /** Requests that gave up on purpose (truncated, hang-up). */
  abandoned: number;
  /** Answers by status. */
  statuses: Record<string, number>;
  /** 5xx answers (or streamed {error} lines with a 5xx code): every request here is a client mistake. */
  serverErrors: { kind: string; method: string; path: string; status: number; body: string }[];
  /** Requests that expected an answer and got none in time while the daemon lived. */
  unanswered: { kind: string; method: string; path: string; error?: string }[];
  /** Pings that found the daemon not answering (wedged). */
  wedges: number;
  crashes: number;
}

/** A streamed answer's last NDJSON line, when it is an error with a 5xx code. */
function streamedServerError(res: RawResponse): number | undefined {
  if (res.status !== 200 || !/ndjson|multiplexed/.test(res.headers['content-type'] ?? '')) return undefined;
  const m = /\{"error":.*?"code":(\d+)\}/.exec(res.body);
  const code = m ? Number(m[1]) : undefined;
  return code !== undefined && code >= 500 ? code : undefined;
}

export interface FuzzOptions {
  count: number;
  seed: number;
  concurrency?: number;
  /** Called when the daemon is found dead or wedged; resolves once a daemon serves again (long mode restarts it). */
  onFailure?: (what: 'crash' | 'wedge') => Promise<void>;
  alive: () => boolean;
  onProgress?: (s: FuzzStats) => void;
  pingEvery?: number;
}

export async function fuzz(socket: string, ctx: FuzzContext, o: FuzzOptions): Promise<FuzzStats> {
  const r = rng(o.seed);
  const s: FuzzStats = { sent: 0, answered: 0, abandoned: 0, statuses: {}, serverErrors: [], unanswered: [], wedges: 0, crashes: 0 };
  const concurrency = o.concurrency ?? 8;
  const pingEvery = o.pingEvery ?? 500;
  let next = 0;
  let stop = false;
  const check = async (): Promise<void> => {
    if (!o.alive()) {
      s.crashes++;
      if (!o.onFailure) stop = true;
      else await o.onFailure('crash');
      return;
    }
    const ping = await rawRequest(socket, { method: 'GET', path: '/_ping', timeoutMs: 3000 });
    if (ping.status !== 200) {
      if (!o.alive()) return check();
      s.wedges++;
      if (!o.onFailure) stop = true;
      else await o.onFailure('wedge');
    }
  };
  let checking: Promise<void> | null = null;
  const worker = async () => {
    while (!stop && next < o.count) {
      const i = next++;
      const req = nextRequest(r, ctx);
      if (i > 0 && i % pingEvery === 0) {
        checking ??= check().finally(() => (checking = null));
      }
      if (checking) await checking;
      s.sent++;
      const res = await rawRequest(socket, req);
      if (!req.expectAnswer) {
        s.abandoned++;
        continue;
      }
      if (res.status === 0) {
        if (o.alive()) s.unanswered.push({ kind: req.kind, method: req.method, path: req.path.slice(0, 200), error: res.error ?? (res.timedOut ? 'timeout' : 'closed') });
        continue;
      }
      s.answered++;
      s.statuses[res.status] = (s.statuses[res.status] ?? 0) + 1;
      const streamed = streamedServerError(res);
      if (res.status >= 500 || streamed !== undefined) {
        s.serverErrors.push({ kind: req.kind, method: req.method, path: req.path.slice(0, 200), status: streamed ?? res.status, body: res.body.slice(0, 300) });
      }
      if (s.sent % 1000 === 0) o.onProgress?.(s);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  await check();
  return s;
}
