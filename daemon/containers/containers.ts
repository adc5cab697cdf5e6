// Containers: an image plus one writable layer (upper + work dirs), mounted on
// demand as a union with the container's volumes and bind mounts inside it.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { layerChanges, mountpointLeftovers } from '../archive';
import { invalid, conflict, notFound } from '../model/errors';
import type { Change, CommitRequest, ContainerInspect, ContainerSummary, CreateRequest, MountSpec } from '../model/types';
import { canonicalRef, checkContainerPath, checkHostPath, checkName } from '../model/validate';
import type { ProgressReporter } from '../model/progress';
import type { ImageService } from '../images/images';
import type { LayerStore } from '../layers/layer-store';
import type { Logger } from '../log';
import { clearStale, type BindSpec, type MountManager } from '../mounts/mount-manager';
import { mountsAtOrBelow, mountTable } from '../mounts/mount-table';
import type { Store } from '../store';
import type { ContainerMount, ContainerRow } from '../store/types';
import type { StorageRoot } from '../root/storage-root';
import { nowIso } from '../store/util';
import { diskUsage } from '../util/disk-usage';
import { mkdirsWithMode } from '../util/mkdirs';
import type { VolumeService } from '../volumes/volumes';
import { generateName } from './names';

export class ContainerService {
  constructor(
    private readonly root: StorageRoot,
    private readonly store: Store,
    private readonly images: ImageService,
    private readonly layers: LayerStore,
    private readonly volumes: VolumeService,
    private readonly mounts: MountManager,
    private readonly log: Logger,
  ) {}

  resolve(ref: string): ContainerRow {
    const c = this.store.containers.resolve(ref);
    if (c === undefined) throw notFound(`no such container: ${ref}`);
    return c;
  }

  private dirs(id: string): { upper: string; work: string; merged: string } {
    const d = this.root.containerDir(id);
    return { upper: path.join(d, 'upper'), work: path.join(d, 'work'), merged: path.join(d, 'merged') };
  }

  /** Parses -v values: NAME:/path[:ro|rw], /host:/path[:ro|rw], or /path (anonymous volume). */
  private parseVolumeFlag(spec: string): MountSpec {
    const parts = spec.split(':');
    if (parts.length === 1) return { type: 'volume', source: '', target: checkContainerPath(parts[0], '-v target'), readonly: false };
    if (parts.length > 3) throw invalid(`invalid -v "${spec}": expected SOURCE:TARGET[:ro]`);
    const [source, target, mode = 'rw'] = parts;
    if (mode !== 'ro' && mode !== 'rw') throw invalid(`invalid -v "${spec}": mode must be ro or rw, got "${mode}"`);
    if (source === '') throw invalid(`invalid -v "${spec}": empty source`);
    const type = source.startsWith('/') ? 'bind' : 'volume';
    if (type === 'volume') checkName('volume', source);
    return { type, source, target: checkContainerPath(target, '-v target'), readonly: mode === 'ro' };
  }

  /** Turns mount specs into stored mounts: volumes created as needed, bind sources checked. */
  private resolveMounts(specs: { spec: MountSpec; fromFlag: boolean }[]): ContainerMount[] {
    const out: ContainerMount[] = [];
    const targets = new Set<string>();
    for (const { spec, fromFlag } of specs) {
      const target = checkContainerPath(spec.target, 'mount target');
      if (target === '/') throw invalid('a mount target cannot be /');
      if (targets.has(target)) throw invalid(`duplicate mount target ${target}`);
      targets.add(target);
      if (spec.type === 'bind') {
        checkHostPath(spec.source, 'bind source');
        if (!path.isAbsolute(spec.source)) throw invalid(`bind source "${spec.source}" must be an absolute path`);
        if (!fs.existsSync(spec.source)) {
          // -v creates a missing host dir, as docker does; --mount insists it exists.
          if (!fromFlag) throw invalid(`bind source path does not exist: ${spec.source}`);
          try {
            mkdirsWithMode(spec.source, 0o755);
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code;
            if (code === 'ENOSPC') throw err;
            throw invalid(`cannot create bind source ${spec.source}: ${code ?? String(err)}`);
          }
        }
        out.push({ ...spec, target, resolvedSource: spec.source });
      } else if (spec.type === 'volume') {
        const v = this.volumes.create({ name: spec.source || undefined }, spec.source === '');
        out.push({ ...spec, source: v.Name, target, resolvedSource: v.Mountpoint });
      } else {
        throw invalid(`unknown mount type "${(spec as MountSpec).type}": use volume or bind`);
      }
    }
    return out;
  }

