// API types for build, run and exec (see routes-build-run.ts).
//
// Routes:
//   POST /build            body BuildRequest        -> streamed NDJSON: BuildMessage per line
//   POST /run/prepare      body RunPrepareRequest   -> RunPrepareResponse
//   POST /run/{id}/finish  body RunFinishRequest    -> {}
//   GET  /containers/{id}/exec                      -> ExecInfo
//
// Streamed responses are `application/x-ndjson`: one JSON object per line, written as the
// work progresses (the progress protocol of types-progress.ts). The last line is always a status:
// `{ "result": { "id": ..., "tags": [...] } }` on success or `{ "error": ..., "code": ... }` on failure.

import type { ProgressMessage } from './types-progress';

export interface BuildRequest {
  /** Absolute path of the build context directory (the daemon runs on the same host). */
  context: string;
  /** Dockerfile path: absolute, or relative to the context. Default "Dockerfile". */
  dockerfile?: string;
  /** name[:tag] refs to give the result. */
  tags?: string[];
  noCache?: boolean;
  buildArgs?: Record<string, string>;
  /** "host" runs RUN steps in the host network namespace; anything else (default): no network. */
  network?: string;
}

export interface BuildResult {
  id: string;
  tags: string[];
}

/** One line of a streamed build: step lines and RUN output, COPY/commit byte progress, then the result. */
export type BuildMessage = ProgressMessage<BuildResult>;

export interface RunPrepareRequest {
  image: string;
  name?: string;
  volumes?: string[];
  mounts?: { type: 'volume' | 'bind'; source: string; target: string; readonly: boolean }[];
  /** K=V (or K, taken from nothing: ignored) overrides of the image's env. */
  env?: string[];
  workdir?: string;
  user?: string;
  /** Replaces the image's CMD when non-empty. */
  cmd?: string[];
  /** Replaces the image's ENTRYPOINT when given ("" clears it). */
  entrypoint?: string;
  tty?: boolean;
  network?: string;
  hostname?: string;
}

export interface RunPrepareResponse {
  /** Container id (also the runc container id). */
  id: string;
  name: string;
  bundle: string;
  runcRoot: string;
  runcId: string;
  args: string[];
}

export interface RunFinishRequest {
  /** --rm: remove the container (and its anonymous volumes) afterwards. */
  remove?: boolean;
}

export interface ExecInfo {
  id: string;
  runcId: string;
  runcRoot: string;
  env: string[];
  cwd: string;
  user: string;
}
