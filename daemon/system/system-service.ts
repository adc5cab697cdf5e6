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
    Driver: 'strata-fuse',
    ServerVersion: s.version,
    DockerRootDir: s.root.dir,
    BackingFilesystem: s.backingFilesystem,
    Passthrough: s.mounts.passthrough || process.geteuid?.() === 0,
    Images: counts.images,
    Layers: counts.layers,
    Containers: counts.containers,
    ContainersMounted: counts.containersMounted,
    Volumes: counts.volumes,
    Engine: s.engine(),
  };
}

export function systemDf(s: SystemDeps): SystemDf {
  const { Images, LayersSize } = s.images.df();
  return {
    LayersSize,
    Images,
    Containers: s.containers.list(true).map((c) => ({ Id: c.Id, Name: c.Name, Image: c.Image, SizeRw: c.SizeRw, State: c.State, Created: c.Created })),
    Volumes: s.volumes.sizes().map((v) => ({ Name: v.name, UsageData: { Size: v.size, RefCount: v.links } })),
    BuildCacheSize: s.store.buildCache.size(),
    BuildCacheCount: s.store.buildCache.count(),
  };
}
