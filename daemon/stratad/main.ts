// stratad: the strata daemon. Owns the storage root, serves the API on a Unix
// socket, and serves every container's union mount from one pool of FUSE threads.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import yargs from 'yargs';
import { buildRouter } from '../api/routes';
import { createApiServer } from '../api/server';
import { RunService } from '../runtime/run-service';
import { DEFAULT_SOCKET } from '../model/types';
import { packageVersion } from '../util/version';
import { ContainerService } from '../containers/containers';
import { ImageService } from '../images/images';
import { LayerStore } from '../layers/layer-store';
import { createLogger, type Logger } from '../log';
import { MountManager, clearStale } from '../mounts/mount-manager';
import { configureEngine } from '../mounts/union-mount';
import { Store } from '../store';
import { VolumeService } from '../volumes/volumes';
import { StorageRoot } from '../root/storage-root';

const DEFAULT_ROOT = '/var/lib/strata';
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

async function main(): Promise<void> {
  const argv = yargs(process.argv.slice(2))
    .scriptName('stratad')
    .usage('$0 [options]: the strata daemon')
    .option('root', { type: 'string', default: process.env.STRATA_ROOT ?? DEFAULT_ROOT, describe: 'storage root (env STRATA_ROOT)' })
    .option('socket', { type: 'string', default: process.env.STRATA_SOCKET ?? DEFAULT_SOCKET, describe: 'API socket (env STRATA_SOCKET)' })
    .option('log-level', { type: 'string', default: process.env.STRATA_LOG_LEVEL ?? 'info', choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] })
    .option('log-file', { type: 'string', describe: 'also write logs here (JSON lines)' })
    .option('insecure-registry', { type: 'string', array: true, default: [] as string[], describe: 'HOST[:PORT] reached over plain HTTP or unverified TLS (repeatable)' })
    .option('certs-dir', { type: 'string', default: process.env.STRATA_CERTS_DIR ?? '/etc/strata/certs.d', describe: 'per-registry CA files: DIR/<host[:port]>/*.crt (env STRATA_CERTS_DIR)' })
    .option('fuse-threads', { type: 'number', default: os.availableParallelism(), describe: 'threads serving all FUSE mounts (default: the number of CPUs)' })
    .check((a) => {
      if (!Number.isInteger(a['fuse-threads']) || a['fuse-threads'] < 1 || a['fuse-threads'] > 256) throw new Error(`--fuse-threads must be an integer from 1 to 256, not ${a['fuse-threads']}`);
      return true;
    })
    .version(packageVersion())
    .strict()
    .parseSync();

  const log = createLogger('stratad', { level: argv['log-level'], file: argv['log-file'] });
  configureEngine({ threads: argv['fuse-threads'], logLevel: argv['log-level'], logFile: argv['log-file'] });
  const root = new StorageRoot(path.resolve(argv.root));
  root.open();
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
  let containers: ContainerService | undefined;
  const mounts = new MountManager(log, (id) => containers?.markLost(id), { level: argv['log-level'], file: argv['log-file'] });
  containers = new ContainerService(root, store, images, layers, volumes, mounts, log);
  // Refuse a live socket before recovery remounts anything this process would then abandon.
  const socket = path.resolve(argv.socket);
  await claimSocket(socket);
  const recovered = await containers.recover();
  if (recovered.remounted.length || recovered.failed.length) log.info(recovered, 'containers recovered after restart');

  const fsType = fs.statfsSync(root.dir).type;
  const router = buildRouter({ root, store, images, containers, volumes, runs: new RunService({ root, images, containers, volumes }), mounts, layers, log, version: packageVersion(), backingFilesystem: FS_NAMES[fsType] ?? `0x${fsType.toString(16)}`, certsDir: path.resolve(argv['certs-dir']), insecureRegistries: argv['insecure-registry'].map(String) });
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
    await mounts.unmountAll();
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
