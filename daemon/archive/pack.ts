// Packing a directory into a deterministic tar: an overlay-format layer into an OCI layer tar
// (packLayer), or any tree as-is (packTree, e.g. a merged root export).
import * as fs from 'node:fs';
import type { Writable } from 'node:stream';
import { PackError } from './errors';
import { TreeNode, WH_OPAQUE, WH_PREFIX, isOpaqueDir, isWhiteoutNode, readXattrs, walkTree } from './fsnode';
import { TarWriter, WriteEntry } from './tar-writer';

export interface PackOptions {
  /** End `out` once the archive is written (and wait until it has flushed). Default true. */
  endOutput?: boolean;
  /** Which entries go into the archive, by relative path (default: all). */
  keep?: (rel: string) => boolean;
  /** Files added after the tree (regular, root-owned), e.g. a Dockerfile from outside a build context. */
  extra?: { name: string; data: Buffer; mode: number }[];
}

/** A `keep` that leaves out the given relative paths and whatever is below them. */
export function notUnder(paths: ReadonlySet<string>): (rel: string) => boolean {
  return (rel) => {
    for (let p = rel; ; p = p.slice(0, p.lastIndexOf('/'))) {
      if (paths.has(p)) return false;
      if (!p.includes('/')) return true;
    }
  };
}

export interface PackResult {
  /** "sha256:<hex>" of exactly the uncompressed tar bytes produced. */
  diffId: string;
  /** Bytes of regular-file content in the archive (hard-link repeats not counted). */
  size: number;
}

const READ_CHUNK = 1 << 20;

async function writeFileContent(w: TarWriter, node: TreeNode): Promise<void> {
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(node.abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch (e) {
    throw new PackError(node.abs, (e as Error).message);
  }
  try {
    let left = node.st.size;
    while (left > 0) {
      const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, left));
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) throw new PackError(node.abs, 'file shrank while it was being archived');
      left -= bytesRead;
      await w.write(bytesRead === buf.length ? buf : buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
}

async function packDir(srcDir: string, out: Writable | null, layer: boolean, opts: PackOptions): Promise<PackResult> {
  const keep = opts.keep;
  const nodes = keep ? walkTree(srcDir).filter((n) => keep(n.rel)) : walkTree(srcDir);
  const w = new TarWriter(out);
  const firstName = new Map<string, string>(); // "dev:ino" -> member name of the first occurrence
  let size = 0;

  // Layer mode renames whiteouts to '.wh.<name>'; re-sort by the names actually written.
  type Item = { node: TreeNode; name: string; key: Buffer };
  const items: Item[] = nodes.map((node) => {
    let name = node.rel;
    if (layer && isWhiteoutNode(node.st)) {
      const slash = name.lastIndexOf('/');
      name = name.slice(0, slash + 1) + WH_PREFIX + name.slice(slash + 1);
    }
    return { node, name, key: Buffer.from(name, 'utf8') };
  });
  if (layer) items.sort((a, b) => Buffer.compare(a.key, b.key));

  for (const { node, name } of items) {
    const st = node.st;
    if (st.type === 'socket') continue; // tar cannot carry sockets (docker skips them too)
    const base: WriteEntry = {
      name,
      type: st.type,
      mode: st.mode,
      uid: st.uid,
      gid: st.gid,
      mtimeSec: st.mtimeSec,
      mtimeNsec: st.mtimeNsec,
      size: 0,
    };
    if (layer && isWhiteoutNode(st)) {
      await w.addEntry({ ...base, type: 'file', mode: 0 });
      continue;
    }
    base.xattrs = readXattrs(node.abs);
    if (st.type !== 'dir' && st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      const first = firstName.get(key);
      if (first !== undefined) {
        await w.addEntry({ ...base, type: 'link', linkname: Buffer.from(first, 'utf8') });
        continue;
      }
      firstName.set(key, name);
    }
    switch (st.type) {
      case 'file':
        await w.addEntry({ ...base, size: st.size });
        await writeFileContent(w, node);
        size += st.size;
        break;
      case 'symlink': {
        let target: Buffer;
        try {
          target = fs.readlinkSync(node.abs, { encoding: 'buffer' });
        } catch (e) {
          throw new PackError(node.abs, (e as Error).message);
        }
        await w.addEntry({ ...base, linkname: target });
        break;
      }
      case 'char':
      case 'block':
        await w.addEntry({ ...base, devmajor: st.rdevMajor, devminor: st.rdevMinor });
        break;
      case 'dir':
        await w.addEntry(base);
        if (layer && isOpaqueDir(node.abs)) {
          await w.addEntry({ ...base, name: name + '/' + WH_OPAQUE, type: 'file', mode: 0, xattrs: [] });
        }
        break;
      default:
        await w.addEntry(base);
    }
  }
  for (const f of opts.extra ?? []) {
    await w.addEntry({ name: f.name, type: 'file', mode: f.mode, uid: 0, gid: 0, mtimeSec: 0, mtimeNsec: 0, size: f.data.length });
    await w.write(f.data);
  }
  const { sha256 } = await w.finish(opts.endOutput ?? true);
  return { diffId: 'sha256:' + sha256, size };
}

/**
 * Writes an OCI layer tar of `srcDir`, a layer in kernel overlayfs format: char 0/0 whiteouts become
 * empty `.wh.<name>` files (mode 0), opaque directories get a `<dir>/.wh..wh..opq` marker right after
 * their entry, trusted.overlay.* xattrs are dropped. Entries are sorted bytewise by name, the root
 * itself is not an entry, owners are numeric only, and the output is byte-for-byte deterministic.
 * `out` null only computes the result.
 */
export function packLayer(srcDir: string, out: Writable | null, opts: PackOptions = {}): Promise<PackResult> {
  return packDir(srcDir, out, true, opts);
}

/** Plain deterministic tar of a tree as it is (no whiteout conversion), e.g. a merged root export. */
export function packTree(srcDir: string, out: Writable | null, opts: PackOptions = {}): Promise<PackResult> {
  return packDir(srcDir, out, false, opts);
}
