// Routes for build, run and exec (types: daemon/model/types-build-run.ts).
import { BuildFailure } from '../builder/builder';
import { DockerfileError } from '../builder/dockerfile';
import { buildFromTar, checkBuildSpec, type UploadBuildSpec } from '../builder/from-upload';
import { invalid } from '../model/errors';
import type { ExecInfo, RunPrepareRequest } from '../model/types-build-run';
import { UserError } from '../runtime/spec';
import { toApiError } from './errors';
import { progressStream } from './progress';
import { bool, flag, jsonRecordQuery, mountSpecs, query, str, strings } from './request';
import type { Router } from './server';
import type { Services } from './services';

export function registerBuildRunRoutes(r: Router, s: Services): void {
  r.add(
    'POST',
    '/build',
    (req) => {
      const spec: UploadBuildSpec = {
        dockerfile: query(req, 'dockerfile'),
        dockerfileName: query(req, 'dockerfileName'),
        tags: req.query.getAll('t'),
        noCache: flag(req, 'nocache'),
        buildArgs: jsonRecordQuery(req, 'buildargs'),
        network: query(req, 'network'),
      };
      checkBuildSpec(spec);
      return progressStream((p, signal) => buildFromTar(s, req.upload, spec, p, signal), {
        // the final line carries the failing command's exit code, as docker build's
        errorOf: (err) => {
          const code = err instanceof BuildFailure ? err.code : 1;
          const { status, message } = toApiError(err);
          if (!(err instanceof BuildFailure || err instanceof DockerfileError || err instanceof UserError) && status >= 500) {
            s.log.warn({ err: err instanceof Error ? err.stack : err }, 'build failed');
          }
          return { error: message, code };
        },
      });
    },
    { upload: true },
  );

  r.add('POST', '/run/prepare', (req) => {
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
    return s.runs.prepare(body);
  });

  r.add('POST', '/run/:id/finish', async (req) => {
    const code: unknown = req.body.exitCode;
    if (code !== undefined && code !== null && !Number.isInteger(code)) throw invalid('"exitCode" must be an integer');
    await s.runs.finish(req.params.id, (code as number | null | undefined) ?? null, bool(req, 'remove') || flag(req, 'remove'));
    return {};
  });

  r.add('GET', '/containers/:id/exec', (req): ExecInfo => s.runs.execInfo(req.params.id));
}
