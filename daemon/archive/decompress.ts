// Streaming decompression of layer blobs: gzip through zlib; zstd through zlib where Node has it
// (22.15+), else through Debian's `zstd -dc` (Node 20 has no zstd; the reference implementation in a
// child process is faster than a JS port and is a Debian package the Makefile installs).
import { spawn } from 'node:child_process';
import { Duplex, PassThrough, type Transform } from 'node:stream';
import * as zlib from 'node:zlib';
import { CorruptArchiveError } from './errors';

export type Codec = 'gzip' | 'zstd' | 'none';

/** The codec of a blob from its first bytes. */
export function sniffCodec(head: Buffer): Codec {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

type ZlibWithZstd = typeof zlib & { createZstdDecompress?: () => Transform };

/** A stream that decompresses what is written to it (`what` names the blob in zstd's errors). */
export function decompressor(codec: Codec, what: string): Duplex {
  if (codec === 'none') return new PassThrough();
  if (codec === 'gzip') return zlib.createGunzip();
  const native = (zlib as ZlibWithZstd).createZstdDecompress;
  if (native !== undefined) return native();
  const child = spawn('zstd', ['-d', '-c', '-q'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const d = Duplex.from({ writable: child.stdin, readable: child.stdout });
  child.on('error', (err) => d.destroy(new CorruptArchiveError(`${what}: cannot run zstd to decompress it: ${err.message} (install zstd)`)));
  child.on('exit', (code, signal) => {
    if (code !== 0 && !d.destroyed) d.destroy(new CorruptArchiveError(`${what}: invalid zstd data: ${stderr.trim() || `zstd exited with ${code ?? signal}`}`));
  });
  d.on('close', () => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  return d;
}
