// Differential tests of writes on a served mount (passthrough=0, as every unprivileged mount is):
// there the kernel caches writes (FUSE_WRITEBACK_CACHE) and owns size and mtime, appends at its own
// size, reads pages back through write-only opens, and writes back later. Each trap of that mode is
// run against kernel overlayfs, with the file still open and dirty where it matters: appends from
// several fds and processes, sizes after truncate + write, mtime after writes, utime and fsync,
// mmap, O_TRUNC, O_DIRECT, SEEK_DATA/SEEK_HOLE, copy_file_range, fallocate and hole punching over
// pages not yet written back.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { missingCapability } from './lib/mount-union';
import { Pair } from './lib/pair';
import type { Entry } from './lib/layers';
import { sleepMs } from './lib/mount-table';
import { makeWorkspace } from './lib/workspace';

const LOWER_BIN = Buffer.alloc(20000, 'L').toString();

const lowers = (): Entry[][] => [
  [
    { path: 'lower.bin', type: 'file', content: LOWER_BIN },
    { path: 'short.txt', type: 'file', content: 'short\n' },
  ],
];

const WRITES_PY = String.raw`python3 - <<'PY'
import os, mmap, time, subprocess
T2001 = 1_000_000_000_000_000_000
def size(p): return os.stat(p).st_size
def sh(c): subprocess.run(c, shell=True, check=True)

# appends: one O_APPEND fd, one positional fd (write-only: partial pages read back), another process
fd1 = os.open('ap', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
fd2 = os.open('ap', os.O_WRONLY | os.O_APPEND)
os.write(fd1, b'abc'); os.write(fd2, b'DEF'); os.write(fd1, b'xy'); os.write(fd2, b'GH')
print('append sizes', os.fstat(fd1).st_size, size('ap'))
sh('printf tail >> ap; stat -c "other process sees %s" ap')
os.write(fd2, b'!'); os.write(fd1, b'-')
print('append before close', os.pread(os.open('ap', os.O_RDONLY), 100, 0))
os.close(fd1); os.close(fd2)
print('append after close', open('ap', 'rb').read())
fd = os.open('short.txt', os.O_WRONLY | os.O_APPEND); os.write(fd, b'+1'); os.write(fd, b'+2'); os.close(fd)
print('lower append', open('short.txt', 'rb').read())

# truncate + write, by fd and by path, while dirty
fd = os.open('tw', os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b'z' * 10000)
os.ftruncate(fd, 100)
print('shrunk', os.fstat(fd).st_size, size('tw'))
os.pwrite(fd, b'END', 5000)
print('written past the end', os.fstat(fd).st_size, size('tw'))
os.truncate('tw', 6000)
os.pwrite(fd, b'mid', 2)
d = os.pread(fd, 7000, 0)
print('path truncate', os.fstat(fd).st_size, len(d), d[:8], d[95:105], d[4998:5006], d.count(b'\0'))
os.ftruncate(fd, 3); os.write(fd, b'W')
print('shrunk under the offset', size('tw'), os.pread(fd, 20000, 0).count(b'\0'), os.lseek(fd, 0, os.SEEK_CUR))
os.close(fd)

# a lower file: copy-up by a write-only open, writes inside pages and past its end
fd = os.open('lower.bin', os.O_WRONLY)
os.pwrite(fd, b'XY', 4095); os.pwrite(fd, b'Z', 12345); os.pwrite(fd, b'tail', 20002)
print('lower.bin', size('lower.bin'))
os.close(fd)
d = open('lower.bin', 'rb').read()
print('lower.bin bytes', len(d), d[4093:4099], d[12344:12347], d[19998:20006])

# O_TRUNC open while another fd has dirty pages, then that fd writes on
fd1 = os.open('ot', os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd1, b'q' * 8000)
os.close(os.open('ot', os.O_WRONLY | os.O_TRUNC))
print('O_TRUNC', size('ot'))
os.write(fd1, b'x')
print('write after O_TRUNC', size('ot'), os.pread(fd1, 9000, 0).count(b'q'))
os.close(fd1)

# mtime: writes move it, utime and fsync keep a set time, close keeps what stat showed
fd = os.open('mt', os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b'1' * 5000)
os.utime('mt', ns=(T2001, T2001))
print('utime while dirty', os.stat('mt').st_mtime_ns == T2001)
os.fsync(fd)
print('after fsync', os.stat('mt').st_mtime_ns == T2001)
os.close(fd)
print('after close', os.stat('mt').st_mtime_ns == T2001)
fd = os.open('mt', os.O_WRONLY)
os.write(fd, b'2')
m1 = os.fstat(fd).st_mtime_ns
print('write moves mtime', m1 != T2001, abs(m1 - time.time_ns()) < 60e9)
os.fsync(fd); os.close(fd)
print('kept after fsync and close', os.stat('mt').st_mtime_ns == m1, size('mt'))
fd = os.open('mt', os.O_WRONLY); os.write(fd, b'3'); os.utime(fd, ns=(T2001, T2001 + 5)); os.close(fd)
print('futimens after a write', os.stat('mt').st_mtime_ns == T2001 + 5)

# mmap writes seen by read(2) on another fd before msync and close
fd = os.open('mm', os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, 10000)
m = mmap.mmap(fd, 10000)
m[4090:4100] = b'0123456789'; m[9990:10000] = b'abcdefghij'
r = os.open('mm', os.O_RDONLY)
print('mmap', os.pread(r, 14, 4088), os.pread(r, 10, 9990), os.fstat(r).st_size)
os.close(r); m.close(); os.close(fd)

# SEEK_DATA / SEEK_HOLE, copy_file_range and a punched hole over pages not yet written back
fd = os.open('sp', os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fd, b'D' * 8192, 1 << 20)
# (answers may differ, a hole being allowed to read as data; never skipping data that is there)
data, hole = os.lseek(fd, 0, os.SEEK_DATA), os.lseek(fd, 1 << 20, os.SEEK_HOLE)
print('seek', data <= 1 << 20, os.pread(fd, (1 << 20) - data, data).count(b'D'), hole >= (1 << 20) + 8192, os.fstat(fd).st_size)
out = os.open('cf', os.O_RDWR | os.O_CREAT, 0o644)
print('copy_file_range', os.copy_file_range(fd, out, 4096, 1 << 20, 0), os.pread(out, 8, 4090))
os.close(out)
sh('fallocate -p -o 1052672 -l 4096 sp')
d = os.pread(fd, 8192, 1 << 20)
print('punched', d.count(b'D'), d.count(b'\0'), os.fstat(fd).st_size)
os.posix_fallocate(fd, 0, 2 << 20)
print('fallocated', os.fstat(fd).st_size, size('sp'))
os.close(fd)

# O_DIRECT over a file with dirty cached pages, read back through the cache
fd = os.open('od', os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b'c' * 16384)
dfd = os.open('od', os.O_RDWR | os.O_DIRECT)
buf = mmap.mmap(-1, 4096); buf.write(b'O' * 4096)
os.pwrite(dfd, buf, 8192); os.pwrite(dfd, buf, 16384)
print('O_DIRECT', os.fstat(fd).st_size, os.pread(fd, 20480, 0).count(b'O'), os.pread(fd, 20480, 0).count(b'c'))
os.close(dfd); os.close(fd)
for p in ('ap', 'tw', 'lower.bin', 'ot', 'mt', 'mm', 'sp', 'cf', 'od'):
    print(p, size(p), oct(os.stat(p).st_mode))
PY`;

