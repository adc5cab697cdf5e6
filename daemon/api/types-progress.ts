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
