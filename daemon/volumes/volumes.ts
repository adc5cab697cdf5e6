// Volumes: named directories under volumes/<name>/_data whose data outlives containers.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { conflict, notFound } from '../model/errors';
import type { Volume, VolumeCreateRequest } from '../model/types';
import { checkName } from '../model/validate';
import type { Logger } from '../log';
import type { Store } from '../store';
import type { VolumeRow } from '../store/types';
import type { StorageRoot } from '../root/storage-root';
import { diskUsage } from '../util/disk-usage';
import { mkdirsWithMode } from '../util/mkdirs';

export class VolumeService {
  constructor(
    private readonly root: StorageRoot,
    private readonly store: Store,
    private readonly log: Logger,
  ) {}

  /** Creates a volume, or returns the existing one of that name (as docker does). */
  create(req: VolumeCreateRequest, anonymous = false): Volume {
    const name = req.name === undefined || req.name === '' ? randomBytes(32).toString('hex') : checkName('volume', req.name);
    const existing = this.store.volumes.get(name);
    if (existing !== undefined) return this.present(existing);
    for (const [k, v] of Object.entries(req.options ?? {})) {
      // The local driver here keeps plain directories; mount options would need a device.
      throw conflict(`volume option ${k}=${v} is not supported by the local driver in strata`);
    }
    mkdirsWithMode(this.root.volumeData(name), 0o755);
    const row = this.store.volumes.insert({ name, labels: req.labels ?? {}, options: {}, anonymous });
    this.log.info({ volume: name, anonymous }, 'volume created');
    return this.present(row);
  }

  get(name: string): Volume {
    const row = this.store.volumes.get(name);
    if (row === undefined) throw notFound(`no such volume: ${name}`);
    return this.present(row);
  }

  exists(name: string): boolean {
    return this.store.volumes.get(name) !== undefined;
  }

  list(): Volume[] {
    return this.store.volumes.list().map((v) => this.present(v, v.usedBy));
  }

  remove(name: string): void {
    this.get(name);
    const users = this.store.volumes.usedBy(name);
    if (users.length > 0) throw conflict(`volume ${name} is in use by container(s) ${users.map((u) => u.slice(0, 12)).join(', ')}`);
    this.store.volumes.delete(name);
    fs.rmSync(path.dirname(this.root.volumeData(name)), { recursive: true, force: true });
    this.log.info({ volume: name }, 'volume removed');
  }

  /** Removes unused anonymous volumes, or every unused volume with `all`. */
  prune(all: boolean): { deleted: string[]; spaceReclaimed: number } {
    const deleted: string[] = [];
    let spaceReclaimed = 0;
    for (const v of this.store.volumes.list()) {
      if (v.usedBy.length > 0 || (!all && !v.anonymous)) continue;
      spaceReclaimed += diskUsage(this.root.volumeData(v.name));
      this.remove(v.name);
      deleted.push(v.name);
    }
    return { deleted, spaceReclaimed };
  }

  sizes(): { name: string; links: number; size: number }[] {
    return this.store.volumes.list().map((v) => ({ name: v.name, links: v.usedBy.length, size: diskUsage(this.root.volumeData(v.name)) }));
  }

  private present(v: VolumeRow, usedBy = this.store.volumes.usedBy(v.name)): Volume {
    return {
      Name: v.name,
      Driver: 'local',
      Mountpoint: this.root.volumeData(v.name),
      CreatedAt: v.created,
      Labels: v.labels,
      Options: v.options,
      Scope: 'local',
      UsedBy: usedBy,
      Anonymous: v.anonymous,
    };
  }
}
