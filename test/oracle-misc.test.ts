// Differential tests: permissions as non-root, ownership/umask/setgid, ACLs, timestamps, special files,
// fallocate/truncate/big files, name and path length limits.
import t from 'tap';
import { missingCapability } from './lib/mount-union';
import { pairCases } from './lib/pair-cases';
import { stdLayers } from './lib/fixtures';
import { TEST_UID } from './lib/exec';

const why = missingCapability({ fuse: true, overlay: true });
if (why) {
  t.comment(`skipping: ${why}`);
  t.plan(0, why);
} else {
  // [name, script, run as uid/gid 1000?, umask]
  const cases: Array<[string, string, boolean, string?]> = [
    ['non-root: EACCES/EPERM like the kernel (read 0600, write 0444, create in 0555/root dirs, chmod foreign)',
      'cat c.txt 2>&1; echo x >> rodir/f 2>&1; touch rodir/new 2>&1; touch newroot 2>&1; mkdir d1/n 2>&1; chmod 777 a.txt 2>&1; ' +
      'chown 1000 a.txt 2>&1; rm a.txt 2>&1; mv top.txt t2 2>&1; setfattr -n user.x -v 1 a.txt 2>&1; ln a.txt userdir/l 2>&1; true', true],
    ['non-root: allowed operations on own files (copy-up keeps owner)',
      'echo more >> owned.txt && cat owned.txt && touch userdir/new && mkdir userdir/nd && rm userdir/mine && chmod 600 owned.txt && ' +
      'setfattr -n user.u -v 1 owned.txt && stat -c "%u:%g %a %n" owned.txt userdir/new userdir/nd userdir', true],
    ['non-root: new files owned by caller, umask 027 honoured', 'touch userdir/f && mkdir userdir/d && mkfifo userdir/p && stat -c "%u:%g %a %n" userdir/f userdir/d userdir/p', true, '027'],
    ['root: new files honour umask 077', 'touch f && mkdir d && ln -s f s && stat -c "%u:%g %a %n" f d', false, '077'],
    ['setgid dir: group inheritance and setgid propagation to subdirs',
      'mkdir sg && chgrp 1000 sg && chmod 2775 sg && touch sg/f && mkdir sg/sub && stat -c "%g %a %n" sg sg/f sg/sub && ' +
      'chgrp 1000 d1 && chmod g+s d1 && touch d1/nf && mkdir d1/nd && stat -c "%g %a %n" d1/nf d1/nd', false],
    ['POSIX ACLs: setfacl/getfacl, access decisions, default ACL inheritance',
      'setfacl -m u:1000:r c.txt && getfacl -n c.txt && setfacl -d -m u:1000:rwx d1 && touch d1/acl-new && mkdir d1/acl-dir && ' +
      'getfacl -n d1 d1/acl-new d1/acl-dir && setpriv --reuid=1000 --regid=1000 --clear-groups cat c.txt', false],
    ['POSIX ACL on a lower file survives copy-up by write', 'setfacl -m u:1000:rw m.txt && echo x >> m.txt && getfacl -n m.txt', false],
    ['nanosecond timestamps (new and lower files, atime and mtime)',
      'echo n > nf && touch -d "2003-04-05 06:07:08.987654321" nf a.txt && touch -a -d "2004-01-01 00:00:00.000000007" nf && stat -c "%x %y %n" nf a.txt && ' +
      'python3 -c "import os; os.utime(\'m.txt\', ns=(1, 1234567890123456789)); print(os.stat(\'m.txt\').st_mtime_ns)"', false],
    ['create special files: mknod c/b, mkfifo, symlink, socket-free', 'mknod cdev c 1 5 && mknod bdev b 7 0 && mkfifo ff && ln -s ../x d1/ls && stat -c "%F %t:%T %a %n" cdev bdev ff d1/ls && readlink d1/ls', false],
    ['hard links between upper files: nlink counting', 'echo a > f && ln f f2 && ln f d1/f3 && stat -c "%h" f && rm f2 && stat -c "%h %n" f d1/f3 && [ $(stat -c %i f) = $(stat -c %i d1/f3) ] && echo same-ino', false],
    ['hard links keep the linked file\'s owner (root links files of uid 1000, lower and upper)',
      'ln owned.txt l1 && ln userdir/mine l2 && echo n > nf && chown 1000:1000 nf && ln nf l3 && stat -c "%u:%g %h %a %n" owned.txt l1 userdir/mine l2 nf l3', false],
    ['create: O_EXCL on taken and whited-out names, O_RDONLY and O_RDWR creates, names freed by rm -rf', String.raw`python3 - <<'PY'
import os, errno, shutil
def create(p, flags, mode=0o640):
    try:
        return os.open(p, flags | os.O_CREAT | os.O_EXCL, mode)
    except OSError as e:
        print(p, errno.errorcode[e.errno])
        return -1
create('a.txt', os.O_WRONLY)
create('sym', os.O_WRONLY)
fd = create('b.txt', os.O_RDWR)
os.write(fd, b'over a lower whiteout'); os.lseek(fd, 0, 0); print(os.read(fd, 100)); os.close(fd)
os.unlink('a.txt')
fd = create('a.txt', os.O_RDWR, 0o600)
os.write(fd, b'over our whiteout'); os.lseek(fd, 0, 0); print(os.read(fd, 100)); os.close(fd)
fd = create('ro-new', os.O_RDONLY, 0o444)
try:
    os.write(fd, b'x')
except OSError as e:
    print('write', errno.errorcode[e.errno])
print(os.read(fd, 10)); os.close(fd)
shutil.rmtree('d1'); shutil.rmtree('wdir')
os.mkdir('d1'); os.close(create('d1/x', os.O_WRONLY)); os.close(create('wdir', os.O_WRONLY))
print(sorted(os.listdir('d1')), os.path.isfile('wdir'))
for p in ('a.txt', 'b.txt', 'ro-new', 'd1', 'd1/x', 'wdir'):
    st = os.lstat(p); print(p, oct(st.st_mode), st.st_size, st.st_nlink)
PY`, false],
    ['fallocate: allocate, keep-size, punch hole (new and lower files)',
      'fallocate -l 1M fa && stat -c %s fa && fallocate -n -l 2M fa && stat -c %s fa && fallocate -p -o 4096 -l 8192 m.txt; stat -c %s m.txt && ' +
      'fallocate -o 0 -l 100000 top.txt && stat -c %s top.txt && od -c m.txt | head -3', false],
    ['truncate: extend and shrink upper and lower files', 'truncate -s 10 a.txt && truncate -s 1000000 top.txt && truncate -s 0 m.txt && echo z > nf && truncate -s 3 nf && stat -c "%s %n" a.txt top.txt m.txt nf', false],
    ['big sparse file over 4 GiB: size, read back at end', 'truncate -s 5G big && printf END | dd of=big bs=1 seek=5368709117 conv=notrunc 2>/dev/null && stat -c %s big && tail -c 3 big; echo; ' +
      'dd if=big bs=1 skip=4294967296 count=4 2>/dev/null | od -An -tx1', false],
    ['name length: 255 bytes ok, 256 bytes ENAMETOOLONG', `N=$(printf 'n%.0s' $(seq 255)); touch $N && ls | grep -c nnnn; touch ${'$'}{N}x 2>&1; mkdir ${'$'}{N}y 2>&1; stat ${'$'}{N}z 2>&1 | head -1; mv top.txt ${'$'}{N}w 2>&1; true`, false],
    ['deep paths near PATH_MAX', String.raw`python3 - <<'PY'
import os, errno
c = 'd' * 200
rel = []
base = os.getcwd()
# build ~20 levels of 200-byte names (path ~4020 bytes relative)
for i in range(20):
    rel.append(c)
    os.mkdir('/'.join(rel))
p = '/'.join(rel)
print(len(p))
with open(p + '/f' * 1, 'w') as f: f.write('deep')
print(open(p + '/f').read())
for extra in ('/' + 'e' * 60, '/' + 'e' * 80):
    q = p + extra
    try:
        open(q, 'w').close(); print(len(q), 'ok')
    except OSError as e:
        print(len(q), errno.errorcode[e.errno])
os.chdir(p)
open('rel', 'w').close(); print(sorted(os.listdir('.')))
PY`, false],
  ];
  pairCases(
    t,
    cases.map(([name, script, asUser, umask]) => ({ name, script, opts: { asUser: asUser ? { uid: TEST_UID, gid: TEST_UID } : undefined, umask } })),
    { lowers: stdLayers },
  );
}
