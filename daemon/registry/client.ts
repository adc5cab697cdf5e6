// A client for one registry (OCI distribution spec / Docker registry v2) over Node's http/https:
// finds the scheme and auth challenge with GET /v2/, authenticates every request (Basic, or Bearer
// tokens per scope, renewed when they expire or are refused), follows redirects (blob storage),
// and turns registry errors into messages that say what was wrong. Credentials are never logged.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import * as tls from 'node:tls';
import { basicHeader, mergeScopes, parseChallenge, TokenCache, type Challenge, type Credentials } from './auth';
import { apiHost } from './reference';
import { DomainError, type ErrorKind } from '../model/errors';

export class RegistryError extends DomainError {
  constructor(
    message: string,
    kind: ErrorKind,
    /** The registry's own status, when it answered. */
    readonly httpStatus?: number,
    readonly code?: string,
  ) {
    super(kind, message);
  }
}

export interface ClientOptions {
  /** Registry domain of the reference (docker.io for Docker Hub). */
  domain: string;
  /** false: allow plain HTTP and unverified TLS. */
  tlsVerify: boolean;
  /** Directory of per-registry CA files: <certsDir>/<host[:port]>/*.crt (as Docker's certs.d). */
  certsDir?: string;
  credentials?: Credentials;
}

export interface RequestOptions {
  headers?: http.OutgoingHttpHeaders;
  /** A Buffer, or a function giving a fresh stream (so the request can be sent again after a 401). */
  body?: Buffer | (() => Readable);
  /** Scopes the request needs (repository:NAME:pull[,push]). */
  scopes?: string[];
  /** Statuses returned to the caller as they are; others raise a RegistryError. */
  ok?: number[];
  signal?: AbortSignal;
}

const MAX_REDIRECTS = 5;

