// Helper scripts run inside mountpoints (python3 for syscalls coreutils lacks).

/**
 * Recursively list every directory with raw readdir (libc via ctypes) so that "." and ".." and d_ino are seen.
 * Prints one line per entry: "<dir>/<name> type=<d_type> dino_matches_stino=<bool>" (relative paths, sorted).
 * For ".." only the type is printed (kernel overlayfs' d_ino of ".." is not the parent's st_ino).
 */
export const READDIR_PY = String.raw`
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
class Dirent(ctypes.Structure):
    _fields_ = [('d_ino', ctypes.c_uint64), ('d_off', ctypes.c_int64), ('d_reclen', ctypes.c_ushort), ('d_type', ctypes.c_ubyte), ('d_name', ctypes.c_char * 256)]
libc.opendir.restype = ctypes.c_void_p
libc.readdir.restype = ctypes.POINTER(Dirent)
libc.readdir.argtypes = [ctypes.c_void_p]
libc.closedir.argtypes = [ctypes.c_void_p]
out = []
def walk(rel):
    d = libc.opendir(rel.encode())
    if not d:
        out.append('%s opendir-error %d' % (rel, ctypes.get_errno())); return
    ents = []
    while True:
        e = libc.readdir(d)
        if not e: break
        ents.append((e.contents.d_name.decode('utf-8', 'surrogateescape'), e.contents.d_ino, e.contents.d_type))
    libc.closedir(d)
    for name, ino, typ in sorted(ents):
        p = rel + '/' + name
        if name == '..':
            # the kernel itself does not report the parent's st_ino as d_ino of '..' in merged dirs: type only
            out.append('%s type=%d' % (p, typ)); continue
        st = os.lstat(p)
        out.append('%s type=%d dino_matches_stino=%s' % (p, typ, ino == st.st_ino))
    for name, ino, typ in sorted(ents):
        if name in ('.', '..'): continue
        p = rel + '/' + name
        if os.path.isdir(p) and not os.path.islink(p):
            walk(p)
walk('.')
print('\n'.join(out))
`;

/** renameat2(AT_FDCWD, argv[1], AT_FDCWD, argv[2], flags=argv[3]); prints "ok" or the errno name; exit 0 always. */
export const RENAMEAT2_PY = String.raw`
import ctypes, errno, sys
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
r = libc.renameat2(AT_FDCWD, sys.argv[1].encode(), AT_FDCWD, sys.argv[2].encode(), int(sys.argv[3]))
print('ok' if r == 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno())))
`;
export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;

/** python one-liner runner: py(script, ...args) -> shell command */
export function py(script: string, ...args: string[]): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return `python3 -c ${q(script)} ${args.map(q).join(' ')}`;
}
