// The storage root: where everything lives on disk, and the lock that keeps a
// second daemon off it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as native from '../../native-shims';

export class RootLockedError extends Error {}

export class StorageRoot {
  readonly layers: string;
  readonly containers: string;
  readonly volumes: string;
  readonly tmp: string;
  readonly database: string;
  private lockFd = -1;

  constructor(readonly dir: string) {
    this.layers = path.join(dir, 'layers');
    this.containers = path.join(dir, 'containers');
    this.volumes = path.join(dir, 'volumes');
    this.tmp = path.join(dir, 'tmp');
    this.database = path.join(dir, 'strata.db');
  }

  /** Creates the layout and takes the exclusive lock (fails if another stratad holds it). */
  open(): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    // Private to root whatever the umask or an older strata left (as /var/lib/docker is).
    fs.chmodSync(this.dir, 0o700);
    const lockPath = path.join(this.dir, 'stratad.lock');
    const fd = fs.openSync(lockPath, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    if (native.flock(fd, native.LOCK_EX | native.LOCK_NB) !== 0) {
      const holder = fs.readFileSync(lockPath, 'utf8').trim();
      fs.closeSync(fd);
      throw new RootLockedError(`another stratad${holder ? ` (pid ${holder})` : ''} is already using ${this.dir}; stop it first or pick another --root`);
    }
    fs.ftruncateSync(fd, 0);
    fs.writeSync(fd, `${process.pid}\n`, 0);
    this.lockFd = fd;
    for (const d of [this.layers, this.containers, this.volumes, this.tmp]) {
      fs.mkdirSync(d, { recursive: true, mode: 0o700 });
      fs.chmodSync(d, 0o700);
    }
    // SQLite gives the WAL and shm files the database file's mode: create it 0600 first.
    fs.closeSync(fs.openSync(this.database, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600));
    for (const f of [this.database, this.database + '-wal', this.database + '-shm']) {
      if (fs.existsSync(f)) fs.chmodSync(f, 0o600);
    }
  }

  close(): void {
    if (this.lockFd >= 0) fs.closeSync(this.lockFd);
    this.lockFd = -1;
  }

  /** Layer directories are named by the hex of the layer (chain) id. */
  layerDir(id: string): string {
    return path.join(this.layers, hex(id));
  }

  containerDir(id: string): string {
    return path.join(this.containers, id);
  }

  volumeData(name: string): string {
    return path.join(this.volumes, name, '_data');
  }

  /** A fresh private directory under tmp/ (removed by the caller; swept at start-up). */
  tempDir(label: string): string {
    return fs.mkdtempSync(path.join(this.tmp, `${label}-`));
  }
}

export function hex(id: string): string {
  return id.startsWith('sha256:') ? id.slice(7) : id;
}
