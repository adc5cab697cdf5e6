// The union applies each request's umask in its own filesystem context: mounting containers never
// changes the daemon's umask (which would make the directories it creates for binds and volumes,
// and its database files, world-writable).
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sh } from './lib/exec';
import { startDaemon } from './lib/daemon';
import { importBusyboxImage } from './lib/base-image';
import { missingCapability } from './lib/mount-union';

const skip = missingCapability({ fuse: true });

/** The umask of the daemon's main thread, as /proc reports it. */
function umaskOf(pid: number): string {
  const m = /^Umask:\s+(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no Umask line for ${pid}`);
  return m[1]!;
}

t.test('mounting containers leaves the daemon\'s umask as it was; files in the mount take the caller\'s umask', { skip: skip ?? false }, async (t) => {
  const d = await startDaemon(t, { label: 'umask' });
  const before = umaskOf(d.pid);
  importBusyboxImage(d, d.ws, 'base');
  for (const name of ['u1', 'u2']) {
    t.equal(d.cli(['container', 'create', '--name', name, 'base']).status, 0, `create ${name}`);
  }
  const mnt = d.cli(['container', 'mount', 'u1']).stdout.trim();
  t.ok(fs.existsSync(path.join(mnt, 'bin')), 'u1 mounted');
  t.equal(d.cli(['container', 'mount', 'u2']).status, 0, 'u2 mounted');
  t.equal(umaskOf(d.pid), before, `the daemon's umask is still ${before}`);
  const r = sh(mnt, 'umask 027; mkdir m027 && touch f027 && umask 0; mkdir m000 && touch f000 && stat -c "%a %n" m027 f027 m000 f000');
  t.equal(r.stdout, '750 m027\n640 f027\n777 m000\n666 f000\n', 'each request\'s own umask applies');
  const dir = path.join(d.root, 'volumes');
  t.equal(d.cli(['volume', 'create', 'v1']).status, 0, 'volume create');
  t.equal((fs.statSync(path.join(dir, 'v1')).mode & 0o777).toString(8), (0o777 & ~parseInt(before, 8)).toString(8), 'a volume dir made after the mounts is not world-writable');
  for (const name of ['u1', 'u2']) d.cli(['container', 'unmount', name]);
});
