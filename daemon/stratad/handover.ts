// Hot upgrade: a new stratad started with --upgrade on a root another stratad serves asks that one
// to hand over: it writes the old daemon's pid into run/handover and sends it SIGTERM; the old
// daemon, seeing its pid there, stops serving without unmounting (as with --live-restore) and
// releases the root; the new one takes the root and takes the mounts over from the fd holder.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../log';
import { RootLockedError, type StorageRoot } from '../root/storage-root';

const HANDOVER_WAIT_MS = 10_000;

function handoverFile(root: StorageRoot): string {
  return path.join(root.dir, 'run', 'handover');
}

/** True when a new stratad asked this process to hand its mounts over. */
export function handoverRequested(root: StorageRoot): boolean {
  try {
    return Number(fs.readFileSync(handoverFile(root), 'utf8').trim()) === process.pid;
  } catch {
    return false;
  }
}

/** Asks the stratad holding `root` to hand over, and waits until it has let the root go. */
export async function askToHandOver(root: StorageRoot, log: Logger): Promise<void> {
  const lock = path.join(root.dir, 'stratad.lock');
  const pid = Number(fs.existsSync(lock) ? fs.readFileSync(lock, 'utf8').trim() : NaN);
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return; // nobody to take over from: a plain start
  fs.mkdirSync(path.dirname(handoverFile(root)), { recursive: true, mode: 0o700 });
  fs.writeFileSync(handoverFile(root), `${pid}\n`, { mode: 0o600 });
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return; // gone already
  }
  log.info({ pid }, 'asked the running stratad to hand over');
  const deadline = Date.now() + HANDOVER_WAIT_MS;
  for (;;) {
    try {
      root.open();
      root.close(); // taken again by the caller
      return;
    } catch (err) {
      if (!(err instanceof RootLockedError)) throw err;
      if (Date.now() > deadline) throw new Error(`the stratad running on ${root.dir} (pid ${pid}) did not hand over within ${HANDOVER_WAIT_MS / 1000} s`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The handover is complete: the request goes. */
export function handoverDone(root: StorageRoot): void {
  fs.rmSync(handoverFile(root), { force: true });
}
