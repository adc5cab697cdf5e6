// stratad: the strata daemon. Owns the storage root, serves the API on a Unix
// socket, and serves every container's union mount from one pool of FUSE threads.
//
// Start-up takes the mounts kept by the fd holder over first, with only the modules that needs
// loaded; SQLite, the services and the API are loaded after (processes in the containers wait
// meanwhile).
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { ContainerService } from '../containers/containers';
import { createLogger, type Logger } from '../log';
import { MountManager, clearStale } from '../mounts/mount-manager';
import { configureEngine, fuseEngine } from '../mounts/union-mount';
import { TakeoverRecord, takeOverMounts } from '../mounts/takeover';
import { HolderClient, holderSocketPath } from '../holder/client';
import { USAGE, UsageError, parseDaemonArgs, type DaemonArgs } from './args';
import { askToHandOver, handoverDone, handoverRequested } from './handover';
import { DEFAULT_SOCKET } from '../model/types';
import { packageVersion } from '../util/version';
import { StorageRoot } from '../root/storage-root';

/** SIGTERM to exit, at most (unmounts run in parallel, each bounded: mount-manager.ts). */
const SHUTDOWN_LIMIT_MS = 4_500;

const FS_NAMES: Record<number, string> = { 0xef53: 'extfs', 0x58465342: 'xfs', 0x9123683e: 'btrfs', 0x01021994: 'tmpfs', 0x2fc12fc1: 'zfs', 0x794c7630: 'overlayfs' };

/** Refuses a socket path another live daemon answers on; removes a stale socket file. */
async function claimSocket(socket: string): Promise<void> {
  const dir = path.dirname(socket);
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  // Group members must reach the socket: the default /run/strata must be traversable
  // (an older runc state dir created it 0700).
  if (dir === path.dirname(DEFAULT_SOCKET) && (fs.statSync(dir).mode & 0o011) !== 0o011) fs.chmodSync(dir, 0o755);
  if (!fs.existsSync(socket)) return;
  const live = await new Promise<boolean>((resolve) => {
    const c = net.connect(socket);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (live) throw new Error(`another daemon is already listening on ${socket}; stop it or pass --socket`);
  fs.rmSync(socket, { force: true });
}

/** 0660, group `strata` when that group exists: members may use strata, others are refused. */
function restrictSocket(socket: string, log: Logger): void {
  fs.chmodSync(socket, 0o660);
  const line = fs
    .readFileSync('/etc/group', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('strata:'));
  if (line !== undefined) {
    const gid = Number(line.split(':')[2]);
    fs.chownSync(socket, 0, gid);
    log.info({ socket, gid }, 'socket group is strata');
  }
}

/**
 * Listens on `socket` without a moment where others may connect: the socket is bound in a fresh 0700
 * directory, restricted, then linked into place. (Binding in place leaves it 0777 until the chmod, as
 * mounts set the process umask to 0, and a connection made in that window outlives the chmod.)
 */
async function listenPrivately(server: net.Server, socket: string, log: Logger): Promise<void> {
  const staging = fs.mkdtempSync(path.join(path.dirname(socket), '.stratad-'));
  const tmp = path.join(staging, 's');
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(tmp, resolve);
    });
    restrictSocket(tmp, log);
    try {
      fs.linkSync(tmp, socket); // unlike rename, never replaces a socket another daemon just made
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new Error(`another daemon is already listening on ${socket}; stop it or pass --socket`);
      throw err;
    }
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}

function commandLine(): DaemonArgs {
  try {
    const a = parseDaemonArgs(process.argv.slice(2));
    if (a === 'help') process.stdout.write(USAGE);
    if (a === 'version') process.stdout.write(`${packageVersion()}\n`);
    if (typeof a === 'string') process.exit(0);
    return a;
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`${USAGE}\nstratad: ${err.message}\n`);
    process.exit(2);
  }
}