  create(req: CreateRequest): { id: string; warnings: string[] } {
    if (typeof req.image !== 'string' || req.image === '') throw invalid('an image is required');
    const image = this.images.resolve(req.image);
    const name = req.name ? checkName('container', req.name) : generateName((n) => this.store.containers.resolve(n) !== undefined);
    if (this.store.containers.get(name) !== undefined || this.store.containers.list(true).some((c) => c.name === name)) {
      throw conflict(`the container name "${name}" is already in use`);
    }
    const specs = [
      ...(req.volumes ?? []).map((v) => ({ spec: this.parseVolumeFlag(v), fromFlag: true })),
      ...(req.mounts ?? []).map((m) => ({ spec: m, fromFlag: false })),
    ];
    const mounts = this.resolveMounts(specs);
    const id = randomBytes(32).toString('hex');
    const d = this.dirs(id);
    // The container's own dir is private; upper (the root dir of its filesystem) and work are 0755.
    mkdirsWithMode(this.root.containerDir(id), 0o700);
    for (const p of Object.values(d)) mkdirsWithMode(p, 0o755);
    try {
      this.store.containers.insert(
        { id, name, imageId: image.id, imageRef: req.image, mounts },
        mounts.filter((m) => m.type === 'volume').map((m) => m.source),
      );
    } catch (err) {
      fs.rmSync(this.root.containerDir(id), { recursive: true, force: true });
      throw err;
    }
    this.log.info({ container: id, containerName: name, image: image.id }, 'container created');
    return { id, warnings: [] };
  }

  /** Mount, unmount and remove of one container run one at a time (concurrent API calls would race the worker start). */
  private readonly locks = new Map<string, Promise<void>>();

