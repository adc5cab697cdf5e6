// The CLI's version: package.json's, read where it is asked for.
import * as fs from 'node:fs';
import * as path from 'node:path';

export function version(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