async function main(): Promise<void> {
  const startedAt = performance.now();
  const argv = commandLine();
  const log = createLogger('stratad', { level: argv.logLevel, file: argv.logFile });
  configureEngine({ threads: argv.fuseThreads, logLevel: argv.logLevel, logFile: argv.logFile });
  const root = new StorageRoot(path.resolve(argv.root));
  if (argv.upgrade) await askToHandOver(root, log);
  root.open();

  // Mounts kept alive by the fd holder are served again before anything looks at them: a stat of
  // a mount nobody serves waits. Without a holder they were lost with it (a reboot, or the holder
  // killed): their journals go, and recovery below mounts them afresh.
  const runDir = path.join(root.dir, 'run');
  fs.mkdirSync(runDir, { recursive: true, mode: 0o700 });
  const journalDir = path.join(runDir, 'journals');
  const holderSocket = holderSocketPath(root.dir);
  let holder = HolderClient.existing(holderSocket);
  if (holder === null) fs.rmSync(journalDir, { recursive: true, force: true });
  holder ??= HolderClient.connect(holderSocket);
  const takeovers = new TakeoverRecord(runDir);
  let containers: ContainerService | undefined;
  const mounts = new MountManager(log, (id) => containers?.markLost(id), { level: argv.logLevel, file: argv.logFile });
  mounts.keepIn(holder, journalDir);
  // A container that was removed has no directory any more: its kept mount, if any, is ended.
  const taken = await takeOverMounts(holder, mounts, (id) => fs.existsSync(root.containerDir(id)), log);
  if (taken.resumed.length > 0) takeovers.add(Math.round(performance.now() - startedAt), taken.resumed.length);
  handoverDone(root);

  const { Store } = await import('../store');
  const { LayerStore } = await import('../layers/layer-store');
  const { ImageService } = await import('../images/images');
  const { VolumeService } = await import('../volumes/volumes');
  const { ContainerService } = await import('../containers/containers');
  const { buildRouter } = await import('../api/routes');
  const { createApiServer } = await import('../api/server');
  const { RunService } = await import('../runtime/run-service');
  const store = Store.open(root.database);

  // Leftovers of a crash: mounts of interrupted builds, temp dirs, half-written layers.
  const stillMounted = clearStale(root.tmp).map((m) => m.mountPoint);
  for (const e of fs.readdirSync(root.tmp)) {
    const p = path.join(root.tmp, e);
    // never remove through a mount that could not be cleared (it is not ours)
    if (stillMounted.some((m) => m === p || m.startsWith(p + '/'))) log.warn({ path: p }, 'left in tmp: something is mounted there');
    else fs.rmSync(p, { recursive: true, force: true });
  }
  const layers = new LayerStore(root, store);
  const swept = layers.sweepIncomplete();
  if (swept.length) log.warn({ layers: swept }, 'removed incomplete layers');

  const images = new ImageService(store, layers, log);
  const volumes = new VolumeService(root, store, log);
  containers = new ContainerService(root, store, images, layers, volumes, mounts, log);
  for (const r of taken.resumed) {
    // Lost while being taken over: recovery below mounts it afresh.
    const at = mounts.mountpointOf(r.id);
    if (at !== undefined) containers.markTakenOver(r.id, at);
  }
  // Refuse a live socket before recovery remounts anything this process would then abandon.
  const socket = path.resolve(argv.socket);
  await claimSocket(socket);
  const recovered = await containers.recover();
  if (recovered.remounted.length || recovered.failed.length) log.info(recovered, 'containers recovered after restart');

  const fsType = fs.statfsSync(root.dir).type;
  const router = buildRouter({ root, store, images, containers, volumes, runs: new RunService({ root, images, containers, volumes }), mounts, layers, log, version: packageVersion(), backingFilesystem: FS_NAMES[fsType] ?? `0x${fsType.toString(16)}`, engine: () => {
    const e = fuseEngine().stats();
    const t = takeovers.read();
    return {
      Threads: e.threads,
      MaxThreads: fuseEngine().size,
      MountsServed: mounts.count,
      LiveRestore: argv.liveRestore,
      HolderPid: holder.pid,
      Takeovers: t.takeovers,
      LastTakeover: t.last && { At: t.last.at, Ms: t.last.ms, Mounts: t.last.mounts },
    };
  }, certsDir: path.resolve(argv.certsDir), insecureRegistries: argv.insecureRegistry });
  const server = createApiServer(router, log);
  await listenPrivately(server, socket, log);
  log.info({ root: root.dir, socket }, 'stratad ready'); // pino adds pid itself

  let stopping = false;
  const stop = async (reason: string, code: number) => {
    if (stopping) return;
    stopping = true;
    // Whatever happens below, the process ends within a bound: a daemon that cannot finish
    // stopping must not linger holding the root's lock.
    setTimeout(() => {
      log.error({ reason }, 'shutdown took too long; exiting');
      process.exit(code || 1);
    }, SHUTDOWN_LIMIT_MS).unref();
    log.info({ reason }, 'stopping');
    server.close();
    server.closeAllConnections();
    // Live restore, or an upgrade taking over: the mounts stay, kept by the holder for the next stratad.
    if ((argv.liveRestore && code === 0) || handoverRequested(root)) {
      mounts.leaveMounted();
      await fuseEngine().quit(); // before the root is let go: the next stratad must be the only server
      log.info({ reason }, 'mounts left served for the next stratad');
    } else {
      await mounts.unmountAll();
    }
    holder.close();
    store.close();
    root.close();
    fs.rmSync(socket, { force: true });
    log.info('stopped');
    process.exit(code);
  };
  process.on('SIGTERM', () => void stop('SIGTERM', 0));
  process.on('SIGINT', () => void stop('SIGINT', 0));
  // A daemon that can no longer serve exits (unmounting what it can) so that it can be restarted.
  const fatal = (what: string) => (err: unknown) => {
    log.fatal({ err: err instanceof Error ? err.stack : String(err) }, what);
    void stop(what, 70);
  };
  process.on('uncaughtException', fatal('uncaught exception'));
  process.on('unhandledRejection', fatal('unhandled rejection'));
  server.on('error', fatal('API server error'));
  server.on('close', () => {
    if (!stopping) fatal('API server closed')(new Error('the listening socket was closed'));
  });
}

main().catch((err: Error) => {
  process.stderr.write(`stratad: ${err.message}\n`);
  process.exit(1);
});
