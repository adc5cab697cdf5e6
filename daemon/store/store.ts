// The Store: one SQLite database, one repository per table group, statements prepared once.
import { BuildCacheRepo } from './buildcache';
import { ContainerRepo } from './containers';
import { type Database, openDatabase } from './db';
import { ImageRepo } from './images';
import { LayerRepo } from './layers';
import { VolumeRepo } from './volumes';

export interface StoreCounts {
  images: number;
  layers: number;
  containers: number;
  containersMounted: number;
  volumes: number;
}

export class Store {
  readonly layers: LayerRepo;
  readonly images: ImageRepo;
  readonly containers: ContainerRepo;
  readonly volumes: VolumeRepo;
  readonly buildCache: BuildCacheRepo;

  constructor(readonly db: Database) {
    this.layers = new LayerRepo(db);
    this.images = new ImageRepo(db);
    this.containers = new ContainerRepo(db);
    this.volumes = new VolumeRepo(db);
    this.buildCache = new BuildCacheRepo(db);
  }

  /** openDatabase(file) (pragmas + migrations) wrapped in a Store. */
  static open(file: string): Store {
    return new Store(openDatabase(file));
  }

  /** Run fn in one transaction (nests as a savepoint inside another). Throwing rolls it back. */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  /** Row counts for GET /info (layers: ready ones only). */
  counts(): StoreCounts {
    const c = this.containers.counts();
    return {
      images: this.images.count(),
      layers: this.layers.stats().count,
      containers: c.total,
      containersMounted: c.mounted,
      volumes: this.volumes.count(),
    };
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
