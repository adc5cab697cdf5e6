// strata pull | push | login | logout: images to and from registries. Credentials come from the auth
// file (cli/auth-file.ts) and go to the daemon with each request.
import type { LoginResponse, PullResponse, PushResponse } from '../../daemon/model/types-registry';
import { keyDomain, parseReference, registryKey } from '../../daemon/registry/reference';
import { authFilePath, credentialsFor, removeCredentials, storeCredentials } from '../auth-file';
import { resolveSocket, seg } from '../client';
import { UsageError } from '../format';
import { runStreamed } from '../progress';
import { action, type Args, clientFor, type Cmd, out } from './common';
import type { Argv } from 'yargs';

function registryOptions<T>(y: Argv<T>): Argv<T> {
  return y
    .option('tls-verify', { type: 'boolean', default: true, describe: 'Require HTTPS and verify certificates (false: plain HTTP allowed)' })
    .option('authfile', { type: 'string', requiresArg: true, describe: 'Credentials file (default $REGISTRY_AUTH_FILE or ~/.strata/config.json)' });
}

/** A streamed pull or push: the stored credentials of `ref`'s registry go with the request. */
function registryCall<R>(argv: Args, urlPath: string, ref: string, body: Record<string, unknown>): Promise<R> {
  let domain: string;
  try {
    domain = parseReference(ref).domain;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const auth = credentialsFor(authFilePath(argv.authfile), domain);
  return runStreamed<R>(resolveSocket(argv.socket), urlPath, { json: { ...body, tlsVerify: argv.tlsVerify, auth } }, { quiet: argv.quiet });
}

const pullCmd: Cmd = {
  command: 'pull <ref>',
  describe: 'Download an image from a registry',
  builder: (y) =>
    registryOptions(y)
      .positional('ref', { type: 'string', describe: '[REGISTRY/]NAME[:TAG][@DIGEST]' })
      .option('platform', { type: 'string', requiresArg: true, describe: 'os/arch[/variant] of a multi-platform image (default: the host)' })
      .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Print only the image name' }),
  handler: action(async (argv) => {
    const ref = String(argv.ref);
    const r = await registryCall<PullResponse>(argv, '/images/pull', ref, { ref, platform: argv.platform });
    out(r.name);
  }),
};

const pushCmd: Cmd = {
  command: 'push <image> [target]',
  describe: 'Upload an image to a registry',
  builder: (y) =>
    registryOptions(y)
      .positional('image', { type: 'string', describe: 'local image, named [REGISTRY/]NAME[:TAG]' })
      .positional('target', { type: 'string', describe: 'destination [REGISTRY/]NAME[:TAG] (default: the image name)' })
      .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Print only the digest' }),
  handler: action(async (argv) => {
    const image = String(argv.image);
    const target = argv.target !== undefined ? String(argv.target) : undefined;
    const r = await registryCall<PushResponse>(argv, `/images/${seg(image)}/push`, target ?? image, { target });
    for (const w of r.warnings ?? []) process.stderr.write(`WARNING: ${w}\n`);
    if (argv.quiet) out(r.digest);
  }),
};

/** Reads all of stdin (for --password-stdin), without the trailing newline. */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/** Asks on the terminal without echoing what is typed. */
async function prompt(question: string, hidden: boolean): Promise<string> {
  if (!process.stdin.isTTY) throw new UsageError(`${question.replace(/: $/, '')} required: pass it as an option (--password-stdin for the password)`);
  process.stderr.write(question);
  const stdin = process.stdin;
  stdin.setRawMode?.(hidden);
  stdin.resume();
  let s = '';
  return new Promise((resolve, reject) => {
    const onData = (b: Buffer) => {
      for (const ch of b.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          stdin.off('data', onData);
          stdin.setRawMode?.(false);
          stdin.pause();
          process.stderr.write('\n');
          return resolve(s);
        }
        if (ch === '\u0003') {
          stdin.setRawMode?.(false);
          return reject(new Error('interrupted'));
        }
        if (ch === '\u007f') s = s.slice(0, -1);
        else s += ch;
        if (!hidden) process.stderr.write(ch);
      }
    };
    stdin.on('data', onData);
  });
}

const loginCmd: Cmd = {
  command: 'login [registry]',
  describe: 'Log in to a registry (credentials are checked, then stored in the auth file)',
  builder: (y) =>
    registryOptions(y)
      .positional('registry', { type: 'string', default: 'docker.io', describe: 'HOST[:PORT] (default Docker Hub)' })
      .option('username', { alias: 'u', type: 'string', requiresArg: true, describe: 'Username' })
      .option('password', { alias: 'p', type: 'string', requiresArg: true, describe: 'Password (visible to other users: prefer --password-stdin)' })
      .option('password-stdin', { type: 'boolean', default: false, describe: 'Read the password from stdin' }),
  handler: action(async (argv) => {
    let key: string;
    try {
      key = registryKey(String(argv.registry));
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    if (argv.password !== undefined && argv.passwordStdin) throw new UsageError('--password and --password-stdin are mutually exclusive');
    if (argv.passwordStdin && argv.username === undefined) throw new UsageError('--password-stdin needs --username');
    const username = argv.username !== undefined ? String(argv.username) : await prompt('Username: ', false);
    let password: string;
    if (argv.passwordStdin) password = await readStdin();
    else if (argv.password !== undefined) {
      process.stderr.write('WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
      password = String(argv.password);
    } else password = await prompt('Password: ', true);
    if (username === '' || password === '') throw new UsageError('username and password must not be empty');
    const r = await clientFor(argv).post<LoginResponse>('/registry/login', { registry: keyDomain(key), tlsVerify: argv.tlsVerify, auth: { username, password } });
    const file = authFilePath(argv.authfile);
    storeCredentials(file, key, { username, password });
    out(r.status);
  }),
};

const logoutCmd: Cmd = {
  command: 'logout [registry]',
  describe: 'Remove the stored credentials of a registry',
  builder: (y) => registryOptions(y).positional('registry', { type: 'string', default: 'docker.io', describe: 'HOST[:PORT] (default Docker Hub)' }),
  handler: action(async (argv) => {
    const file = authFilePath(argv.authfile);
    let removed: boolean;
    try {
      removed = removeCredentials(file, String(argv.registry));
    } catch (err) {
      if ((err as Error).message.startsWith('invalid reference')) throw new UsageError((err as Error).message);
      throw err;
    }
    if (!removed) throw new Error(`not logged in to ${String(argv.registry)}`);
    out(`Removing login credentials for ${registryKey(String(argv.registry))}`);
  }),
};

export const registryCommands: Cmd[] = [pullCmd, pushCmd, loginCmd, logoutCmd];
