// The tar an image is saved into, written member by member with fixed metadata; layer members are
// checked to hash to the diff id planned for them.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ArchiveError, packLayer } from '../archive';
import { decompressor, type Codec } from '../archive/decompress';
import { TarWriter } from '../archive/tar-writer';
import type { ProgressReporter } from '../model/progress';
import { digestShort, sizeText } from '../model/progress';
import type { LayerRow } from '../store/types';

/** Where a saved layer's tar comes from, and what it will hash to. */
export type LayerPlan = {
  row: LayerRow;
  diffId: string;
  size: number;
  source: { kind: 'original'; file: string } | { kind: 'blob'; file: string; codec: Codec } | { kind: 'pack'; dir: string };
};

/** Outer-archive writer with fixed metadata for its own members. */
export class OuterWriter {
  readonly w: TarWriter;
  private readonly dirs = new Set<string>();
  constructor(
    out: Writable,
    private readonly mtime: number,
    private readonly progress: ProgressReporter,
  ) {
    this.w = new TarWriter(out);
  }

  async dir(name: string): Promise<void> {
    if (this.dirs.has(name)) return;
    this.dirs.add(name);
    await this.w.addEntry({ name, type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeSec: this.mtime, mtimeNsec: 0, size: 0 });
  }

  async file(name: string, data: Buffer | string): Promise<void> {
    const b = Buffer.isBuffer(data) ? data : Buffer.from(data);
    await this.w.addEntry({ name, type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeSec: this.mtime, mtimeNsec: 0, size: b.length });
    if (b.length) await this.w.write(b);
  }

  /** Writes a layer tar as member `name`, checking it hashes to its planned diff id. */
  async layer(name: string, p: LayerPlan): Promise<void> {
    await this.w.addEntry({ name, type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeSec: this.mtime, mtimeNsec: 0, size: p.size });
    const short = digestShort(p.diffId);
    this.progress.step(`Saving layer ${short} (${sizeText(p.size)})`);
    const bar = this.progress.bytes(short, 'Saving', p.size);
    const h = createHash('sha256');
    let written = 0;
    const sink = new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        written += chunk.length;
        bar.add(chunk.length);
        if (written > p.size) return cb(new ArchiveError(`layer ${p.diffId} grew while it was being saved`));
        h.update(chunk);
        this.w.write(chunk).then(() => cb(), cb);
      },
    });
    if (p.source.kind === 'original') await pipeline(fs.createReadStream(p.source.file), sink);
    else if (p.source.kind === 'blob') await pipeline(fs.createReadStream(p.source.file), decompressor(p.source.codec, p.source.file), sink);
    else await packLayer(p.source.dir, sink);
    bar.done();
    if (written !== p.size || 'sha256:' + h.digest('hex') !== p.diffId) {
      throw new ArchiveError(`layer ${p.row.id} changed while it was being saved (its tar no longer hashes to ${p.diffId})`);
    }
  }
}
