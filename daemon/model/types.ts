// The HTTP API between stratad and the strata CLI: JSON bodies over a Unix socket,
// shaped like Docker's engine API. Both sides import these types.
// What it answers uses Docker's key names where Docker shows the same thing (docker inspect, docker
// info, the engine API), and PascalCase for strata's own fields, so scripts written for docker port.
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
//   GET    /containers/{id}/changes                -> ChangeEntry[]
//   POST   /containers/{id}/commit[?progress=1] body CommitRequest -> { id: string }
//          (progress=1: a progress stream, types-progress.ts, ending in {result: {id}})
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

/**
 * Sent in every answer's Api-Version header. 2: the answers' keys are Docker's names (1: camelCase);
 * a CLI that finds another version says so rather than misreading the answer.
 */
export const API_VERSION = '2';

export interface ApiErrorBody {
  message: string;
}

export interface Info {
  Driver: string; // "strata-fuse"
  ServerVersion: string;
  DockerRootDir: string;
  BackingFilesystem: string; // e.g. "extfs"
  Passthrough: boolean;
  Images: number;
  Layers: number;
  Containers: number;
  ContainersMounted: number;
  Volumes: number;
  Engine: EngineInfo;
}

/** The FUSE engine serving the container mounts, and their survival across daemon restarts. */
export interface EngineInfo {
  /** Serving threads running now (at most `MaxThreads`). */
  Threads: number;
  MaxThreads: number;
  MountsServed: number;
  /** Mounts outlive a stop of stratad (--live-restore). */
  LiveRestore: boolean;
  /** The fd holder keeping the mounts' FUSE connections (0: none). */
  HolderPid: number;
  /** Times a stratad took the mounts over from the holder (crash, live restore, upgrade), on this root. */
  Takeovers: number;
  LastTakeover: { At: string; Ms: number; Mounts: number } | null;
}

export interface ImageSummary {
  Id: string; // "sha256:<hex>"
  RepoTags: string[];
  Created: string; // ISO 8601
  Size: number; // bytes of all its layers
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

/** ImageConfig as docker image inspect shows it (ExposedPorts and Volumes as sets: {"80/tcp": {}}). */
export interface ImageConfigView {
  Env: string[];
  Cmd: string[] | null;
  Entrypoint: string[] | null;
  WorkingDir: string;
  User: string;
  Labels: Record<string, string>;
  ExposedPorts?: Record<string, object>;
  Volumes?: Record<string, object>;
  Shell?: string[];
}

export interface HistoryEntry {
  /** The layer's image id for the top entry, "<missing>" for the others (as docker shows). */
  Id: string;
  Created: string;
  CreatedBy: string;
  Size: number;
  Comment: string;
  EmptyLayer: boolean;
}

/** docker's GraphDriver: the directories a mount of it stacks (LowerDir: top first, ':'-joined). */
export interface GraphDriver {
  Name: string; // "strata-fuse"
  Data: { LowerDir: string; UpperDir?: string; MergedDir?: string; WorkDir?: string };
}

export interface ImageInspect extends ImageSummary {
  Parent: string;
  Config: ImageConfigView;
  /** Diff ids bottom-up (sha256 of each uncompressed layer tar). */
  RootFS: { Type: 'layers'; Layers: string[] };
  GraphDriver: GraphDriver;
  /** The store's layers bottom-up: layer (chain) id, diff id, bytes. */
  Layers: { Id: string; DiffId: string; Size: number }[];
  History: HistoryEntry[];
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
  Id: string;
  Name: string;
  /** The reference it was created from. */
  Image: string;
  ImageID: string;
  State: 'created' | 'mounted';
  Mountpoint: string | null;
  Created: string;
  SizeRw: number; // bytes in the writable layer
  /** its last `run`: start and end times (null: never ran / still running) and exit code */
  StartedAt: string | null;
  FinishedAt: string | null;
  ExitCode: number | null;
  /**
   * 'taken-over': mounted, and served by this stratad after taking the mount over from the fd
   * holder (a crash, live restore or upgrade of the previous one); 'lost': its mount ended without
   * an unmount (the holder gone too, or unmounted from outside) and could not be mounted again.
   */
  MountStatus?: 'taken-over' | 'lost' | null;
}

/** docker container inspect's shape: Image is the image id, Config.Image the reference. */
export interface ContainerInspect {
  Id: string;
  Name: string;
  Created: string;
  Image: string;
  Config: { Image: string };
  State: {
    Status: 'created' | 'mounted';
    /** A `run` process is in it now. */
    Running: boolean;
    StartedAt: string | null;
    FinishedAt: string | null;
    ExitCode: number | null;
    /** As ContainerSummary.MountStatus: the mount taken over by this stratad, or lost. */
    MountStatus: 'taken-over' | 'lost' | null;
  };
  Mountpoint: string | null;
  SizeRw: number;
  GraphDriver: GraphDriver;
  Mounts: { Type: MountSpec['type']; Name?: string; Source: string; Destination: string; RW: boolean }[];
}

/** A change found by diff (the archive code's own form). */
export interface Change {
  kind: 'A' | 'C' | 'D';
  path: string; // absolute, e.g. "/etc/passwd"
}

/** A change as the API answers it (docker's names). */
export interface ChangeEntry {
  Kind: Change['kind'];
  Path: string;
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
  LayersSize: number;
  Images: {
    Id: string;
    RepoTags: string[];
    Created: string;
    Size: number;
    SharedSize: number;
    UniqueSize: number;
    Containers: number;
  }[];
  Containers: { Id: string; Name: string; Image: string; SizeRw: number; State: string; Created: string }[];
  /** UsageData.Size -1: not measured */
  Volumes: { Name: string; UsageData: { Size: number; RefCount: number } }[];
  BuildCacheSize: number;
  /** layers kept only by the build cache: the ones BuildCacheSize counts */
  BuildCacheCount: number;
}