const why = missingCapability({ fuse: true, overlay: true });
if (why) {
  t.comment(`skipping: ${why}`);
  t.plan(0, why);
} else {
  t.test('writes on a served mount with the writeback cache: same results as kernel overlayfs, open and dirty', async (t) => {
    const log = path.join(makeWorkspace(t, 'served-writes-log'), 'mount.log');
    const p = new Pair(t, { lowers: lowers(), strataOpts: ['passthrough=0'], strataEnv: { STRATA_LOG_LEVEL: 'debug', STRATA_LOG_FILE: log } });
    const init = fs.readFileSync(log, 'utf8').split('\n').find((l) => l.includes('INIT negotiated'));
    t.match(init ?? '', /"writebackCache":true/, 'the served mount negotiated the writeback cache');
    const r = p.same(t, WRITES_PY);
    t.equal(r.status, 0, r.stderr);
    // What stat showed on the mount is what the upper keeps once the kernel has written back.
    const names = ['ap', 'tw', 'lower.bin', 'ot', 'mt', 'mm', 'sp', 'cf', 'od'];
    const shown = names.map((n) => fs.statSync(path.join(p.s.mnt, n), { bigint: true }));
    p.checkMerged(t);
    p.unmount();
    names.forEach((n, i) => {
      const up = fs.statSync(path.join(p.s.upper, n), { bigint: true });
      if (n === 'mm') {
        // Written only through a shared mmap: the kernel may not send the fault's mtime back, and
        // the upper keeps the time of the write-back, milliseconds later (fuse-overlayfs alike).
        const late = up.mtimeNs - shown[i].mtimeNs;
        t.ok(late >= 0n && late < 1_000_000_000n, `${n}: upper mtime within a second after the one the mount showed (${late} ns)`);
      } else t.equal(up.mtimeNs, shown[i].mtimeNs, `${n}: upper mtime is the one the mount showed`);
      t.equal(up.size, shown[i].size, `${n}: upper size is the one the mount showed`);
    });
    t.same(p.upperDiff(), [], 'upper dirs equal');
  });

  t.test('data written on a served mount is in the upper file once the writer has closed it', async (t) => {
    const p = new Pair(t, { lowers: lowers(), strataOpts: ['passthrough=0'], strataOnly: true });
    const data = Buffer.alloc(3 << 20);
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32LE(i, i);
    const fd = fs.openSync(path.join(p.s.mnt, 'closed.bin'), 'w');
    for (let off = 0; off < data.length; off += 100_000) fs.writeSync(fd, data, off, Math.min(100_000, data.length - off));
    fs.closeSync(fd); // close(2) writes the dirty pages back (containers-storage reads the upper of a live mount)
    t.ok(fs.readFileSync(path.join(p.s.upper, 'closed.bin')).equals(data), 'upper holds every byte right after close');
    const mtime = fs.statSync(path.join(p.s.mnt, 'closed.bin'), { bigint: true }).mtimeNs;
    sleepMs(50);
    t.equal(fs.statSync(path.join(p.s.upper, 'closed.bin'), { bigint: true }).mtimeNs, mtime, 'and the mtime the mount shows');
  });
}
