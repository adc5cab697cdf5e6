// API types for build, run and exec (see routes-build-run.ts).
//
// Routes:
//   POST /build?t=REF&dockerfile=P&dockerfileName=N&buildargs={JSON}&nocache=1&network=host
//                          body: the build context as a tar (the CLI sends it, honouring .dockerignore)
//                                                  -> streamed NDJSON: BuildMessage per line
//   POST /run/prepare      body RunPrepareRequest   -> RunPrepareResponse
//   POST /run/{id}/finish  body RunFinishRequest    -> {}
//   GET  /containers/{id}/exec                      -> ExecInfo
//
// Streamed responses are `application/x-ndjson`: one JSON object per line, written as the
// work progresses (the progress protocol of progress.ts). The last line is always a status:
// `{ "result": { "id": ..., "tags": [...] } }` on success or `{ "error": ..., "code": ... }` on failure.

import type { ProgressMessage } from './progress';

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
