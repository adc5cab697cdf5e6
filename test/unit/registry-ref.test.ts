// Unit tests of the registry pieces that need no network: reference parsing (Docker's rules),
// WWW-Authenticate challenges, scope merging, token expiry, manifest parsing and platform choice.
import t from 'tap';
import { mergeScopes, parseChallenge, TokenCache } from '../../daemon/registry/auth';
import { hostPlatform, MT, parseManifest, parsePlatform, selectPlatform } from '../../daemon/registry/manifest';
import { canonicalString, familiarName, localTagOf, parseReference, registryKey } from '../../daemon/registry/reference';

const D = 'sha256:' + 'ab'.repeat(32);

t.test('references parse as Docker parses them', async (t) => {
  const cases: [string, string, string][] = [
    ['busybox', 'docker.io/library/busybox:latest', 'busybox:latest'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36', 'busybox:1.36'],
    ['user/app', 'docker.io/user/app:latest', 'user/app:latest'],
    ['docker.io/library/busybox:1', 'docker.io/library/busybox:1', 'busybox:1'],
    ['index.docker.io/user/app:2', 'docker.io/user/app:2', 'user/app:2'],
    ['localhost/app', 'localhost/app:latest', 'localhost/app:latest'],
    ['localhost:5000/a/b/c:v1.0', 'localhost:5000/a/b/c:v1.0', 'localhost:5000/a/b/c:v1.0'],
    ['127.0.0.1:5000/app:7', '127.0.0.1:5000/app:7', '127.0.0.1:5000/app:7'],
    ['quay.io/org/app', 'quay.io/org/app:latest', 'quay.io/org/app:latest'],
    ['Registry/app', 'Registry/app:latest', 'Registry/app:latest'],
    ['a__b/c-d/e.f', 'docker.io/a__b/c-d/e.f:latest', 'a__b/c-d/e.f:latest'],
  ];
  for (const [input, canonical, local] of cases) {
    const r = parseReference(input);
    t.equal(canonicalString(r), canonical, `${input} -> ${canonical}`);
    t.equal(localTagOf(r), local, `${input}: local name ${local}`);
  }
  const dig = parseReference(`busybox@${D}`);
  t.same([dig.domain, dig.path, dig.tag, dig.digest], ['docker.io', 'library/busybox', undefined, D], 'a digest alone: no tag');
  t.equal(localTagOf(dig), undefined, 'digest-only: no local tag');
  const both = parseReference(`127.0.0.1:5000/app:1@${D}`);
  t.same([both.domain, both.path, both.tag, both.digest], ['127.0.0.1:5000', 'app', '1', D], 'tag and digest together');
  t.equal(familiarName(parseReference('docker.io/library/x')), 'x');
  t.equal(familiarName(parseReference('h:1/x')), 'h:1/x');
  t.equal(parseReference('x', { defaultTag: false }).tag, undefined);
});

t.test('bad references are refused with the rule they break', async (t) => {
  const bad: [string, RegExp][] = [
    ['', /empty/],
    ['Busybox', /lowercase/],
    ['docker.io/Library/x', /lowercase/],
    ['a//b', /components/],
    ['-a', /components/],
    ['a:', /tag/],
    ['a:-x', /tag/],
    ['a@sha256:1234', /digest/],
    ['a@md5:' + 'a'.repeat(32), /unsupported digest algorithm/],
    ['a@sha256:' + 'A'.repeat(64), /hex/],
    ['bad_host:5000/x', /registry host/],
    [':tag', /empty/],
    ['x/' + 'a'.repeat(260), /longer than 255/],
  ];
  for (const [input, re] of bad) t.throws(() => parseReference(input), re, `"${input}" is refused`);
});

t.test('registry keys for login and logout', async (t) => {
  t.equal(registryKey('127.0.0.1:5000'), '127.0.0.1:5000');
  t.equal(registryKey('https://127.0.0.1:5000/v2/'), '127.0.0.1:5000');
  t.equal(registryKey('docker.io'), 'https://index.docker.io/v1/');
  t.throws(() => registryKey('bad host'), /registry host/);
});

t.test('WWW-Authenticate challenges and scopes', async (t) => {
  const c = parseChallenge('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"');
  t.same(c, { scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull,push' } });
  t.same(parseChallenge('Basic realm="basic-realm"'), { scheme: 'basic', params: { realm: 'basic-realm' } });
  t.same(parseChallenge(['Negotiate', 'basic realm=x']), { scheme: 'basic', params: { realm: 'x' } });
  t.equal(parseChallenge('Negotiate abc'), undefined);
  t.same(mergeScopes(['repository:a:pull', 'repository:a:push', 'repository:b:pull']), ['repository:a:pull,push', 'repository:b:pull']);
});

t.test('tokens expire and are renewed early', async (t) => {
  let now = 1_000_000;
  const cache = new TokenCache(() => now);
  t.equal(cache.put(['s'], { token: 'T1', expires_in: 60 }), 'T1');
  t.equal(cache.get(['s']), 'T1');
  now += 49_000;
  t.equal(cache.get(['s']), 'T1', 'still valid 49 s in');
  now += 2_000;
  t.equal(cache.get(['s']), undefined, 'renewed 10 s before it expires');
  cache.put(['s'], { access_token: 'T2' });
  t.equal(cache.get(['s']), 'T2', 'access_token and the 60 s default');
  t.throws(() => cache.put(['s'], {}), /without a token/);
});

t.test('manifests and platform selection', async (t) => {
  const idx = parseManifest(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MT.ociIndex,
        manifests: [
          { mediaType: MT.ociManifest, digest: 'sha256:' + '1'.repeat(64), size: 10, platform: { os: 'linux', architecture: 'arm', variant: 'v7' } },
          { mediaType: MT.ociManifest, digest: 'sha256:' + '2'.repeat(64), size: 10, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
          { mediaType: MT.ociManifest, digest: 'sha256:' + '3'.repeat(64), size: 10, platform: { os: 'linux', architecture: 'amd64' } },
        ],
      }),
    ),
    undefined,
  );
  t.equal(idx.kind, 'index');
  if (idx.kind !== 'index') return;
  t.equal(selectPlatform(idx, parsePlatform('linux/amd64'))?.digest, 'sha256:' + '3'.repeat(64));
  t.equal(selectPlatform(idx, parsePlatform('linux/arm64'))?.digest, 'sha256:' + '2'.repeat(64), 'arm64 = arm64/v8');
  t.equal(selectPlatform(idx, parsePlatform('linux/arm/v7'))?.digest, 'sha256:' + '1'.repeat(64));
  t.equal(selectPlatform(idx, parsePlatform('linux/s390x')), undefined);
  t.ok(selectPlatform(idx, hostPlatform()), 'the host platform is found');
  t.throws(() => parsePlatform('linux'), /os\/arch/);
  const docker = parseManifest(Buffer.from(JSON.stringify({ schemaVersion: 2, config: { mediaType: MT.dockerConfig, digest: D, size: 3 }, layers: [] })), MT.dockerManifest);
  t.equal(docker.kind === 'manifest' && docker.mediaType, MT.dockerManifest, 'media type from Content-Type');
  t.throws(() => parseManifest(Buffer.from('{"schemaVersion":1}'), undefined), /schema 1/);
  t.throws(() => parseManifest(Buffer.from('{"schemaVersion":2,"mediaType":"x/y","layers":[]}'), undefined), /unsupported manifest media type/);
  t.throws(() => parseManifest(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.ociManifest, config: { digest: 'sha256:12', size: 1 }, layers: [] })), undefined), /invalid or unsupported digest/);
});
