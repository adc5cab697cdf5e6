// A real registry for tests: Debian's docker-registry (CNCF distribution) on 127.0.0.1 with its own
// storage dir and config, plain HTTP, htpasswd Basic auth over TLS, or Bearer token auth over TLS
// (tokens issued by a small token service in the test process, signed with a key the registry
// trusts through its rootcertbundle). Also: a CA and certificates made with openssl, and OCI image
// layouts written by hand (for skopeo to copy in, single or multi-platform).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, createSign, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { runOk } from './exec';
import type { TestLike } from './workspace';

export interface Tls {
  dir: string;
  caCrt: string;
  crt: string;
  key: string;
}

/** A CA and a server certificate for 127.0.0.1 (signed by the CA). */
export function makeTls(dir: string): Tls {
  fs.mkdirSync(dir, { recursive: true });
  const f = (n: string) => path.join(dir, n);
  const o = (args: string[]) => runOk('openssl', args, { cwd: dir });
  o(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '2', '-subj', '/CN=strata-test-ca']);
  o(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1']);
  fs.writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n');
  o(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.crt'), '-days', '2', '-extfile', f('ext.cnf')]);
  return { dir, caCrt: f('ca.crt'), crt: f('server.crt'), key: f('server.key') };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export type RegistryAuthMode = { kind: 'none' } | { kind: 'htpasswd'; file: string } | { kind: 'token'; realm: string; service: string; issuer: string; bundle: string };

export interface Registry {
  host: string;
  port: number;
  storage: string;
  logFile: string;
  start(): Promise<void>;
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** The data file of a blob in the storage dir. */
  blobFile(digest: string): string;
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Starts docker-registry serving `dir/storage` on 127.0.0.1 (TLS when `tls`); stopped at teardown. */
export async function startRegistry(t: TestLike, dir: string, opts: { tls?: Tls; auth?: RegistryAuthMode; port?: number } = {}): Promise<Registry> {
  const port = opts.port ?? (await freePort());
  const storage = path.join(dir, 'storage');
  fs.mkdirSync(storage, { recursive: true });
  const cfg = path.join(dir, 'config.yml');
  const lines = [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${storage}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    `  secret: ${randomBytes(8).toString('hex')}`,
  ];
  if (opts.tls) lines.push('  tls:', `    certificate: ${opts.tls.crt}`, `    key: ${opts.tls.key}`);
  const a = opts.auth ?? { kind: 'none' };
  if (a.kind === 'htpasswd') lines.push('auth:', '  htpasswd:', '    realm: strata-test', `    path: ${a.file}`);
  if (a.kind === 'token') lines.push('auth:', '  token:', `    realm: ${a.realm}`, `    service: ${a.service}`, `    issuer: ${a.issuer}`, `    rootcertbundle: ${a.bundle}`);
  fs.writeFileSync(cfg, lines.join('\n') + '\n');
  const logFile = path.join(dir, 'registry.log');
  let proc: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  const scheme = opts.tls ? 'https' : 'http';
  const reg: Registry = {
    host: `127.0.0.1:${port}`,
    port,
    storage,
    logFile,
    async start() {
      const fd = fs.openSync(logFile, 'a');
      const p = spawn('docker-registry', ['serve', cfg], { stdio: ['ignore', fd, fd] });
      fs.closeSync(fd);
      proc = p;
      exited = new Promise((resolve) => p.once('exit', () => resolve()));
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline) {
        if (p.exitCode !== null) throw new Error(`docker-registry exited: ${fs.readFileSync(logFile, 'utf8')}`);
        const up = await new Promise<boolean>((resolve) => {
          const c = net.connect(port, '127.0.0.1');
          c.once('connect', () => {
            c.destroy();
            resolve(true);
          });
          c.once('error', () => resolve(false));
        });
        if (up) return;
        await delay(50);
      }
      throw new Error(`docker-registry did not listen on ${scheme}://127.0.0.1:${port}: ${fs.readFileSync(logFile, 'utf8')}`);
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc === null || proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill(signal);
      const r = await Promise.race([exited.then(() => 'ok'), delay(10_000).then(() => 'timeout')]);
      if (r === 'timeout') {
        proc.kill('SIGKILL');
        await exited;
      }
    },
    blobFile(digest: string) {
      const hex = digest.replace(/^sha256:/, '');
      return path.join(storage, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
    },
  };
  t.teardown(() => reg.stop('SIGKILL'));
  await reg.start();
  return reg;
}

function b64url(b: Buffer | string): string {
  return Buffer.from(b).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

export interface TokenServer {
  realm: string;
  service: string;
  issuer: string;
  /** Token requests answered (with a token or a refusal). */
  requests: { user: string | null; scopes: string[]; granted: boolean }[];
  /** Lifetime of the tokens it issues, in seconds (may be changed between requests). */
  expiresIn: number;
  close(): Promise<void>;
}

/**
 * A token service on 127.0.0.1: users in `users` get JWTs (RS256, x5c = the server certificate, whose
 * CA is the registry's rootcertbundle) granting the scopes they ask for; anonymous callers get a token
 * without access; wrong passwords get 401.
 */
export async function startTokenServer(t: TestLike, tls: Tls, users: Record<string, string>, expiresIn = 300): Promise<TokenServer> {
  const service = 'strata-test-registry';
  const issuer = 'strata-test-issuer';
  const key = fs.readFileSync(tls.key, 'utf8');
  const certDer = Buffer.from(fs.readFileSync(tls.crt, 'utf8').replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64').toString('base64');
  const requests: TokenServer['requests'] = [];
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const scopes = u.searchParams.getAll('scope');
    let user: string | null = null;
    const h = req.headers.authorization;
    if (h?.startsWith('Basic ')) {
      const plain = Buffer.from(h.slice(6), 'base64').toString('utf8');
      const i = plain.indexOf(':');
      const name = plain.slice(0, i);
      if (users[name] === undefined || users[name] !== plain.slice(i + 1)) {
        requests.push({ user: name, scopes, granted: false });
        res.writeHead(401, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'wrong username or password' }] }));
        return;
      }
      user = name;
    }
    const access = user === null ? [] : scopes.map((s) => {
      const parts = s.split(':');
      return { type: parts[0], name: parts.slice(1, -1).join(':'), actions: parts[parts.length - 1].split(',') };
    });
    requests.push({ user, scopes, granted: user !== null });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer] };
    const claims = { iss: issuer, sub: user ?? '', aud: service, exp: now + ts.expiresIn, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = createSign('RSA-SHA256').update(input).sign(key);
    const token = `${input}.${b64url(sig)}`;
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ token, access_token: token, expires_in: ts.expiresIn, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const ts: TokenServer = {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    requests,
    expiresIn,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  t.teardown(() => ts.close());
  return ts;
}

// ------------------------------------------------------------------------------------------
// OCI image layouts written by hand

function sha(b: Buffer): string {
  return 'sha256:' + createHash('sha256').update(b).digest('hex');
}

export interface LayoutImage {
  /** Root filesystem dirs, one per layer, bottom-up (tarred with tar(1)). */
  layers: string[];
  architecture: string;
  cmd?: string[];
}

export interface WrittenImage {
  manifestDigest: string;
  configDigest: string;
  diffIds: string[];
  layerDigests: string[];
}

function writeBlob(layout: string, b: Buffer): string {
  const d = sha(b);
  fs.writeFileSync(path.join(layout, 'blobs/sha256', d.slice(7)), b);
  return d;
}

function writeImage(layout: string, img: LayoutImage): WrittenImage & { size: number } {
  const diffIds: string[] = [];
  const layers: { mediaType: string; digest: string; size: number }[] = [];
  for (const dir of img.layers) {
    const tar = execFileSync('tar', ['--sort=name', '--numeric-owner', '-C', dir, '-cf', '-', '.'], { maxBuffer: 1 << 30 });
    diffIds.push(sha(tar));
    const gz = zlib.gzipSync(tar, { level: 1 });
    layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: writeBlob(layout, gz), size: gz.length });
  }
  const config = Buffer.from(
    JSON.stringify({
      created: '2024-01-01T00:00:00Z',
      architecture: img.architecture,
      os: 'linux',
      config: { Env: ['PATH=/bin'], Cmd: img.cmd ?? ['sh'] },
      rootfs: { type: 'layers', diff_ids: diffIds },
      history: diffIds.map((_, i) => ({ created: '2024-01-01T00:00:00Z', created_by: `layer ${i + 1}` })),
    }),
  );
  const configDigest = writeBlob(layout, config);
  const manifest = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length }, layers }),
  );
  const manifestDigest = writeBlob(layout, manifest);
  return { manifestDigest, configDigest, diffIds, layerDigests: layers.map((l) => l.digest), size: manifest.length };
}

/** An OCI layout at `layout` with one image (tag `tag`), or an index of several platforms. */
export function writeLayout(layout: string, tag: string, images: LayoutImage[], asIndex = false): WrittenImage[] {
  fs.mkdirSync(path.join(layout, 'blobs/sha256'), { recursive: true });
  fs.writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const written = images.map((i) => writeImage(layout, i));
  let top: { mediaType: string; digest: string; size: number };
  if (asIndex) {
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: written.map((w, i) => ({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: w.manifestDigest, size: w.size, platform: { os: 'linux', architecture: images[i].architecture } })),
      }),
    );
    top = { mediaType: 'application/vnd.oci.image.index.v1+json', digest: writeBlob(layout, index), size: index.length };
  } else {
    top = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: written[0].manifestDigest, size: written[0].size };
  }
  fs.writeFileSync(path.join(layout, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ ...top, annotations: { 'org.opencontainers.image.ref.name': tag } }] }));
  return written;
}
