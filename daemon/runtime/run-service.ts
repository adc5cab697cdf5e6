// `strata run` and `strata exec` on the daemon's side: the client runs runc itself (so the
// container's terminal and signals are its own); the daemon prepares the container (create, mount,
// bundle), records how the run ended, removes what a `--rm` run leaves, and tells exec what the
// container's process was started with.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ContainerService } from '../containers/containers';
import { mkdirInRoot } from '../builder/context';
import type { ImageService } from '../images/images';
import { conflict, invalid } from '../model/errors';
import type { ExecInfo, RunPrepareRequest, RunPrepareResponse } from '../model/types-build-run';
import type { StorageRoot } from '../root/storage-root';
import type { VolumeService } from '../volumes/volumes';
import { runcDelete, runcRoot, runcState } from './runc';
import { mergeEnv, processEnv, resolveUser, writeBundle } from './spec';

export interface RunDeps {
  root: StorageRoot;
  images: ImageService;
  containers: ContainerService;
  volumes: VolumeService;
}

export class RunService {
  constructor(private readonly d: RunDeps) {}

  private bundleDir(id: string): string {
    return path.join(this.d.root.containerDir(id), 'bundle');
  }

  /** Creates and mounts the container and writes its runc bundle; the run counts as started. */
  async prepare(req: RunPrepareRequest): Promise<RunPrepareResponse> {
    if (req.network !== undefined && req.network !== 'host' && req.network !== 'none' && req.network !== 'default') {
      throw invalid(`unsupported network "${req.network}": use host or none`);
    }
    const { images, containers } = this.d;
    const image = images.resolve(req.image);
    const cfg = image.config;
    // The image's VOLUMEs get anonymous volumes unless something else is mounted there.
    const taken = new Set([...(req.mounts ?? []).map((m) => path.posix.normalize(m.target)), ...(req.volumes ?? []).map((v) => path.posix.normalize(v.split(':')[v.includes(':') ? 1 : 0]))]);
    const anon = (cfg.volumes ?? []).filter((v) => !taken.has(path.posix.normalize(v)));
    const created = containers.create({ image: req.image, name: req.name, volumes: [...(req.volumes ?? []), ...anon], mounts: req.mounts });
    const id = created.id;
    let prepared: RunPrepareResponse;
    try {
      const merged = await containers.mount(id);
      const c = containers.resolve(id);
      let user;
      try {
        user = resolveUser(merged, req.user ?? cfg.user);
      } catch (err) {
        throw invalid(err instanceof Error ? err.message : String(err));
      }
      const cwd = req.workdir ? path.posix.resolve(cfg.workingDir || '/', req.workdir) : cfg.workingDir || '/';
      mkdirInRoot(merged, cwd, null);
      const entrypoint = req.entrypoint !== undefined ? (req.entrypoint === '' ? [] : [req.entrypoint]) : (cfg.entrypoint ?? []);
      const cmd = req.cmd && req.cmd.length ? req.cmd : req.entrypoint !== undefined ? [] : (cfg.cmd ?? []);
      const args = [...entrypoint, ...cmd];
      if (args.length === 0) throw invalid('no command specified: the image has no CMD or ENTRYPOINT; give one after the image name');
      const env = processEnv(mergeEnv(cfg.env, req.tty ? ['TERM=xterm'] : [], (req.env ?? []).filter((e) => e.includes('='))), user);
      const bundle = this.bundleDir(id);
      writeBundle(bundle, {
        rootfs: merged,
        args,
        env,
        cwd,
        user,
        terminal: req.tty === true,
        hostNetwork: req.network === 'host',
        hostname: req.hostname || id.slice(0, 12),
      });
      runcDelete(id); // a stale state dir of an earlier life would make `runc run` refuse the id
      prepared = { id, name: c.name, bundle, runcRoot: runcRoot(), runcId: id, args };
    } catch (err) {
      await containers.remove(id, true).catch(() => undefined);
      throw err;
    }
    containers.runStarted(id);
    return prepared;
  }

  /** Records the run's end; `remove` (--rm) also removes the container and its anonymous volumes. */
  async finish(ref: string, exitCode: number | null, remove: boolean): Promise<void> {
    const { containers, volumes } = this.d;
    const c = containers.resolve(ref);
    runcDelete(c.id);
    containers.runFinished(c.id, exitCode);
    fs.rmSync(this.bundleDir(c.id), { recursive: true, force: true });
    if (!remove) {
      await containers.unmount(c.id);
      return;
    }
    const anon = c.mounts.filter((m) => m.type === 'volume').map((m) => m.source);
    await containers.remove(c.id, true);
    for (const v of anon) {
      try {
        if (volumes.get(v).Anonymous) volumes.remove(v);
      } catch {
        // in use elsewhere, or already gone
      }
    }
  }

  /** What `exec` needs to join a running container: its runc id and its process's env, cwd and user. */
  execInfo(ref: string): ExecInfo {
    const c = this.d.containers.resolve(ref);
    if (runcState(c.id) !== 'running') throw conflict(`container ${c.name} is not running`);
    let proc: { env?: string[]; cwd?: string; user?: { uid: number; gid: number } } = {};
    try {
      proc = (JSON.parse(fs.readFileSync(path.join(this.bundleDir(c.id), 'config.json'), 'utf8')) as { process: typeof proc }).process;
    } catch {
      // no bundle: runc's own state still has what exec needs
    }
    return {
      id: c.id,
      runcId: c.id,
      runcRoot: runcRoot(),
      env: proc.env ?? [],
      cwd: proc.cwd ?? '/',
      user: proc.user ? `${proc.user.uid}:${proc.user.gid}` : '0:0',
    };
  }
}