/** Reads a whole response body (small ones: manifests, errors, tokens). */
export async function readBody(res: http.IncomingMessage, limit = 8 << 20): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res) {
    n += (c as Buffer).length;
    if (n > limit) {
      res.destroy();
      throw new RegistryError(`the registry's answer is larger than ${limit} bytes`, 'upstream');
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

/** The registry's error body ({errors: [{code, message}]}) as one line. */
function errorText(body: Buffer): { text: string; code?: string } {
  try {
    const doc = JSON.parse(body.toString('utf8')) as { errors?: { code?: string; message?: string; detail?: unknown }[] };
    if (Array.isArray(doc.errors) && doc.errors.length) {
      const e = doc.errors[0];
      return { text: doc.errors.map((x) => `${x.code ?? 'ERROR'}: ${x.message ?? ''}`.trim()).join('; '), code: e.code };
    }
  } catch {
    // not JSON
  }
  const t = body.toString('utf8').trim().split('\n')[0].slice(0, 200);
  return { text: t };
}

function isConnectError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  return ['ECONNREFUSED', 'ECONNRESET', 'EPROTO', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ERR_SSL_WRONG_VERSION_NUMBER'].includes(code) || /wrong version number|SSL routines/i.test(String((err as Error).message));
}

function caFor(certsDir: string | undefined, host: string): string[] | undefined {
  if (certsDir === undefined) return undefined;
  const dir = path.join(certsDir, host);
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((n) => n.endsWith('.crt')).sort();
  } catch {
    return undefined;
  }
  if (names.length === 0) return undefined;
  return [...tls.rootCertificates, ...names.map((n) => fs.readFileSync(path.join(dir, n), 'utf8'))];
}

export class RegistryClient {
  readonly host: string;
  private base: string | undefined;
  private challenge: Challenge | undefined;
  private readonly tokens = new TokenCache();
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  private readonly httpsAgent: https.Agent;

  constructor(private readonly opts: ClientOptions) {
    this.host = apiHost(opts.domain);
    this.httpsAgent = new https.Agent({ keepAlive: true, maxSockets: 8, rejectUnauthorized: opts.tlsVerify, ca: caFor(opts.certsDir, this.host) });
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }

  /** GET /v2/: picks https (or http when TLS checks are off and https fails) and learns the challenge. */
  async ping(signal?: AbortSignal): Promise<void> {
    if (this.base !== undefined) return;
    const schemes = this.opts.tlsVerify ? ['https'] : ['https', 'http'];
    let lastErr: unknown;
    for (const scheme of schemes) {
      let res: http.IncomingMessage;
      try {
        res = await this.send('GET', `${scheme}://${this.host}/v2/`, {}, signal);
      } catch (err) {
        lastErr = err;
        if (isConnectError(err) && scheme === 'https' && schemes.length > 1) continue;
        throw this.connectError(err);
      }
      const body = await readBody(res).catch(() => Buffer.alloc(0));
      this.base = `${scheme}://${this.host}`;
      if (res.statusCode === 401) {
        this.challenge = parseChallenge(res.headers['www-authenticate']);
        if (this.challenge === undefined) throw new RegistryError(`${this.host} asks for authentication with an unsupported scheme (${String(res.headers['www-authenticate'])})`, 'unauthorized', 401);
        return;
      }
      if (res.statusCode !== 200) {
        this.base = undefined;
        throw new RegistryError(`${this.host} is not a registry (GET /v2/ answered ${res.statusCode}: ${errorText(body).text})`, 'upstream', res.statusCode);
      }
      return;
    }
    throw this.connectError(lastErr);
  }

  /** Logs in: the credentials must be accepted (for Bearer: a token is issued for them). */
  async checkLogin(signal?: AbortSignal): Promise<void> {
    await this.ping(signal);
    if (this.challenge === undefined) return;
    if (this.opts.credentials === undefined) throw new RegistryError(`${this.host} requires credentials`, 'unauthorized');
    const res = await this.request('GET', '/v2/', { signal });
    await readBody(res);
  }

  private connectError(err: unknown): RegistryError {
    const e = err as NodeJS.ErrnoException;
    if (e instanceof RegistryError) return e;
    const text = String(e.message ?? e).split('\n')[0].trim();
    if (/wrong version number/i.test(text)) {
      return new RegistryError(`cannot reach registry ${this.host}: it does not answer TLS (a plain HTTP registry? use --tls-verify=false)`, 'upstream');
    }
    const certHint = /certificate|self.signed|CERT/i.test(text + (e.code ?? '')) ? ` (add its CA as ${this.opts.certsDir ?? '<certs dir>'}/${this.host}/ca.crt, or use --tls-verify=false)` : '';
    return new RegistryError(`cannot reach registry ${this.host}: ${text}${certHint}`, 'upstream');
  }

  /**
   * Sends a request to the registry (path relative to its base, e.g. /v2/NAME/manifests/TAG),
   * authenticating and following redirects. Resolves with the response for statuses in `ok`
   * (default 2xx); others become a RegistryError that names the status and the registry's message.
   */
  async request(method: string, urlPath: string, o: RequestOptions = {}): Promise<http.IncomingMessage> {
    await this.ping(o.signal);
    const url = urlPath.startsWith('http://') || urlPath.startsWith('https://') ? urlPath : this.base + urlPath;
    let scopes = mergeScopes(o.scopes ?? []);
    let retried = false;
    for (;;) {
      const headers: http.OutgoingHttpHeaders = { ...o.headers };
      const auth = await this.authorization(scopes, o.signal);
      if (auth !== undefined) headers.Authorization = auth;
      let res: http.IncomingMessage;
      try {
        res = await this.sendFollowing(method, url, headers, o.body, o.signal);
      } catch (err) {
        throw this.connectError(err);
      }
      const status = res.statusCode ?? 0;
      if (status === 401 && !retried) {
        retried = true;
        const ch = parseChallenge(res.headers['www-authenticate']);
        await readBody(res).catch(() => undefined);
        if (ch !== undefined) this.challenge = ch;
        if (this.challenge?.scheme === 'bearer') {
          this.tokens.drop(scopes);
          if (ch?.params.scope) scopes = mergeScopes([...scopes, ch.params.scope]);
          continue;
        }
        if (this.challenge?.scheme === 'basic' && this.opts.credentials !== undefined && auth === undefined) continue;
        throw this.unauthorized(undefined);
      }
      if ((o.ok ?? []).includes(status) || (o.ok === undefined && status >= 200 && status < 300)) return res;
      const body = await readBody(res).catch(() => Buffer.alloc(0));
      const { text, code } = errorText(body);
      if (status === 401) throw this.unauthorized(text);
      const kind: ErrorKind = status === 404 ? 'not-found' : status === 403 ? 'forbidden' : 'upstream';
      throw new RegistryError(`${method} ${urlPath.replace(/\?.*$/, '')}: ${this.host} answered ${status}${text ? ` (${text})` : ''}`, kind, status, code);
    }
  }

  private unauthorized(text: string | undefined): RegistryError {
    const who = this.opts.credentials ? `as ${this.opts.credentials.username}` : 'anonymously';
    return new RegistryError(`unauthorized: ${this.host} refused the request ${who}${text ? ` (${text})` : ''}${this.opts.credentials ? '' : '; log in first (strata login)'}`, 'unauthorized', 401, 'UNAUTHORIZED');
  }

  private async authorization(scopes: string[], signal?: AbortSignal): Promise<string | undefined> {
    const ch = this.challenge;
    if (ch === undefined) return undefined;
    if (ch.scheme === 'basic') return this.opts.credentials ? basicHeader(this.opts.credentials) : undefined;
    const cached = this.tokens.get(scopes);
    if (cached !== undefined) return `Bearer ${cached}`;
    const realm = ch.params.realm;
    if (!realm) throw new RegistryError(`${this.host}'s Bearer challenge has no realm`, 'upstream');
    const u = new URL(realm);
    if (ch.params.service) u.searchParams.set('service', ch.params.service);
    for (const s of scopes) u.searchParams.append('scope', s);
    const headers: http.OutgoingHttpHeaders = { Accept: 'application/json' };
    if (this.opts.credentials) headers.Authorization = basicHeader(this.opts.credentials);
    let res: http.IncomingMessage;
    try {
      res = await this.sendFollowing('GET', u.toString(), headers, undefined, signal);
    } catch (err) {
      throw new RegistryError(`cannot reach the token service ${u.origin}: ${(err as Error).message}`, 'upstream');
    }
    const body = await readBody(res);
    if (res.statusCode === 401 || res.statusCode === 403) throw this.unauthorized(errorText(body).text);
    if (res.statusCode !== 200) throw new RegistryError(`the token service ${u.origin} answered ${res.statusCode} (${errorText(body).text})`, 'upstream', res.statusCode);
    let doc: unknown;
    try {
      doc = JSON.parse(body.toString('utf8'));
    } catch {
      throw new RegistryError(`the token service ${u.origin} answered with something that is not JSON`, 'upstream');
    }
    return `Bearer ${this.tokens.put(scopes, doc)}`;
  }

  private async sendFollowing(method: string, url: string, headers: http.OutgoingHttpHeaders, body: RequestOptions['body'], signal?: AbortSignal): Promise<http.IncomingMessage> {
    let current = url;
    let h = headers;
    for (let i = 0; ; i++) {
      const res = await this.send(method, current, h, signal, body);
      const status = res.statusCode ?? 0;
      const loc = res.headers.location;
      if (![301, 302, 303, 307, 308].includes(status) || loc === undefined || (method !== 'GET' && method !== 'HEAD')) return res;
      res.resume();
      if (i >= MAX_REDIRECTS) throw new RegistryError(`too many redirects from ${url}`, 'upstream');
      const next = new URL(loc, current);
      // Credentials stay with the registry: blob storage gets a signed URL, not our token.
      if (next.host !== new URL(current).host) {
        h = { ...h };
        delete h.Authorization;
      }
      current = next.toString();
    }
  }

  private send(method: string, url: string, headers: http.OutgoingHttpHeaders, signal?: AbortSignal, body?: RequestOptions['body']): Promise<http.IncomingMessage> {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : http;
    const agent = u.protocol === 'https:' ? this.httpsAgent : this.httpAgent;
    return new Promise((resolve, reject) => {
      const req = mod.request(u, { method, headers: { 'User-Agent': 'strata', ...headers }, agent, signal }, resolve);
      req.on('error', reject);
      if (body === undefined) req.end();
      else if (Buffer.isBuffer(body)) req.end(body);
      else {
        const src = body();
        src.on('error', (err) => req.destroy(err));
        src.pipe(req);
      }
    });
  }
}
