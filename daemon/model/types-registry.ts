// API types of registry pull, push and login (routes: daemon/api/routes-registry.ts).
//
//   POST /images/pull          body PullRequest   -> progress stream (daemon/model/progress.ts), {result: PullResponse}
//   POST /images/{ref}/push    body PushRequest   -> progress stream, {result: PushResponse}
//   POST /registry/login       body LoginRequest  -> LoginResponse
//
// Credentials travel in the body of each request (the CLI reads them from its auth file); the
// daemon keeps them only for that request and never logs them.

export interface RegistryAuth {
  username: string;
  password: string;
}

interface RegistryAccess {
  /** false: allow plain HTTP and unverified TLS for this registry. Default true. */
  tlsVerify?: boolean;
  auth?: RegistryAuth;
}

export interface PullRequest extends RegistryAccess {
  /** [registry/]name[:tag][@digest] */
  ref: string;
  /** os/arch[/variant]; default the host's. */
  platform?: string;
}

export interface PulledLayer {
  /** Blob digest in the registry. */
  digest: string;
  diffId: string;
  /** Bytes of the blob. */
  size: number;
  /** Already in the store: not downloaded. */
  reused: boolean;
}

export interface PullResponse {
  /** Image id (digest of its config). */
  id: string;
  /** Digest of the manifest (or index) the reference named. */
  digest: string;
  /** Local name: name:tag (familiar form, e.g. busybox:latest), or name@digest. */
  name: string;
  /** "Downloaded newer image for ..." or "Image is up to date for ...". */
  status: string;
  layers: PulledLayer[];
}

export interface PushRequest extends RegistryAccess {
  /** Where to push: [registry/]name[:tag]; default the image reference itself. */
  target?: string;
}

export interface PushedBlob {
  digest: string;
  size: number;
  /** pushed | exists | mounted */
  how: 'pushed' | 'exists' | 'mounted';
}

export interface PushResponse {
  /** The repository pushed to (host/name). */
  repository: string;
  tag: string;
  /** Digest of the manifest pushed. */
  digest: string;
  /** Bytes of the manifest. */
  size: number;
  layers: PushedBlob[];
  warnings: string[];
}

export interface LoginRequest extends RegistryAccess {
  registry: string;
}

export interface LoginResponse {
  status: string;
}
