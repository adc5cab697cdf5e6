// What the routes call: the daemon's services, built once by stratad/main.ts.
import type { ContainerService } from '../containers/containers';
import type { ImageService } from '../images/images';
import type { MountManager } from '../mounts/mount-manager';
import type { Store } from '../store';
import type { StorageRoot } from '../root/storage-root';
import type { LayerStore } from '../layers/layer-store';
import type { Logger } from '../log';
import type { RunService } from '../runtime/run-service';
import type { VolumeService } from '../volumes/volumes';
import type { EngineInfo } from '../model/types';

export interface Services {
  root: StorageRoot;
  store: Store;
  images: ImageService;
  containers: ContainerService;
  volumes: VolumeService;
  runs: RunService;
  mounts: MountManager;
  layers: LayerStore;
  log: Logger;
  version: string;
  backingFilesystem: string;
  /** The FUSE engine and the takeovers of the mounts (for `strata info`). */
  engine: () => EngineInfo;
  /** Per-registry CA files: <certsDir>/<host[:port]>/*.crt. */
  certsDir?: string;
  /** Registries (host[:port]) reached over plain HTTP or unverified TLS without --tls-verify=false. */
  insecureRegistries?: string[];
}
