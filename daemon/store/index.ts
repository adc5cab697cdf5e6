// Public surface of the store.
export { openDatabase, type Database } from './db';
export { migrate, migrations, SCHEMA_VERSION, type Migration, type MigrationResult } from './migrations';
export { Store, type StoreCounts } from './store';
export { LayerRepo } from './layers';
export { ImageRepo, MIN_IMAGE_PREFIX } from './images';
export { ContainerRepo, MIN_CONTAINER_PREFIX } from './containers';
export { VolumeRepo } from './volumes';
export { BuildCacheRepo } from './buildcache';
export * from './types';
