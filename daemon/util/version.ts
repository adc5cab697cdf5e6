// strata's version, as package.json gives it: found upwards from the running file, so the daemon,
// strata-mount and the CLI bundle (dist/cli/strata.js) all read the same one.
import * as fs from 'node:fs';
import * as path from 'node:path';

export function packageVersion(): string {
  for (let d = __dirname; ; d = path.dirname(d)) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(d, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'strata') return pkg.version ?? 'unknown';
    } catch {
      // none here: look further up
    }
    if (path.dirname(d) === d) return 'unknown';
  }
}