  private async locked<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    let release!: () => void;
    const done = new Promise<void>((r) => (release = r));
    const mine = prev.then(() => done);
    this.locks.set(id, mine);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.locks.get(id) === mine) this.locks.delete(id);
    }
  }

  async mount(ref: string, at?: string): Promise<string> {
    const id = this.resolve(ref).id;
    return this.locked(id, () => this.mountNow(id, at));
  }

  private async mountNow(ref: string, at?: string): Promise<string> {
    const c = this.resolve(ref);
    if (at !== undefined) checkHostPath(at, 'mount target');
    const custom = at !== undefined && at !== '' && path.resolve(at) !== this.dirs(c.id).merged;
    if (custom && !path.isAbsolute(at)) throw invalid(`mount target "${at}" must be an absolute path`);
    const given = custom ? path.resolve(at) : this.dirs(c.id).merged;
    if (this.mounts.isActive(c.id)) {
      if (c.mountpoint !== null && c.mountpoint !== given && custom) throw conflict(`container ${c.name} is already mounted at ${c.mountpoint}`);
      return c.mountpoint ?? given;
    }
    const target = this.checkMountTarget(given, custom);
    const d = this.dirs(c.id);
    const lowers = this.layers.lowerDirs(this.images.chain(c.imageId).map((l) => l.id));
    const binds: BindSpec[] = c.mounts.map((m) => ({ source: m.resolvedSource, target: m.target, readonly: m.readonly }));
    await this.mounts.mount(c.id, { lowers, upper: d.upper, work: d.work, indexes: this.layers.indexes(lowers) }, target, binds, (merged) => {
      for (const m of c.mounts) {
        try {
          prepareMountpoint(merged, m);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === undefined || code === 'ENOSPC' || !/^E[A-Z]+$/.test(code)) throw err;
          throw invalid(`cannot make the mountpoint ${m.target} in container ${c.name}: ${code} (is a part of it a file in the image?)`);
        }
      }
    });
    this.store.containers.setState(c.id, 'mounted', target);
    return target;
  }

  /**
   * Where a container may be mounted: an existing empty directory that is not a mount point, has
   * nothing mounted below it, and (for a target the client chose) is neither a system directory nor
   * inside the storage root. strata's own dead mounts left there by a crash are cleared first; nothing
   * else is ever unmounted. Returns the target with symlinks resolved.
   */
  private checkMountTarget(given: string, custom: boolean): string {
    if (!custom) fs.mkdirSync(given, { recursive: true, mode: 0o755 });
    clearStale(given);
    let target: string;
    try {
      target = fs.realpathSync(given);
    } catch {
      throw invalid(`mount target ${given} does not exist: create an empty directory first`);
    }
    if (!fs.statSync(target).isDirectory()) throw invalid(`mount target ${given} is not a directory`);
    if (custom) {
      if (isSystemDir(target)) throw invalid(`mount target ${given} is a system directory: pick an empty directory of your own`);
      if (target === this.root.dir || target.startsWith(this.root.dir + '/')) throw invalid(`mount target ${given} is inside the storage root ${this.root.dir}`);
    }
    const below = mountsAtOrBelow(target);
    if (below.some((m) => m.mountPoint === target)) throw invalid(`mount target ${given} is a mount point`);
    if (below.length > 0) throw invalid(`mount target ${given} has something mounted below it (${below[0].mountPoint})`);
    if (custom && fs.readdirSync(target).length > 0) throw invalid(`mount target ${given} is not empty`);
    return target;
  }

  async unmount(ref: string): Promise<void> {
    const id = this.resolve(ref).id;
    return this.locked(id, () => this.unmountNow(id));
  }

  private async unmountNow(ref: string): Promise<void> {
    const c = this.resolve(ref);
    await this.mounts.unmount(c.id);
    if (c.mountpoint !== null) clearStale(c.mountpoint);
    this.store.containers.setState(c.id, 'created');
  }

  /**
   * The empty mountpoints made for volumes and binds in the writable layer (relative paths): not
   * changes of the container, so diff, commit and export leave them out, as docker does. `merged`:
   * only those the image lacks (for a view of the whole root).
   */
  mountpointLeftovers(c: ContainerRow, merged = false): Set<string> {
    const lowers = this.layers.lowerDirs(this.images.chain(c.imageId).map((l) => l.id));
    return mountpointLeftovers(this.dirs(c.id).upper, lowers, c.mounts.map((m) => m.target), merged);
  }

  /** `docker diff`: what the writable layer changed against the image. */
  diff(ref: string): Change[] {
    const c = this.resolve(ref);
    this.mounts.flush(c.id);
    const lowers = this.layers.lowerDirs(this.images.chain(c.imageId).map((l) => l.id));
    const skip = this.mountpointLeftovers(c);
    return layerChanges(this.dirs(c.id).upper, lowers).filter((ch) => !skip.has(ch.path.slice(1)));
  }

  /**
   * Runs `fn` on the container while no mount, unmount, removal or commit of it runs (an export
   * reads its writable layer throughout), its mount's cached writes sent to that layer first.
   */
  async exclusive<T>(ref: string, fn: (c: ContainerRow) => Promise<T>): Promise<T> {
    const id = this.resolve(ref).id;
    return this.locked(id, () => {
      this.mounts.flush(id);
      return fn(this.resolve(id));
    });
  }

  /** The writable layer becomes a new layer on top of the image's chain, in a new image. */
  async commit(ref: string, req: CommitRequest, progress?: ProgressReporter): Promise<string> {
    return this.exclusive(ref, (c) => this.commitNow(c, req, progress));
  }

  private async commitNow(c: ContainerRow, req: CommitRequest, progress?: ProgressReporter): Promise<string> {
    const image = this.images.resolve(c.imageId);
    const target = req.ref ? canonicalRef(req.ref) : undefined;
    const chain = this.images.chain(image.id).map((l) => l.id);
    const createdBy = req.createdBy ?? '';
    // The bytes of the layer's tar as it is made (its size is only known at the end).
    const bar = progress?.bytes(c.id.slice(0, 12), 'Committing', null);
    const upper = { kind: 'upper' as const, path: this.dirs(c.id).upper, exclude: this.mountpointLeftovers(c), onBytes: bar && ((n: number) => bar.add(n)) };
    const layer = await this.layers.create(chain[chain.length - 1] ?? null, upper, createdBy);
    bar?.done();
    const history = [
      ...image.history,
      { created: new Date().toISOString(), createdBy, comment: req.comment ?? '', emptyLayer: false, size: layer.size },
    ];
    const config = { ...image.config, labels: { ...image.config.labels } };
    if (req.author) config.labels['org.opencontainers.image.authors'] = req.author;
    const id = this.images.commitImage({ config, layers: [...chain, layer.id], history, parent: image.id, ref: target });
    this.log.info({ container: c.id, image: id, layer: layer.id }, 'container committed');
    return id;
  }

  async remove(ref: string, force: boolean): Promise<void> {
    const id = this.resolve(ref).id;
    return this.locked(id, () => this.removeNow(id, force));
  }

  private async removeNow(ref: string, force: boolean): Promise<void> {
    const c = this.resolve(ref);
    if (this.mounts.isActive(c.id) || c.state === 'mounted') {
      if (!force) throw conflict(`container ${c.name} is mounted; unmount it first or use -f`);
      await this.unmountNow(c.id);
    }
    this.store.containers.delete(c.id);
    fs.rmSync(this.root.containerDir(c.id), { recursive: true, force: true });
    this.log.info({ container: c.id }, 'container removed');
  }

  summary(c: ContainerRow): ContainerSummary {
    return {
      Id: c.id,
      Name: c.name,
      Image: c.imageRef,
      ImageID: c.imageId,
      State: c.state,
      Mountpoint: c.mountpoint,
      Created: c.created,
      SizeRw: diskUsage(this.dirs(c.id).upper),
      StartedAt: c.started ?? null,
      FinishedAt: c.finished ?? null,
      ExitCode: c.exitCode ?? null,
      MountStatus: this.mounts.mountStatus(c.id),
    };
  }

  /** A process started in the container (`run`). */
  runStarted(id: string): void {
    this.store.containers.setRun(id, nowIso(), null, null);
  }

  /** Its process ended with `exitCode`. */
  runFinished(id: string, exitCode: number | null): void {
    const c = this.resolve(id);
    this.store.containers.setRun(c.id, c.started ?? nowIso(), nowIso(), exitCode);
  }

  list(all: boolean): ContainerSummary[] {
    const rows = this.truthful(this.store.containers.list(true));
    return rows.filter((c) => all || c.state === 'mounted').map((c) => this.summary(c));
  }

  /**
   * Rows as things are: a container recorded as mounted whose mount has left this namespace (an
   * outside umount while another namespace still holds a copy) is not mounted; its unmount is
   * finished in the background (which ends the FUSE connection and records the state).
   */
  private truthful(rows: ContainerRow[]): ContainerRow[] {
    if (!rows.some((c) => c.state === 'mounted')) return rows;
    const mounted = new Set(mountTable().map((m) => m.mountPoint));
    return rows.map((c) => {
      if (c.state !== 'mounted' || this.locks.has(c.id)) return c;
      if (c.mountpoint !== null && this.mounts.isActive(c.id) && mounted.has(c.mountpoint)) return c;
      this.unmount(c.id).catch((err) => this.log.warn({ container: c.id, err: String(err) }, 'unmount of a lost mount failed'));
      return { ...c, state: 'created', mountpoint: null };
    });
  }

  inspect(ref: string): ContainerInspect {
    const c = this.truthful([this.resolve(ref)])[0];
    const d = this.dirs(c.id);
    const s = this.summary(c);
    return {
      Id: s.Id,
      Name: s.Name,
      Created: s.Created,
      Image: s.ImageID,
      Config: { Image: s.Image },
      State: { Status: s.State, Running: s.StartedAt !== null && s.FinishedAt === null, StartedAt: s.StartedAt, FinishedAt: s.FinishedAt, ExitCode: s.ExitCode, MountStatus: s.MountStatus ?? null },
      Mountpoint: s.Mountpoint,
      SizeRw: s.SizeRw,
      GraphDriver: {
        Name: 'strata-fuse',
        Data: {
          LowerDir: this.layers.lowerDirs(this.images.chain(c.imageId).map((l) => l.id)).join(':'),
          UpperDir: d.upper,
          MergedDir: s.Mountpoint ?? d.merged,
          WorkDir: d.work,
        },
      },
      Mounts: c.mounts.map((m) => ({
        Type: m.type,
        ...(m.type === 'volume' ? { Name: m.source } : {}),
        Source: m.resolvedSource,
        Destination: m.target,
        RW: !m.readonly,
      })),
    };
  }

  /** Its mount, kept alive by the fd holder, is served by this process now. */
  markTakenOver(id: string, mountpoint: string): void {
    if (this.store.containers.get(id) !== undefined) this.store.containers.setState(id, 'mounted', mountpoint);
  }

  /** A mount that vanished under us: the container is no longer mounted. */
  markLost(id: string): void {
    if (this.store.containers.get(id) !== undefined) this.store.containers.setState(id, 'created');
  }

  /**
   * Start-up after a crash: dead FUSE mounts of mounted containers are cleared
   * and the containers mounted again; stray mounts of the others are cleared.
   */
  async recover(): Promise<{ remounted: string[]; failed: string[] }> {
    const remounted: string[] = [];
    const failed: string[] = [];
    for (const c of this.store.containers.list(true)) {
      if (this.mounts.isActive(c.id)) continue; // taken over from the fd holder: served, nothing to recover
      clearStale(this.dirs(c.id).merged);
      if (c.mountpoint !== null) clearStale(c.mountpoint);
      fs.rmSync(this.dirs(c.id).work + '/work', { recursive: true, force: true });
      if (c.state !== 'mounted') continue;
      try {
        await this.mount(c.id, c.mountpoint ?? undefined);
        remounted.push(c.id);
      } catch (err) {
        this.log.error({ container: c.id, err: String(err) }, 'remount after restart failed');
        this.mounts.noteLost(c.id);
        this.store.containers.setState(c.id, 'created');
        failed.push(c.id);
      }
    }
    return { remounted, failed };
  }
}

