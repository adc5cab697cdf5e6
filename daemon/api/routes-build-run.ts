// Routes for build, run and exec (types: types-build-run.ts).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { extractLayer } from '../archive';
import { Builder, BuildFailure, type BuildSpec } from '../build/builder';
import { mkdirInRoot } from '../build/context';
import { DockerfileError } from '../build/dockerfile';
import { runcDelete, runcRoot, runcState } from '../runtime/runc';
import { mergeEnv, processEnv, resolveUser, UserError, writeBundle } from '../runtime/spec';
import { invalid, conflict } from '../model/errors';
import { toApiError } from './errors';
import { parseRef } from '../model/validate';
import { jsonErrorWhere } from '../util/json-error';
import { flag, mountSpecs, query, str, strings, type Services } from './routes';
import { progressStream } from './progress';
import type { ApiRequest, Router } from './server';
import type { MountSpec } from '../model/types';
import type { BuildResult, ExecInfo, RunPrepareRequest, RunPrepareResponse } from '../model/types-build-run';

function bool(req: ApiRequest, key: string): boolean {
  const v = req.body[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw invalid(`"${key}" must be a boolean`);
  return v;
}

function bundleDir(s: Services, id: string): string {
  return path.join(s.root.containerDir(id), 'bundle');
}

async function prepareRun(s: Services, req: RunPrepareRequest): Promise<RunPrepareResponse> {
  const image = s.images.resolve(req.image);
  const cfg = image.config;
  // The image's VOLUMEs get anonymous volumes unless something else is mounted there.
  const taken = new Set([...(req.mounts ?? []).map((m) => path.posix.normalize(m.target)), ...(req.volumes ?? []).map((v) => path.posix.normalize(v.split(':')[v.includes(':') ? 1 : 0]))]);
  const anon = (cfg.volumes ?? []).filter((v) => !taken.has(path.posix.normalize(v)));
  const created = s.containers.create({ image: req.image, name: req.name, volumes: [...(req.volumes ?? []), ...anon], mounts: req.mounts });
  const id = created.id;
  try {
    const merged = await s.containers.mount(id);
    const c = s.containers.resolve(id);
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
    const bundle = bundleDir(s, id);
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
    return { id, name: c.name, bundle, runcRoot: runcRoot(), runcId: id, args };
  } catch (err) {
    await s.containers.remove(id, true).catch(() => undefined);
    throw err;
  }
}

export function registerBuildRunRoutes(r: Router, s: Services): void {
  r.add(
    'POST',
    '/build',
    (req) => {
      let buildArgs: Record<string, string> | undefined;
      const rawArgs = query(req, 'buildargs');
      if (rawArgs !== undefined) {
        try {
          buildArgs = JSON.parse(rawArgs) as Record<string, string>;
        } catch (err) {
          throw invalid(`query parameter "buildargs" is not valid JSON: syntax error${jsonErrorWhere(err)}`);
        }
        if (buildArgs === null || typeof buildArgs !== 'object' || Array.isArray(buildArgs) || Object.values(buildArgs).some((v) => typeof v !== 'string')) {
          throw invalid('query parameter "buildargs" must be a JSON object of strings');
        }
      }
      const spec: Omit<BuildSpec, 'context'> = {
        dockerfile: query(req, 'dockerfile'),
        dockerfileName: query(req, 'dockerfileName'),
        tags: req.query.getAll('t'),
        noCache: flag(req, 'nocache'),
        buildArgs,
        network: query(req, 'network'),
      };
      for (const t of spec.tags ?? []) parseRef(t);
      if (spec.network !== undefined && spec.network !== 'host' && spec.network !== 'none' && spec.network !== 'default') {
        throw invalid(`unsupported network "${spec.network}": use host or none`);
      }
      return progressStream(
        async (p, signal) => {
          // The context arrives as a tar; the build reads the daemon's own copy of it.
          const context = s.root.tempDir('context');
          try {
            await extractLayer(req.upload, context);
            const done = await new Builder(s, { ...spec, context }, (text) => p.text(text), signal, p).run();
            s.log.info({ image: done.id, tags: done.tags }, 'image built');
            const result: BuildResult = { id: done.id, tags: done.tags };
            return result;
          } finally {
            fs.rmSync(context, { recursive: true, force: true });
          }
        },
        {
          errorOf: (err) => {
            const code = err instanceof BuildFailure ? err.code : 1;
            const { status, message } = toApiError(err);
            if (!(err instanceof BuildFailure || err instanceof DockerfileError || err instanceof UserError) && status >= 500) {
              s.log.warn({ err: err instanceof Error ? err.stack : err }, 'build failed');
            }
            return { error: message, code };
          },
        },
      );
    },
    { upload: true },
  );

  r.add('POST', '/run/prepare', async (req) => {
    const body: RunPrepareRequest = {
      image: str(req, 'image', true),
      name: str(req, 'name'),
      volumes: strings(req, 'volumes'),
      mounts: mountSpecs(req),
      env: strings(req, 'env'),
      workdir: str(req, 'workdir'),
      user: str(req, 'user'),
      cmd: strings(req, 'cmd'),
      entrypoint: str(req, 'entrypoint'),
      tty: bool(req, 'tty'),
      network: str(req, 'network'),
      hostname: str(req, 'hostname'),
    };
    if (body.network !== undefined && body.network !== 'host' && body.network !== 'none' && body.network !== 'default') {
      throw invalid(`unsupported network "${body.network}": use host or none`);
    }
    const prepared = await prepareRun(s, body);
    s.containers.runStarted(prepared.id);
    return prepared;
  });

  r.add('POST', '/run/:id/finish', async (req) => {
    const c = s.containers.resolve(req.params.id);
    const code: unknown = req.body.exitCode;
    if (code !== undefined && code !== null && !Number.isInteger(code)) throw invalid('"exitCode" must be an integer');
    runcDelete(c.id);
    s.containers.runFinished(c.id, (code as number | null | undefined) ?? null);
    fs.rmSync(bundleDir(s, c.id), { recursive: true, force: true });
    if (bool(req, 'remove') || flag(req, 'remove')) {
      const anon = c.mounts.filter((m) => m.type === 'volume').map((m) => m.source);
      await s.containers.remove(c.id, true);
      for (const v of anon) {
        try {
          if (s.volumes.get(v).Anonymous) s.volumes.remove(v);
        } catch {
          // in use elsewhere, or already gone
        }
      }
    } else {
      await s.containers.unmount(c.id);
    }
    return {};
  });

  r.add('GET', '/containers/:id/exec', (req): ExecInfo => {
    const c = s.containers.resolve(req.params.id);
    const state = runcState(c.id);
    if (state !== 'running') throw conflict(`container ${c.name} is not running`);
    let proc: { env?: string[]; cwd?: string; user?: { uid: number; gid: number } } = {};
    try {
      proc = (JSON.parse(fs.readFileSync(path.join(bundleDir(s, c.id), 'config.json'), 'utf8')) as { process: typeof proc }).process;
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
  });
}

