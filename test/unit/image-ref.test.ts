// Local image names (daemon/model/validate.ts): Docker's reference grammar, the explicit tag, and
// the looser form lookups use. Pure; milliseconds.
import t from 'tap';
import { InvalidError } from '../../daemon/model/errors';
import { canonicalRef, normalizeRef, parseRef } from '../../daemon/model/validate';

t.test('a missing tag is latest', async (t) => {
  t.same(parseRef('busybox'), { name: 'busybox', tag: 'latest' });
  t.equal(canonicalRef('busybox'), 'busybox:latest');
  t.equal(canonicalRef('busybox:1.36'), 'busybox:1.36');
});

t.test('a colon before the last slash is a registry port, not a tag', async (t) => {
  t.equal(canonicalRef('localhost:5000/app'), 'localhost:5000/app:latest');
  t.equal(canonicalRef('localhost:5000/a/b:v1'), 'localhost:5000/a/b:v1');
  t.equal(normalizeRef('localhost:5000/app'), 'localhost:5000/app:latest');
});

t.test('repository components are lowercase with . _ __ - separators', async (t) => {
  t.equal(canonicalRef('a__b/c-d/e.f'), 'a__b/c-d/e.f:latest');
  t.throws(() => parseRef('Busybox'), InvalidError, 'uppercase refused');
  t.throws(() => parseRef('a--'), InvalidError, 'a trailing separator refused');
  t.throws(() => parseRef('a//b'), InvalidError, 'an empty component refused');
});

t.test('a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}', async (t) => {
  t.equal(canonicalRef('x:V1_2.3-rc'), 'x:V1_2.3-rc');
  t.throws(() => parseRef('x:.bad'), /tag "\.bad"/);
  t.throws(() => parseRef('x:' + 'a'.repeat(129)), InvalidError);
});

t.test('names that read as ids or digests are refused, and digests are not supported', async (t) => {
  t.throws(() => parseRef('sha256:' + 'a'.repeat(64)), /looks like an image id/);
  t.throws(() => parseRef('a'.repeat(64)), /looks like an image id/);
  t.throws(() => parseRef('busybox@sha256:' + 'a'.repeat(64)), /digests are not supported/);
});

t.test('the lookup form does not check: ids and digests pass through', async (t) => {
  t.equal(normalizeRef('sha256:abc'), 'sha256:abc', 'a tag-looking suffix stays');
  t.equal(normalizeRef('abc123'), 'abc123:latest');
  t.equal(normalizeRef('x@sha256:00'), 'x@sha256:00');
});
