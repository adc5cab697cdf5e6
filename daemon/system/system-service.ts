// `strata info` and `strata system df`: what the daemon reports about itself and its storage,
// gathered from the store and the services.
import type { ContainerService } from '../containers/containers';
import type { ImageService } from '../images/images';
import type { EngineInfo, Info, SystemDf } from '../model/types';
import type { MountManager } from '../mounts/mount-manager';
import type { StorageRoot } from '../root/storage-root';
import type { Store } from '../store';
import type { VolumeService } from '../volumes/volumes';

export interface SystemDeps {
  root: StorageRoot;
  store: Store;
  images: ImageService;
  containers: ContainerService;
  volumes: VolumeService;
  mounts: MountManager;
  version: string;
  backingFilesystem: string;
  engine: () => EngineInfo;
}

export function systemInfo(s: SystemDeps): Info {
  const counts = s.store.counts();
  return {
    driver: 'strata-fuse',
    version: s.version,
    rootDir: s.root.dir,
    backingFilesystem: s.backingFilesystem,
    passthrough: s.mounts.passthrough || process.geteuid?.() === 0,
    images: counts.images,
    layers: counts.layers,
    containers: counts.containers,
    containersMounted: counts.containersMounted,
    volumes: counts.volumes,
    engine: s.engine(),
  };
}

export function systemDf(s: SystemDeps): SystemDf {
  const { images, layersSize } = s.images.df();
  return {
    layersSize,
    images,
    containers: s.containers.list(true).map((c) => ({ id: c.id, name: c.name, image: c.image, size: c.size, state: c.state, created: c.created })),
    volumes: s.volumes.sizes(),
    buildCacheSize: s.store.buildCache.size(),
    buildCacheCount: s.store.buildCache.count(),
  };
}
