// mkdir -p with an exact mode: each directory it creates gets `mode` whatever the process umask.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Creates `dir` and its missing parents with `mode` (chmod after mkdir); returns those it created, top first. */
export function mkdirsWithMode(dir: string, mode: number): string[] {
  const missing: string[] = [];
  for (let d = path.resolve(dir); !fs.existsSync(d); d = path.dirname(d)) missing.unshift(d);
  for (const d of missing) {
    try {
      fs.mkdirSync(d, { mode });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      continue; // made meanwhile by someone else: not ours to chmod
    }
    fs.chmodSync(d, mode);
  }
  return missing;
}
