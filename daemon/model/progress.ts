// The progress protocol of streamed (NDJSON) responses: POST /build, POST /images/{ref}/save,
// POST /images/load. Each line is one ProgressMessage:
//
//   {"stream": "Step 1/3 : COPY big /big\n"}     text for the user (step lines, RUN output), as is
//   {"progress": {"id": "sha256:abcd…", "action": "Saving", "current": 123, "total": 456}}
//                                                  bytes done so far for one piece of work; total null
//                                                  when unknown; at most ~10 a second per id, plus one
//                                                  when it completes (current = total when known)
//   {"result": {...}}                              last line on success (the route's response type)
//   {"error": "message", "code": 1}                last line on failure (code: a build's exit code,
//                                                  or the HTTP status the error would have had)
//
// Errors found before the work starts (bad request bodies) are still plain HTTP errors.
// Services report through a ProgressReporter (the API's ProgressWriter turns it into lines).
import { Transform } from 'node:stream';
import { humanSize } from './units';

export interface ProgressDetail {
  /** What the bytes belong to, e.g. a short layer digest; stable for the life of one piece of work. */
  id: string;
  /** A verb for the user: "Saving", "Loading", "Copying", "Committing". */
  action: string;
  current: number;
  total: number | null;
}

export type ProgressMessage<R> =
  | { stream: string }
  | { progress: ProgressDetail }
  | { result: R }
  | { error: string; code: number };

/** Counts bytes of one piece of work (see ProgressReporter.bytes). */
export interface ByteCounter {
  /** `n` more bytes done. */
  add(n: number): void;
  /** Finished: sends the completion event (once). */
  done(): void;
}

/** What daemon code reports progress through; `noProgress` when nobody listens. */
export interface ProgressReporter {
  /** One step line (a newline is added when missing). */
  step(line: string): void;
  /** Raw text (e.g. a command's output chunk), passed on as is. */
  text(chunk: string): void;
  bytes(id: string, action: string, total: number | null): ByteCounter;
}

// Multiplexed answers (POST /images/{ref}/save): data and progress in one response, framed as
// Docker frames attach streams: an 8-byte header [channel, 0, 0, 0, length (uint32 big-endian)]
// then `length` bytes. Channel 1 carries the data (the archive), channel 2 the NDJSON progress
// lines above, ending with {result} or {error}.
export const MUX_CONTENT_TYPE = 'application/vnd.strata.multiplexed-stream';
export const MUX_DATA = 1;
export const MUX_PROGRESS = 2;

export function muxHeader(channel: number, length: number): Buffer {
  const h = Buffer.alloc(8);
  h[0] = channel;
  h.writeUInt32BE(length, 4);
  return h;
}

/** Splits a multiplexed byte stream back into its channels (feed it chunks as they come); a
 *  frame's payload is handed on in pieces as it arrives. */
export class MuxReader {
  private header = Buffer.alloc(0);
  private channel = 0;
  private left = 0;

  constructor(private readonly onData: (channel: number, data: Buffer) => void) {}

  push(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.left === 0) {
        const need = 8 - this.header.length;
        this.header = Buffer.concat([this.header, chunk.subarray(off, off + need)]);
        off += Math.min(need, chunk.length - off);
        if (this.header.length < 8) return;
        this.channel = this.header[0];
        this.left = this.header.readUInt32BE(4);
        this.header = Buffer.alloc(0);
        continue;
      }
      const n = Math.min(this.left, chunk.length - off);
      this.onData(this.channel, chunk.subarray(off, off + n));
      this.left -= n;
      off += n;
    }
  }

  /** True when the stream stopped inside a frame. */
  get midFrame(): boolean {
    return this.left > 0 || this.header.length > 0;
  }
}

/** Sizes in step lines, as the CLI prints them (12.3MB). */
export const sizeText = humanSize;

/** "sha256:" + 12 hex digits: how layers are named in step lines and progress ids. */
export function digestShort(d: string): string {
  return d.slice(0, 'sha256:'.length + 12);
}

const nullCounter: ByteCounter = { add: () => undefined, done: () => undefined };

/** A reporter that drops everything (callers that do not stream). */
export const noProgress: ProgressReporter = { step: () => undefined, text: () => undefined, bytes: () => nullCounter };

/** A Transform that passes its data through and counts it into `c` (done() is the caller's). */
export function countingStream(c: ByteCounter): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      c.add(chunk.length);
      cb(null, chunk);
    },
  });
}
