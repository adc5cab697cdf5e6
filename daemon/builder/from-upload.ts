// A build as the API receives it: the context arrives as a tar, is extracted into a temp dir of
// the daemon's own (the build reads only that copy), built, and removed.
import * as fs from 'node:fs';
import type { Readable } from 'node:stream';
import { extractLayer } from '../archive';
import { invalid } from '../model/errors';
import type { ProgressReporter } from '../model/progress';
import type { BuildResult } from '../model/types-build-run';
import { parseRef } from '../model/validate';
import { Builder, type BuildDeps, type BuildSpec } from './builder';

export type UploadBuildSpec = Omit<BuildSpec, 'context'>;

/** Refuses a spec before anything streams (the client gets a plain error). */
export function checkBuildSpec(spec: UploadBuildSpec): void {
  for (const t of spec.tags ?? []) parseRef(t);
  if (spec.network !== undefined && spec.network !== 'host' && spec.network !== 'none' && spec.network !== 'default') {
    throw invalid(`unsupported network "${spec.network}": use host or none`);
  }
}

export async function buildFromTar(d: BuildDeps, tar: Readable, spec: UploadBuildSpec, p: ProgressReporter, signal: AbortSignal): Promise<BuildResult> {
  const context = d.root.tempDir('context');
  try {
    await extractLayer(tar, context);
    const done = await new Builder(d, { ...spec, context }, (text) => p.text(text), signal, p).run();
    d.log.info({ image: done.id, tags: done.tags }, 'image built');
    return { id: done.id, tags: done.tags };
  } finally {
    fs.rmSync(context, { recursive: true, force: true });
  }
}