/** Directories a container is never mounted on: the host's own, and anything below the kernel's and the system's. */
const SYSTEM_DIRS = new Set(['/', '/home', '/media', '/mnt', '/opt', '/root', '/srv', '/tmp', '/var', '/var/lib', '/var/log', '/var/tmp', '/var/cache', '/var/spool', '/var/mail', '/var/run', '/usr/local']);
const SYSTEM_TREES = ['/bin', '/boot', '/dev', '/etc', '/lib', '/lib32', '/lib64', '/libx32', '/proc', '/run', '/sbin', '/sys', '/usr'];

function isSystemDir(p: string): boolean {
  return SYSTEM_DIRS.has(p) || SYSTEM_TREES.some((t) => p === t || p.startsWith(t + '/'));
}

/**
 * Creates the mountpoint of a volume or bind inside the merged root (in the
 * writable layer, as docker does) and fills an empty volume with what the image
 * has at that path.
 */
function prepareMountpoint(merged: string, m: ContainerMount): void {
  const at = merged + m.target;
  const sourceIsDir = fs.statSync(m.resolvedSource).isDirectory();
  if (!fs.existsSync(at)) {
    if (sourceIsDir) mkdirsWithMode(at, 0o755);
    else {
      mkdirsWithMode(path.dirname(at), 0o755);
      fs.writeFileSync(at, '', { mode: 0o644 });
      fs.chmodSync(at, 0o644);
    }
    return;
  }
  if (m.type === 'volume' && sourceIsDir && fs.readdirSync(m.resolvedSource).length === 0 && fs.statSync(at).isDirectory()) {
    fs.cpSync(at, m.resolvedSource, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
  }
}
