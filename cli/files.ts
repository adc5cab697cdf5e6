// The CLI's side of archives sent through the socket: it reads and writes the user's files with the
// user's own permissions; the daemon only ever sees the bytes.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import type { PackOptions } from '../daemon/archive';
import { UsageError } from './format';

/** A file to send, or standard input for "-" (never a terminal). Errors name the file, never its content. */
export function openInput(file: string, what: string): Readable {
  if (file === '-') {
    if (process.stdin.isTTY) throw new UsageError(`refusing to read ${what} from a terminal: give a file or redirect the input`);
    return process.stdin;
  }
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `${what ? what + ' ' : ''}${file} does not exist` : `cannot read ${file}: ${code ?? String(err)}`);
  }
  if (st.isDirectory()) throw new Error(`${what} ${file} is a directory`);
  try {
    fs.accessSync(file, fs.constants.R_OK);
  } catch {
    throw new Error(`cannot read ${what} ${file}: permission denied`);
  }
  if (st.isFIFO()) {
    // A named pipe is read as a pipe (polled), not by blocking reads in the thread pool, which would
    // keep the CLI from exiting while the writer holds it open.
    return new net.Socket({ fd: fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK), readable: true, writable: false });
  }
  return fs.createReadStream(file);
}

/** A tar of a directory, packed as it is sent (`keep` filters entries by relative path; `extra` files are added). */
export function packDirectory(dir: string, keep?: (rel: string) => boolean, extra?: PackOptions['extra']): Readable {
  const out = new PassThrough();
  // Loaded on use: the archive code (and the native addon under it) is not needed to start the CLI.
  const { packTree } = require('../daemon/archive') as typeof import('../daemon/archive');
  packTree(dir, out, { keep, extra }).catch((err: Error) => out.destroy(err));
  return out;
}

/** A file written under a temp name beside its target and renamed into place once complete. */
export class AtomicOutput {
  readonly stream: fs.WriteStream;
  private readonly tmp: string;

  constructor(readonly file: string) {
    const dir = path.dirname(file);
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`cannot write ${file}: directory ${dir} does not exist`);
    if (fs.existsSync(file) && fs.statSync(file).isDirectory()) throw new Error(`cannot write ${file}: it is a directory`);
    this.tmp = path.join(dir, `.${path.basename(file)}.strata-${(require('node:crypto') as typeof import('node:crypto')).randomBytes(4).toString('hex')}`);
    this.stream = fs.createWriteStream(this.tmp, { flags: 'wx', mode: 0o644 });
  }

  /** Writes a chunk; resolves once it may take more (back-pressure). */
  write(chunk: Buffer): Promise<void> | void {
    if (!this.stream.write(chunk)) return new Promise((r) => this.stream.once('drain', () => r()));
  }

  async commit(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.stream.once('error', reject);
      this.stream.end(resolve);
    });
    fs.renameSync(this.tmp, this.file);
    return fs.statSync(this.file).size;
  }

  abort(): void {
    this.stream.destroy();
    fs.rmSync(this.tmp, { force: true });
  }
}
