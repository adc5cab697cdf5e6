// The overlay lookup rules (daemon/union/resolve.ts) on small layer directories, no mount: each
// case builds an upper and two lowers in a workspace and resolves one name in the root, as
// overlayfs' ovl_lookup does. Milliseconds.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../../native-shims';
import type { FuseError } from '../../daemon/fuse/filesystem';
import { LayerStack } from '../../daemon/union/layers';
import { Node } from '../../daemon/union/nodes';
import { Resolver } from '../../daemon/union/resolve';
import { S_IFCHR } from '../../daemon/util/file-mode';
import { makeWorkspace, type TestLike } from '../lib/workspace';

/** A layer's content: a file (string), a directory (object), a whiteout ('WHITEOUT'), with xattrs under '@'. */
type Tree = { [name: string]: string | Tree } & { '@'?: Record<string, string> };

function build(dir: string, tree: Tree): void {
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, v] of Object.entries(tree)) {
    if (name === '@') continue;
    const p = path.join(dir, name);
    if (v === 'WHITEOUT') native.mknod(p, S_IFCHR | 0o600, 0, 0);
    else if (typeof v === 'string') fs.writeFileSync(p, v);
    else build(p, v as Tree);
  }
  for (const [k, v] of Object.entries((tree['@'] ?? {}) as Record<string, string>)) native.lsetxattr(dir, k, Buffer.from(v), 0);
}

/** Resolves `name` in the root of upper over lowers (topmost first). */
function lookup(t: TestLike, layers: { upper: Tree; lowers: Tree[] }, name: string, followRedirects = true) {
  const ws = makeWorkspace(t, 'resolve');
  build(path.join(ws, 'upper'), layers.upper);
  const lowers = layers.lowers.map((l, i) => {
    const d = path.join(ws, `lower${i + 1}`);
    build(d, l);
    return d;
  });
  const stack = new LayerStack({ lowers, upper: path.join(ws, 'upper'), work: path.join(ws, 'work') });
  const root = new Node(1, 1, null, '', true, true, lowers.map((_, i) => ({ layer: i + 1, rel: '' })), 0);
  return new Resolver(stack, followRedirects).child(root, name);
}

t.test('the upper entry hides a lower entry of the same name', async (t) => {
  const r = lookup(t, { upper: { f: 'up' }, lowers: [{ f: 'low' }] }, 'f');
  t.same([r?.isDir, r?.upper, r?.lowers], [false, true, []]);
});

t.test('a lower file is found in the topmost lower that has it', async (t) => {
  const r = lookup(t, { upper: {}, lowers: [{}, { f: 'bottom' }] }, 'f');
  t.same(r?.lowers, [{ layer: 2, rel: 'f' }]);
});

t.test('a whiteout (0/0 character device) hides the name in every layer below', async (t) => {
  t.equal(lookup(t, { upper: { f: 'WHITEOUT' }, lowers: [{ f: 'low' }] }, 'f'), null);
});

t.test('an OCI .wh.<name> marker hides the name below, and markers are never visible names', async (t) => {
  t.equal(lookup(t, { upper: {}, lowers: [{ '.wh.f': '' }, { f: 'bottom' }] }, 'f'), null);
  t.equal(lookup(t, { upper: {}, lowers: [{ '.wh.f': '' }] }, '.wh.f'), null);
});

t.test('directories merge across layers, top-down', async (t) => {
  const r = lookup(t, { upper: { d: {} }, lowers: [{ d: {} }, { d: {} }] }, 'd');
  t.same([r?.isDir, r?.upper, r?.lowers], [true, true, [{ layer: 1, rel: 'd' }, { layer: 2, rel: 'd' }]]);
});

t.test('an opaque directory stops the merge below it', async (t) => {
  const r = lookup(t, { upper: {}, lowers: [{ d: { '@': { 'trusted.overlay.opaque': 'y' } } }, { d: {} }] }, 'd');
  t.same(r?.lowers, [{ layer: 1, rel: 'd' }]);
});

t.test('a non-directory hides a directory below it', async (t) => {
  const r = lookup(t, { upper: { d: 'file' }, lowers: [{ d: {} }] }, 'd');
  t.same([r?.isDir, r?.upper, r?.lowers], [false, true, []]);
});

t.test('a directory does not merge a non-directory below it', async (t) => {
  const r = lookup(t, { upper: {}, lowers: [{ d: {} }, { d: 'file' }] }, 'd');
  t.same([r?.isDir, r?.lowers], [true, [{ layer: 1, rel: 'd' }]]);
});

t.test('a relative redirect re-aims the lookup in the layers below', async (t) => {
  const r = lookup(t, { upper: {}, lowers: [{ moved: { '@': { 'trusted.overlay.redirect': 'orig' } } }, { orig: {} }] }, 'moved');
  t.same(r?.lowers, [{ layer: 1, rel: 'moved' }, { layer: 2, rel: 'orig' }]);
});

t.test('an absolute redirect is followed from every lower root', async (t) => {
  const r = lookup(t, { upper: {}, lowers: [{ moved: { '@': { 'trusted.overlay.redirect': '/a/orig' } } }, { a: { orig: {} } }] }, 'moved');
  t.same(r?.lowers, [{ layer: 1, rel: 'moved' }, { layer: 2, rel: 'a/orig' }]);
});

t.test('redirect_dir=nofollow: meeting a redirect is EPERM', async (t) => {
  const err = t.throws(() => lookup(t, { upper: {}, lowers: [{ moved: { '@': { 'trusted.overlay.redirect': 'orig' } } }, { orig: {} }] }, 'moved', false)) as FuseError;
  t.equal(err.errnoValue, 1);
});

t.test('a missing name is null', async (t) => {
  t.equal(lookup(t, { upper: {}, lowers: [{}] }, 'nothing'), null);
});
