// stratad's command line, parsed with node:util (yargs alone takes a quarter of a second to load,
// and a restarted stratad should take its mounts over as soon as it can).
import * as os from 'node:os';
import { parseArgs } from 'node:util';
import { DEFAULT_SOCKET } from '../model/types';

const DEFAULT_ROOT = '/var/lib/strata';

export interface DaemonArgs {
  root: string;
  socket: string;
  logLevel: string;
  logFile?: string;
  insecureRegistry: string[];
  certsDir: string;
  fuseThreads: number;
  liveRestore: boolean;
  upgrade: boolean;
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];

const USAGE = `stratad [options]: the strata daemon

Options:
  --root DIR                 storage root (env STRATA_ROOT; default /var/lib/strata)
  --socket PATH              API socket (env STRATA_SOCKET; default /run/strata/strata.sock)
  --log-level LEVEL          ${LEVELS.join(', ')} (env STRATA_LOG_LEVEL; default info)
  --log-file FILE            also write logs here (JSON lines)
  --insecure-registry HOST[:PORT]
                             reached over plain HTTP or unverified TLS (repeatable)
  --certs-dir DIR            per-registry CA files: DIR/<host[:port]>/*.crt (env STRATA_CERTS_DIR;
                             default /etc/strata/certs.d)
  --fuse-threads N           threads serving all FUSE mounts (default: the number of CPUs)
  --live-restore             leave container mounts served across a stop: the next stratad takes them over
  --upgrade                  take over from the stratad running on this root (it hands its mounts over and exits)
  --version                  show the version
  --help                     show this help
`;

export class UsageError extends Error {}

/** The options, or 'help' / 'version' when those were asked for. Throws UsageError on a bad command line. */
export function parseDaemonArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): DaemonArgs | 'help' | 'version' {
  let v;
  try {
    v = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        root: { type: 'string' },
        socket: { type: 'string' },
        'log-level': { type: 'string' },
        'log-file': { type: 'string' },
        'insecure-registry': { type: 'string', multiple: true },
        'certs-dir': { type: 'string' },
        'fuse-threads': { type: 'string' },
        'live-restore': { type: 'boolean' },
        upgrade: { type: 'boolean' },
        version: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (v.help) return 'help';
  if (v.version) return 'version';
  const logLevel = v['log-level'] ?? env.STRATA_LOG_LEVEL ?? 'info';
  if (!LEVELS.includes(logLevel)) throw new UsageError(`--log-level must be one of ${LEVELS.join(', ')}, not ${logLevel}`);
  const threadsText = v['fuse-threads'];
  const fuseThreads = threadsText === undefined ? os.availableParallelism() : Number(threadsText);
  if (!Number.isInteger(fuseThreads) || fuseThreads < 1 || fuseThreads > 256) throw new UsageError(`--fuse-threads must be an integer from 1 to 256, not ${threadsText}`);
  return {
    root: v.root ?? env.STRATA_ROOT ?? DEFAULT_ROOT,
    socket: v.socket ?? env.STRATA_SOCKET ?? DEFAULT_SOCKET,
    logLevel,
    logFile: v['log-file'],
    insecureRegistry: v['insecure-registry'] ?? [],
    certsDir: v['certs-dir'] ?? env.STRATA_CERTS_DIR ?? '/etc/strata/certs.d',
    fuseThreads,
    liveRestore: v['live-restore'] ?? false,
    upgrade: v.upgrade ?? false,
  };
}

export { USAGE };
