// Shared layer stacks.
import { Entry } from './layers';

/** bottom layer (l2) of the standard 3-layer stack */
export function bottomLayer(): Entry[] {
  return [
    { path: 'a.txt', type: 'file', content: 'bottom a\n' },
    { path: 'b.txt', type: 'file', content: 'bottom b\n' },
    { path: 'c.txt', type: 'file', content: 'bottom c\n', mode: 0o600 },
    { path: 'd1/x', type: 'file', content: 'bottom x\n' },
    { path: 'd1/y', type: 'file', content: 'bottom y\n' },
    { path: 'd1/sub/z', type: 'file', content: 'bottom z\n' },
    { path: 'd2/p', type: 'file', content: 'bottom p\n' },
    { path: 'keep/k1', type: 'file', content: 'k1\n' },
    { path: 'keep/k2', type: 'file', content: 'k2\n' },
    { path: 'wdir/w1', type: 'file', content: 'w1\n' },
    { path: 'wdir/w2', type: 'file', content: 'w2\n' },
    { path: 'wdir/w3', type: 'file', content: 'w3\n' },
    { path: 'empty', type: 'dir' },
    { path: 'sym', type: 'symlink', target: 'a.txt' },
    { path: 'dangling', type: 'symlink', target: '/nonexistent/target' },
    { path: 'hl1', type: 'file', content: 'hardlinked\n' },
    { path: 'hl2', type: 'hardlink', target: 'hl1' },
    { path: 'fifo', type: 'fifo' },
    { path: 'null', type: 'chardev', major: 1, minor: 3 },
    { path: 'x.txt', type: 'file', content: 'xattrs\n', xattrs: { 'user.foo': 'bar', 'user.bin': Buffer.from([0, 1, 2, 255]) } },
    { path: 'xdir', type: 'dir', xattrs: { 'user.dirattr': 'dv' } },
    { path: 'owned.txt', type: 'file', content: 'owned\n', uid: 1000, gid: 1000, mode: 0o640 },
    { path: 'suid', type: 'file', content: '#!/bin/sh\n', mode: 0o4755 },
    { path: 'rodir', type: 'dir', mode: 0o555 },
    { path: 'rodir/f', type: 'file', content: 'in rodir\n', mode: 0o444 },
    { path: 'userdir', type: 'dir', uid: 1000, gid: 1000, mode: 0o755 },
    { path: 'userdir/mine', type: 'file', content: 'mine\n', uid: 1000, gid: 1000 },
    { path: 'deep/a/b/c/d/e/f.txt', type: 'file', content: 'deep\n' },
  ];
}

/** A 64 MiB file with two small data extents: holes must survive copy-up. Only the tests that
 *  need it carry it (every snapshot of a view hashes its 64 MiB). */
export function sparseFile(): Entry {
  return { path: 'sparse.bin', type: 'file', content: 'head', size: 64 * 1024 * 1024, chunks: [[32 * 1024 * 1024, 'middle']] };
}

/** middle layer (l1) */
export function middleLayer(): Entry[] {
  return [
    { path: 'a.txt', type: 'file', content: 'middle a\n' },
    { path: 'd1/x', type: 'file', content: 'middle x\n' },
    { path: 'b.txt', type: 'whiteout', format: 'chardev' },
    { path: 'wdir/w1', type: 'whiteout', format: 'chardev' },
    { path: 'd2', type: 'opaque', format: 'xattr' },
    { path: 'd2/q', type: 'file', content: 'middle q\n' },
    { path: 'm.txt', type: 'file', content: 'middle m\n' },
    { path: 'mdir/mm', type: 'file', content: 'mm\n' },
  ];
}

/** top lower layer (l0) */
export function topLayer(): Entry[] {
  return [
    { path: 'd1/new.txt', type: 'file', content: 'top new\n' },
    { path: 'keep/k1', type: 'whiteout', format: 'chardev' },
    { path: 'top.txt', type: 'file', content: 'top\n' },
    { path: 'd1/sub/t', type: 'file', content: 'top t\n' },
  ];
}

/** the standard 3-layer stack, topmost first */
export function stdLayers(): Entry[][] {
  return [topLayer(), middleLayer(), bottomLayer()];
}

/** a single small layer for focused tests */
export function smallLayers(): Entry[][] {
  return [
    [
      { path: 'f', type: 'file', content: 'hello\n' },
      { path: 'g', type: 'file', content: 'world\n' },
      { path: 'dir/one', type: 'file', content: '1\n' },
      { path: 'dir/two', type: 'file', content: '2\n' },
      { path: 'empty', type: 'dir' },
    ],
    [{ path: 'lower-only', type: 'file', content: 'lo\n' }],
  ];
}

/**
 * Kernel >= 6.7 "xattr whiteouts" in a lower layer: zero-size file with trusted.overlay.whiteout, parent dir
 * marked trusted.overlay.opaque=x (which does NOT make it opaque). Kept out of stdLayers so that a union lacking
 * this format fails only the tests that use it.
 */
export function xattrWhiteoutLayers(): Entry[][] {
  return [
    [
      { path: 'xw/w1', type: 'whiteout', format: 'xattr' },
      { path: 'xw/top', type: 'file', content: 'top\n' },
      { path: 'xw/sub/s1', type: 'whiteout', format: 'xattr' },
      { path: 'gone', type: 'whiteout', format: 'xattr' },
    ],
    [
      { path: 'xw/w1', type: 'file', content: 'w1\n' },
      { path: 'xw/w2', type: 'file', content: 'w2\n' },
      { path: 'xw/sub/s1', type: 'file', content: 's1\n' },
      { path: 'xw/sub/s2', type: 'file', content: 's2\n' },
      { path: 'gone', type: 'file', content: 'gone\n' },
      { path: 'plain', type: 'file', content: 'plain\n' },
    ],
  ];
}
