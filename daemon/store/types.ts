// Row shapes the store hands out. JSON columns are already parsed.
import type { ImageConfig, MountSpec } from '../model/types';

export type { ImageConfig, MountSpec };

export type LayerState = 'ready' | 'incomplete';

export interface LayerRow {
  /** "sha256:<hex>", chain-ish id (depends on parent and diffId). */
  id: string;
  parent: string | null;
  /** "sha256:<hex>" of the uncompressed layer tar (OCI diff id). */
  diffId: string;
  size: number;
  created: string;
  createdBy: string;
  state: LayerState;
}

/** Input of LayerRepo.insert: created defaults to now, state to 'incomplete', size to 0, createdBy to ''. */
export interface NewLayer {
  id: string;
  parent: string | null;
  diffId: string;
  size?: number;
  created?: string;
  createdBy?: string;
  state?: LayerState;
}

/** One entry of an image's history (OCI-style; the API adds the display id). */
export interface HistoryRecord {
  created: string;
  createdBy: string;
  comment: string;
  emptyLayer: boolean;
  size: number;
}

export interface ImageRow {
  /** "sha256:<hex>" of the config. */
  id: string;
  config: ImageConfig;
  topLayer: string | null;
  created: string;
  parent: string | null;
  history: HistoryRecord[];
}

export interface NewImage {
  id: string;
  config: ImageConfig;
  /** Defaults to the last of `layers` (null when there are none); if given it must equal it. */
  topLayer?: string | null;
  created?: string;
  parent?: string | null;
  history?: HistoryRecord[];
  /** Layer chain, bottom-up. */
  layers: string[];
}

export interface ImageListEntry extends ImageRow {
  /** "name:tag" refs pointing at it, sorted. */
  refs: string[];
  /** Sum of its layers' sizes. */
  size: number;
}

export type ContainerState = 'created' | 'mounted';

export type ContainerMount = MountSpec & { resolvedSource: string };

export interface ContainerRow {
  /** 64 hex chars. */
  id: string;
  name: string;
  imageId: string;
  /** What the user typed to pick the image. */
  imageRef: string;
  state: ContainerState;
  mountpoint: string | null;
  mounts: ContainerMount[];
  created: string;
  /** The last `run` in it: when it started, when it ended and with which exit code (null: not yet). */
  started?: string | null;
  finished?: string | null;
  exitCode?: number | null;
}

export interface NewContainer {
  id: string;
  name: string;
  imageId: string;
  imageRef: string;
  state?: ContainerState;
  mountpoint?: string | null;
  mounts?: ContainerMount[];
  created?: string;
}

export interface VolumeRow {
  name: string;
  driver: 'local';
  labels: Record<string, string>;
  options: Record<string, string>;
  anonymous: boolean;
  created: string;
}

export interface NewVolume {
  name: string;
  labels?: Record<string, string>;
  options?: Record<string, string>;
  anonymous?: boolean;
  created?: string;
}

export interface VolumeListEntry extends VolumeRow {
  /** Ids of containers using it. */
  usedBy: string[];
}

export interface BuildCacheRow {
  key: string;
  layerId: string | null;
  imageId: string | null;
  created: string;
}

/** Why a layer cannot be deleted yet. */
export interface LayerReferences {
  images: number;
  children: number;
  buildCache: number;
}
