// Entry point the FUSE worker loads: builds the union filesystem for one mount.
import type { FuseFilesystem } from '../fuse/filesystem';
import type { Logger } from '../log';
import type { UnionConfig } from './config';
import { UnionFs } from './union-fs';

export function createFilesystem(config: UnionConfig, log?: Logger): FuseFilesystem {
  return new UnionFs(config, log);
}

export { UnionFs };
export type { UnionConfig };
