// Registry authentication: the WWW-Authenticate challenge of a 401, Basic credentials, and Bearer
// tokens fetched from the challenge's realm (service, scope), cached per scope until they expire.

export interface Credentials {
  username: string;
  password: string;
}

export interface Challenge {
  scheme: 'basic' | 'bearer';
  params: Record<string, string>;
}

/** Parses `Bearer realm="...",service="...",scope="..."` (the first Basic or Bearer challenge). */
export function parseChallenge(header: string | string[] | undefined): Challenge | undefined {
  const values = Array.isArray(header) ? header : header !== undefined ? [header] : [];
  for (const v of values) {
    const m = /^\s*(basic|bearer)\b\s*(.*)$/i.exec(v);
    if (m === null) continue;
    const params: Record<string, string> = {};
    const re = /([a-zA-Z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?/g;
    let p: RegExpExecArray | null;
    while ((p = re.exec(m[2])) !== null) params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3];
    return { scheme: m[1].toLowerCase() as Challenge['scheme'], params };
  }
  return undefined;
}

export function basicHeader(c: Credentials): string {
  return 'Basic ' + Buffer.from(`${c.username}:${c.password}`).toString('base64');
}

/** Scopes as the token service wants them: repository:NAME:pull[,push]. */
export function repoScope(repo: string, actions: ('pull' | 'push')[]): string {
  return `repository:${repo}:${actions.join(',')}`;
}

/** Merges scopes, joining the actions of one resource (repository:a:pull + repository:a:push). */
export function mergeScopes(scopes: string[]): string[] {
  const byResource = new Map<string, Set<string>>();
  for (const s of scopes) {
    for (const one of s.split(' ').filter(Boolean)) {
      const i = one.lastIndexOf(':');
      if (i < 0) continue;
      const key = one.slice(0, i);
      const set = byResource.get(key) ?? new Set<string>();
      for (const a of one.slice(i + 1).split(',')) if (a) set.add(a);
      byResource.set(key, set);
    }
  }
  return [...byResource.entries()].map(([k, a]) => `${k}:${[...a].sort().join(',')}`).sort();
}

interface CachedToken {
  token: string;
  expires: number;
}

/** Tokens per scope set; `fetch` asks the realm for a new one. */
export class TokenCache {
  private readonly tokens = new Map<string, CachedToken>();

  constructor(private readonly now: () => number = Date.now) {}

  get(scopes: string[]): string | undefined {
    const t = this.tokens.get(scopes.join(' '));
    if (t === undefined) return undefined;
    if (this.now() >= t.expires) {
      this.tokens.delete(scopes.join(' '));
      return undefined;
    }
    return t.token;
  }

  drop(scopes: string[]): void {
    this.tokens.delete(scopes.join(' '));
  }

  /** Stores a token response ({token|access_token, expires_in, issued_at}); returns the token. */
  put(scopes: string[], body: unknown): string {
    const o = (body ?? {}) as { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown };
    const token = typeof o.token === 'string' && o.token !== '' ? o.token : typeof o.access_token === 'string' ? o.access_token : '';
    if (token === '') throw new Error('the token service answered without a token');
    // The spec's default lifetime is 60 s; renew 10 s early so a token never expires in flight.
    const lifetime = typeof o.expires_in === 'number' && o.expires_in > 0 ? o.expires_in : 60;
    const issued = typeof o.issued_at === 'string' && !Number.isNaN(Date.parse(o.issued_at)) ? Math.min(Date.parse(o.issued_at), this.now()) : this.now();
    this.tokens.set(scopes.join(' '), { token, expires: issued + Math.max(1, lifetime - 10) * 1000 });
    return token;
  }
}
