// The HTTP API between stratad and the strata CLI: JSON bodies over a Unix socket,
// shaped like Docker's engine API. Both sides import these types.
//
// Routes (all JSON; errors are `ApiErrorBody` with a 4xx/5xx status):
//   GET    /_ping                                  -> "OK" (text)
//   GET    /info                                   -> Info
//   GET    /system/df                              -> SystemDf
//   POST   /images/import?ref=R[&message=M] body: rootfs tar -> { id: string }  (types-image-io.ts)
//   GET    /images/json                            -> ImageSummary[]
//   GET    /images/{ref}/json                      -> ImageInspect
//   GET    /images/{ref}/history                   -> HistoryEntry[]
//   POST   /images/{ref}/tag  body { ref }         -> {}
//   DELETE /images/{ref}?force=1                   -> ImageDeleteResponse
//   POST   /containers/create body CreateRequest   -> { id: string; warnings: string[] }
//   GET    /containers/json?all=1                  -> ContainerSummary[]   (default: mounted only)
//   GET    /containers/{id}/json                   -> ContainerInspect
//   POST   /containers/{id}/mount body { at? }     -> { mountpoint: string }
//   POST   /containers/{id}/unmount                -> {}
//   GET    /containers/{id}/changes                -> Change[]
//   POST   /containers/{id}/commit body CommitRequest -> { id: string }
//   DELETE /containers/{id}?force=1                -> {}
//   POST   /volumes/create  body VolumeCreateRequest -> Volume
//   GET    /volumes                                -> { volumes: Volume[] }
//   GET    /volumes/{name}                         -> Volume
//   DELETE /volumes/{name}?force=1                 -> {}
//   POST   /volumes/prune?all=1                    -> { deleted: string[]; spaceReclaimed: number }
// {ref} and {id} accept a name[:tag], a full id, or an unambiguous id prefix (containers: name too);
// they are URL-encoded by the client.

/** Where stratad listens and the CLI connects unless told otherwise ($STRATA_SOCKET, --socket). */
export const DEFAULT_SOCKET = '/run/strata/strata.sock';

export interface ApiErrorBody {
  message: string;
}

export interface Info {
  driver: string; // "strata-fuse"
  version: string;
  rootDir: string;
  backingFilesystem: string; // e.g. "extfs"
  passthrough: boolean;
  images: number;
  layers: number;
  containers: number;
  containersMounted: number;
  volumes: number;
  engine: EngineInfo;
}

/** The FUSE engine serving the container mounts, and their survival across daemon restarts. */
export interface EngineInfo {
  /** Serving threads running now (at most `maxThreads`). */
  threads: number;
  maxThreads: number;
  mountsServed: number;
  /** Mounts outlive a stop of stratad (--live-restore). */
  liveRestore: boolean;
  /** The fd holder keeping the mounts' FUSE connections (0: none). */
  holderPid: number;
  /** Times a stratad took the mounts over from the holder (crash, live restore, upgrade), on this root. */
  takeovers: number;
  lastTakeover: { at: string; ms: number; mounts: number } | null;
}

export interface ImageSummary {
  id: string; // "sha256:<hex>"
  repoTags: string[];
  created: string; // ISO 8601
  size: number; // bytes of all its layers
}

export interface ImageConfig {
  env: string[];
  cmd: string[] | null;
  entrypoint: string[] | null;
  workingDir: string;
  user: string;
  labels: Record<string, string>;
  exposedPorts?: string[];
  volumes?: string[];
  shell?: string[];
}

export interface HistoryEntry {
  /** The layer's image id for the top entry, "<missing>" for the others (as docker shows). */
  id: string;
  created: string;
  createdBy: string;
  size: number;
  comment: string;
  emptyLayer: boolean;
}

export interface ImageInspect extends ImageSummary {
  parent: string;
  config: ImageConfig;
  /** Layer ids bottom-up, and their diff ids (sha256 of the uncompressed layer tar). */
  layers: { id: string; diffId: string; size: number }[];
  history: HistoryEntry[];
}

export interface ImageDeleteResponse {
  untagged: string[];
  deleted: string[]; // image and layer ids removed
}

export interface MountSpec {
  type: 'volume' | 'bind';
  source: string; // volume name (empty = anonymous) or host path
  target: string; // absolute path inside the container
  readonly: boolean;
}

export interface CreateRequest {
  image: string;
  name?: string;
  /** -v values: NAME:/path[:ro] or /host:/path[:ro] or /path (anonymous volume). */
  volumes?: string[];
  /** --mount values, already parsed by the CLI. */
  mounts?: MountSpec[];
}

export interface ContainerSummary {
  id: string;
  name: string;
  image: string;
  imageId: string;
  state: 'created' | 'mounted';
  mountpoint: string | null;
  created: string;
  size: number; // bytes in the writable layer
  /** its last `run`: start and end times (null: never ran / still running) and exit code */
  startedAt: string | null;
  finishedAt: string | null;
  exitCode: number | null;
  /**
   * 'taken-over': mounted, and served by this stratad after taking the mount over from the fd
   * holder (a crash, live restore or upgrade of the previous one); 'lost': its mount ended without
   * an unmount (the holder gone too, or unmounted from outside) and could not be mounted again.
   */
  mountStatus?: 'taken-over' | 'lost' | null;
}

export interface ContainerInspect extends ContainerSummary {
  upperDir: string;
  workDir: string;
  lowerDirs: string[];
  mounts: (MountSpec & { resolvedSource: string })[];
}

export interface Change {
  kind: 'A' | 'C' | 'D';
  path: string; // absolute, e.g. "/etc/passwd"
}

export interface CommitRequest {
  ref?: string;
  comment?: string;
  author?: string;
  /** Instruction text recorded as the history entry's created_by. */
  createdBy?: string;
}

export interface VolumeCreateRequest {
  name?: string;
  labels?: Record<string, string>;
  options?: Record<string, string>;
}

export interface Volume {
  Name: string;
  Driver: 'local';
  Mountpoint: string;
  CreatedAt: string;
  Labels: Record<string, string>;
  Options: Record<string, string>;
  Scope: 'local';
  /** Containers using it (strata extension, for ls/prune). */
  UsedBy: string[];
  Anonymous: boolean;
}

export interface SystemDf {
  layersSize: number;
  images: {
    id: string;
    repoTags: string[];
    created: string;
    size: number;
    sharedSize: number;
    uniqueSize: number;
    containers: number;
  }[];
  containers: { id: string; name: string; image: string; size: number; state: string; created: string }[];
  volumes: { name: string; links: number; size: number }[];
  buildCacheSize: number;
  /** layers kept only by the build cache: the ones buildCacheSize counts */
  buildCacheCount: number;
}
