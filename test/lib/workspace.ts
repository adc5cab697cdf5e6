// Per-test temporary workspaces under /tmp/strata-test/<random>.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import * as os from 'node:os';
import { rmTree, unmountUnder } from './mount-table';

import { TEST_ROOT } from './env';

export { TEST_ROOT };

/** Workspaces of this process not yet removed: cleaned on exit and on SIGTERM/SIGINT/SIGHUP (e.g. tap timeouts). */
const live = new Set<string>();
let hooked = false;
function hookProcessExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const d of [...live]) removeWorkspace(d, true);
  });
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const d of [...live]) removeWorkspace(d, true);
      process.exit(128 + (os.constants.signals[sig] ?? 15));
    });
  }
}

/** Minimal subset of the tap Test object the helpers need. */
export interface TestLike {
  teardown(fn: () => unknown): void;
  comment(...args: unknown[]): void;
}

/**
 * Create a fresh workspace directory (mode 0755 so unprivileged test users can traverse it)
 * and register its removal. Teardowns run LIFO, so mounts registered later are unmounted first;
 * removal additionally lazily unmounts anything still mounted below the workspace.
 */
export function makeWorkspace(t: TestLike, label = 'ws'): string {
  fs.mkdirSync(TEST_ROOT, { recursive: true, mode: 0o755 });
  fs.chmodSync(TEST_ROOT, 0o755);
  const dir = path.join(TEST_ROOT, `${label}-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
  fs.mkdirSync(dir, { mode: 0o755 });
  fs.chmodSync(dir, 0o755);
  hookProcessExit();
  live.add(dir);
  t.teardown(() => removeWorkspace(dir));
  return dir;
}

export function removeWorkspace(dir: string, lazy = false): void {
  live.delete(dir);
  try {
    unmountUnder(dir, lazy);
    if (process.env.STRATA_KEEP_WORKSPACE) return;
    rmTree(dir);
  } catch (e) {
    // teardown must never throw (a throwing teardown cancels the remaining ones)
    console.error(`# workspace cleanup of ${dir} failed: ${String(e)}`);
  }
}
