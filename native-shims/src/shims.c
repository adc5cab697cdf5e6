/*
 * strata_shims: thin Node-API wrappers for the Linux syscalls Node's fs
 * module does not expose (mount, FUSE device ioctls, xattrs, renameat2, ...).
 *
 * One wrapper per syscall, no policy. Errors are thrown in the shape of Node's
 * fs errors (code, negative errno, syscall, path); the hot-path stat wrappers
 * return a positive errno instead of throwing.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* renameat2 flags, copy_file_range, fallocate, AT_EMPTY_PATH, strerrorname_np */
#endif

#include <dirent.h>
#include <sched.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <node_api.h>

/* Not in Debian 12's <linux/fuse.h> (backing ids arrived in kernel 6.9), and
 * <linux/fs.h> clashes with <sys/mount.h>, so spell the ioctls out. */
#define STRATA_FUSE_DEV_IOC_CLONE 0x8004E500UL         /* _IOR(229, 0, uint32_t) */
#define STRATA_FUSE_DEV_IOC_BACKING_OPEN 0x4010E501UL  /* _IOW(229, 1, struct fuse_backing_map) */
#define STRATA_FUSE_DEV_IOC_BACKING_CLOSE 0x4004E502UL /* _IOW(229, 2, uint32_t) */
#ifndef FICLONE
#define FICLONE _IOW(0x94, 9, int)
#endif

struct strata_fuse_backing_map {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};

#define STAT_ARRAY_LEN 18
#define STR_BUF PATH_MAX /* kernel limit for paths; also covers xattr names and mount data (one page) */

/* ---------- error helpers ---------- */

/* Turn a failed napi_status into a JS exception (unless one is already pending). */
static void throw_napi(napi_env env, const char *what) {
  const napi_extended_error_info *info = NULL;
  char msg[256];
  /* Read the error info first: any later napi call overwrites it. */
  if (napi_get_last_error_info(env, &info) == napi_ok && info != NULL && info->error_message != NULL)
    snprintf(msg, sizeof msg, "strata_shims: %s failed: %s", what, info->error_message);
  else
    snprintf(msg, sizeof msg, "strata_shims: %s failed", what);
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return;
  napi_throw_error(env, NULL, msg);
}

#define NAPI_CALL(env, call)          \
  do {                                \
    if ((call) != napi_ok) {          \
      throw_napi((env), #call);       \
      return NULL;                    \
    }                                 \
  } while (0)

/* Like NAPI_CALL but jumps to a cleanup label instead of returning. */
#define NAPI_CALL_GOTO(env, call, label) \
  do {                                   \
    if ((call) != napi_ok) {             \
      throw_napi((env), #call);          \
      goto label;                        \
    }                                    \
  } while (0)

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

/*
 * Throw an Error shaped like Node's fs errors:
 *   message "<CODE>: <strerror>, <syscall> '<path>'[ -> '<dest>']"
 *   .code, .errno (negative, as in Node), .syscall, .path, .dest
 */
static napi_value throw_errno(napi_env env, int err, const char *syscall, const char *path, const char *dest) {
  const char *code = strerrorname_np(err);
  if (code == NULL) code = "UNKNOWN";
  const char *desc = strerror(err);
  size_t cap = strlen(code) + strlen(desc) + strlen(syscall) + 16 + (path ? strlen(path) + 4 : 0) +
               (dest ? strlen(dest) + 8 : 0);
  char *msg = malloc(cap);
  if (msg == NULL) {
    napi_throw_error(env, code, desc);
    return NULL;
  }
  int n = snprintf(msg, cap, "%s: %s, %s", code, desc, syscall);
  if (path) n += snprintf(msg + n, cap - n, " '%s'", path);
  if (dest) snprintf(msg + n, cap - n, " -> '%s'", dest);

  napi_value code_v, msg_v, err_v, errno_v, sys_v, path_v, dest_v;
  bool ok = napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_v) == napi_ok &&
            napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &msg_v) == napi_ok &&
            napi_create_error(env, code_v, msg_v, &err_v) == napi_ok &&
            napi_create_int32(env, -err, &errno_v) == napi_ok &&
            napi_set_named_property(env, err_v, "errno", errno_v) == napi_ok &&
            napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sys_v) == napi_ok &&
            napi_set_named_property(env, err_v, "syscall", sys_v) == napi_ok;
  if (ok && path)
    ok = napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &path_v) == napi_ok &&
         napi_set_named_property(env, err_v, "path", path_v) == napi_ok;
  if (ok && dest)
    ok = napi_create_string_utf8(env, dest, NAPI_AUTO_LENGTH, &dest_v) == napi_ok &&
         napi_set_named_property(env, err_v, "dest", dest_v) == napi_ok;
  if (ok) ok = napi_throw(env, err_v) == napi_ok;
  if (!ok) {
    /* Building the rich error failed; still throw something meaningful. */
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) napi_throw_error(env, code, msg);
  }
  free(msg);
  return NULL;
}

/* ---------- argument helpers (return false with a pending exception) ---------- */

static bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    throw_napi(env, "napi_get_cb_info");
    return false;
  }
  if (argc < want) {
    char msg[64];
    snprintf(msg, sizeof msg, "expected %zu arguments, got %zu", want, argc);
    throw_type(env, msg);
    return false;
  }
  return true;
}

static bool expect_number(napi_env env, napi_value v, int idx) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) {
    throw_napi(env, "napi_typeof");
    return false;
  }
  if (t != napi_number) {
    char msg[64];
    snprintf(msg, sizeof msg, "argument %d must be a number", idx);
    throw_type(env, msg);
    return false;
  }
  return true;
}

static bool arg_i32(napi_env env, napi_value v, int idx, int32_t *out) {
  if (!expect_number(env, v, idx)) return false;
  if (napi_get_value_int32(env, v, out) != napi_ok) {
    throw_napi(env, "napi_get_value_int32");
    return false;
  }
  return true;
}

static bool arg_u32(napi_env env, napi_value v, int idx, uint32_t *out) {
  if (!expect_number(env, v, idx)) return false;
  if (napi_get_value_uint32(env, v, out) != napi_ok) {
    throw_napi(env, "napi_get_value_uint32");
    return false;
  }
  return true;
}

static bool arg_i64(napi_env env, napi_value v, int idx, int64_t *out) {
  if (!expect_number(env, v, idx)) return false;
  if (napi_get_value_int64(env, v, out) != napi_ok) {
    throw_napi(env, "napi_get_value_int64");
    return false;
  }
  return true;
}

/*
 * Copy a JS string into buf (STR_BUF bytes).
 * Returns 0 on success, -1 with a pending exception on a type error, or
 * ENAMETOOLONG (not thrown) so hot-path callers can return it as an errno.
 */
static int arg_str(napi_env env, napi_value v, int idx, char *buf) {
  napi_valuetype t;
  size_t len = 0;
  char msg[64];
  if (napi_typeof(env, v, &t) != napi_ok) {
    throw_napi(env, "napi_typeof");
    return -1;
  }
  if (t != napi_string) {
    snprintf(msg, sizeof msg, "argument %d must be a string", idx);
    throw_type(env, msg);
    return -1;
  }
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    throw_napi(env, "napi_get_value_string_utf8");
    return -1;
  }
  if (len >= STR_BUF) return ENAMETOOLONG;
  if (napi_get_value_string_utf8(env, v, buf, STR_BUF, &len) != napi_ok) {
    throw_napi(env, "napi_get_value_string_utf8");
    return -1;
  }
  /* An embedded NUL would silently truncate the path; Node's fs rejects these too. */
  if (strlen(buf) != len) {
    snprintf(msg, sizeof msg, "argument %d must not contain null bytes", idx);
    throw_type(env, msg);
    return -1;
  }
  return 0;
}

/* arg_str for throwing wrappers: too-long strings become an ENAMETOOLONG fs error. */
static bool arg_str_throw(napi_env env, napi_value v, int idx, char *buf, const char *syscall) {
  int r = arg_str(env, v, idx, buf);
  if (r == 0) return true;
  if (r > 0) throw_errno(env, r, syscall, NULL, NULL);
  return false;
}

static napi_value ret_undefined(napi_env env) {
  napi_value u;
  NAPI_CALL(env, napi_get_undefined(env, &u));
  return u;
}

static napi_value ret_double(napi_env env, double d) {
  napi_value v;
  NAPI_CALL(env, napi_create_double(env, d, &v));
  return v;
}

static napi_value ret_int32(napi_env env, int32_t i) {
  napi_value v;
  NAPI_CALL(env, napi_create_int32(env, i, &v));
  return v;
}

/* ---------- mount ---------- */

static napi_value js_mount(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  char source[STR_BUF], target[STR_BUF], fstype[STR_BUF], data[STR_BUF];
  int64_t flags;
  if (!get_args(env, info, 5, argv)) return NULL;
  if (!arg_str_throw(env, argv[0], 1, source, "mount")) return NULL;
  if (!arg_str_throw(env, argv[1], 2, target, "mount")) return NULL;
  if (!arg_str_throw(env, argv[2], 3, fstype, "mount")) return NULL;
  if (!arg_i64(env, argv[3], 4, &flags)) return NULL;
  if (!arg_str_throw(env, argv[4], 5, data, "mount")) return NULL;
  /* Empty data means "no options": pass NULL, as mount(8) does. */
  if (mount(source, target, fstype, (unsigned long)flags, data[0] ? data : NULL) != 0)
    return throw_errno(env, errno, "mount", source, target);
  return ret_undefined(env);
}

static napi_value js_umount2(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char target[STR_BUF];
  int32_t flags;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!arg_str_throw(env, argv[0], 1, target, "umount2")) return NULL;
  if (!arg_i32(env, argv[1], 2, &flags)) return NULL;
  if (umount2(target, flags) != 0) return throw_errno(env, errno, "umount2", target, NULL);
  return ret_undefined(env);
}

/* ---------- FUSE device ioctls ---------- */

static napi_value js_fuse_backing_open(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t dev_fd, backing_fd;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &dev_fd)) return NULL;
  if (!arg_i32(env, argv[1], 2, &backing_fd)) return NULL;
  struct strata_fuse_backing_map map = {.fd = backing_fd, .flags = 0, .padding = 0};
  int id = ioctl(dev_fd, STRATA_FUSE_DEV_IOC_BACKING_OPEN, &map);
  if (id < 0) return throw_errno(env, errno, "ioctl(FUSE_DEV_IOC_BACKING_OPEN)", NULL, NULL);
  return ret_int32(env, id);
}

static napi_value js_fuse_backing_close(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t dev_fd;
  uint32_t id;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &dev_fd)) return NULL;
  if (!arg_u32(env, argv[1], 2, &id)) return NULL;
  if (ioctl(dev_fd, STRATA_FUSE_DEV_IOC_BACKING_CLOSE, &id) != 0)
    return throw_errno(env, errno, "ioctl(FUSE_DEV_IOC_BACKING_CLOSE)", NULL, NULL);
  return ret_undefined(env);
}

static napi_value js_fuse_clone(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t new_fd;
  uint32_t session_fd;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &new_fd)) return NULL;
  if (!arg_u32(env, argv[1], 2, &session_fd)) return NULL;
  if (ioctl(new_fd, STRATA_FUSE_DEV_IOC_CLONE, &session_fd) != 0)
    return throw_errno(env, errno, "ioctl(FUSE_DEV_IOC_CLONE)", NULL, NULL);
  return ret_undefined(env);
}

/* ---------- mknod ---------- */

static napi_value js_mknod(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char path[STR_BUF];
  uint32_t mode, maj, min;
  if (!get_args(env, info, 4, argv)) return NULL;
  if (!arg_str_throw(env, argv[0], 1, path, "mknod")) return NULL;
  if (!arg_u32(env, argv[1], 2, &mode)) return NULL;
  if (!arg_u32(env, argv[2], 3, &maj)) return NULL;
  if (!arg_u32(env, argv[3], 4, &min)) return NULL;
  if (mknod(path, (mode_t)mode, makedev(maj, min)) != 0) return throw_errno(env, errno, "mknod", path, NULL);
  return ret_undefined(env);
}

/* ---------- stat into a Float64Array (hot path: returns errno) ---------- */

/* Validate `v` as a Float64Array of length >= STAT_ARRAY_LEN; NULL with a pending exception otherwise. */
static double *stat_array(napi_env env, napi_value v) {
  bool is_ta = false;
  napi_typedarray_type type;
  size_t length = 0;
  void *data = NULL;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok) {
    throw_napi(env, "napi_is_typedarray");
    return NULL;
  }
  if (!is_ta) {
    throw_type(env, "stat output must be a Float64Array");
    return NULL;
  }
  if (napi_get_typedarray_info(env, v, &type, &length, &data, NULL, NULL) != napi_ok) {
    throw_napi(env, "napi_get_typedarray_info");
    return NULL;
  }
  if (type != napi_float64_array || length < STAT_ARRAY_LEN || data == NULL) {
    throw_type(env, "stat output must be a Float64Array of length >= 18");
    return NULL;
  }
  return (double *)data;
}

static void fill_stat(const struct stat *st, double *out) {
  out[0] = (double)st->st_dev;
  out[1] = (double)st->st_ino;
  out[2] = (double)st->st_mode;
  out[3] = (double)st->st_nlink;
  out[4] = (double)st->st_uid;
  out[5] = (double)st->st_gid;
  out[6] = (double)st->st_rdev;
  out[7] = (double)st->st_size;
  out[8] = (double)st->st_blksize;
  out[9] = (double)st->st_blocks;
  out[10] = (double)st->st_atim.tv_sec;
  out[11] = (double)st->st_atim.tv_nsec;
  out[12] = (double)st->st_mtim.tv_sec;
  out[13] = (double)st->st_mtim.tv_nsec;
  out[14] = (double)st->st_ctim.tv_sec;
  out[15] = (double)st->st_ctim.tv_nsec;
  /* Split here so JS never has to decode glibc's dev_t bit layout. */
  out[16] = (double)major(st->st_rdev);
  out[17] = (double)minor(st->st_rdev);
}

static napi_value js_lstat_into(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char path[STR_BUF];
  struct stat st;
  if (!get_args(env, info, 2, argv)) return NULL;
  int r = arg_str(env, argv[0], 1, path);
  if (r < 0) return NULL;
  double *out = stat_array(env, argv[1]);
  if (out == NULL) return NULL;
  if (r > 0) return ret_int32(env, r);
  if (lstat(path, &st) != 0) return ret_int32(env, errno);
  fill_stat(&st, out);
  return ret_int32(env, 0);
}

static napi_value js_fstat_into(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd;
  struct stat st;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &fd)) return NULL;
  double *out = stat_array(env, argv[1]);
  if (out == NULL) return NULL;
  if (fstat(fd, &st) != 0) return ret_int32(env, errno);
  fill_stat(&st, out);
  return ret_int32(env, 0);
}

/* ---------- xattrs (path variants use l*, never following symlinks) ---------- */

/* Either a path (l* calls) or an fd (f* calls). */
struct xtarget {
  const char *path;
  int fd;
};

static ssize_t x_get(const struct xtarget *t, const char *name, void *buf, size_t size) {
  return t->path ? lgetxattr(t->path, name, buf, size) : fgetxattr(t->fd, name, buf, size);
}

static ssize_t x_list(const struct xtarget *t, char *buf, size_t size) {
  return t->path ? llistxattr(t->path, buf, size) : flistxattr(t->fd, buf, size);
}

static int x_set(const struct xtarget *t, const char *name, const void *val, size_t size, int flags) {
  return t->path ? lsetxattr(t->path, name, val, size, flags) : fsetxattr(t->fd, name, val, size, flags);
}

static napi_value do_getxattr(napi_env env, const struct xtarget *t, const char *name, const char *syscall) {
  napi_value result;
  for (;;) {
    /* Probe the size, then fetch; the value may grow in between, hence the ERANGE retry. */
    ssize_t size = x_get(t, name, NULL, 0);
    if (size < 0) {
      int e = errno;
      if (e == ENODATA || e == ENOTSUP) break;
      return throw_errno(env, e, syscall, t->path, NULL);
    }
    if (size == 0) {
      void *data;
      NAPI_CALL(env, napi_create_buffer(env, 0, &data, &result));
      return result;
    }
    void *buf = malloc((size_t)size);
    if (buf == NULL) return throw_errno(env, ENOMEM, syscall, t->path, NULL);
    ssize_t got = x_get(t, name, buf, (size_t)size);
    if (got < 0) {
      int e = errno;
      free(buf);
      if (e == ERANGE) continue;
      if (e == ENODATA || e == ENOTSUP) break;
      return throw_errno(env, e, syscall, t->path, NULL);
    }
    napi_status s = napi_create_buffer_copy(env, (size_t)got, buf, NULL, &result);
    free(buf);
    if (s != napi_ok) {
      throw_napi(env, "napi_create_buffer_copy");
      return NULL;
    }
    return result;
  }
  NAPI_CALL(env, napi_get_null(env, &result));
  return result;
}

static napi_value do_listxattr(napi_env env, const struct xtarget *t, const char *syscall) {
  napi_value arr, s;
  char *buf = NULL;
  ssize_t got;
  for (;;) {
    ssize_t size = x_list(t, NULL, 0);
    if (size < 0) {
      int e = errno;
      if (e == ENOTSUP) {
        got = 0;
        break;
      }
      return throw_errno(env, e, syscall, t->path, NULL);
    }
    if (size == 0) {
      got = 0;
      break;
    }
    buf = malloc((size_t)size);
    if (buf == NULL) return throw_errno(env, ENOMEM, syscall, t->path, NULL);
    got = x_list(t, buf, (size_t)size);
    if (got >= 0) break;
    int e = errno;
    free(buf);
    buf = NULL;
    if (e == ERANGE) continue;
    if (e == ENOTSUP) {
      got = 0;
      break;
    }
    return throw_errno(env, e, syscall, t->path, NULL);
  }
  NAPI_CALL_GOTO(env, napi_create_array(env, &arr), fail);
  /* The kernel returns NUL-terminated names back to back. */
  uint32_t i = 0;
  for (ssize_t off = 0; off < got;) {
    size_t len = strnlen(buf + off, (size_t)(got - off));
    if (len > 0) {
      NAPI_CALL_GOTO(env, napi_create_string_utf8(env, buf + off, len, &s), fail);
      NAPI_CALL_GOTO(env, napi_set_element(env, arr, i++, s), fail);
    }
    off += (ssize_t)len + 1;
  }
  free(buf);
  return arr;
fail:
  free(buf);
  return NULL;
}

static napi_value do_setxattr(napi_env env, const struct xtarget *t, const char *name, napi_value value,
                              napi_value flags_v, const char *syscall) {
  bool is_buf = false;
  void *data = NULL;
  size_t len = 0;
  int32_t flags;
  NAPI_CALL(env, napi_is_buffer(env, value, &is_buf));
  if (!is_buf) return throw_type(env, "xattr value must be a Buffer or Uint8Array");
  NAPI_CALL(env, napi_get_buffer_info(env, value, &data, &len));
  if (!arg_i32(env, flags_v, 4, &flags)) return NULL;
  if (x_set(t, name, len ? data : "", len, flags) != 0) return throw_errno(env, errno, syscall, t->path, NULL);
  return ret_undefined(env);
}

static napi_value js_lgetxattr(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char path[STR_BUF], name[STR_BUF];
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!arg_str_throw(env, argv[0], 1, path, "lgetxattr")) return NULL;
  if (!arg_str_throw(env, argv[1], 2, name, "lgetxattr")) return NULL;
  struct xtarget t = {path, -1};
  return do_getxattr(env, &t, name, "lgetxattr");
}

static napi_value js_fgetxattr(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char name[STR_BUF];
  int32_t fd;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &fd)) return NULL;
  if (!arg_str_throw(env, argv[1], 2, name, "fgetxattr")) return NULL;
  struct xtarget t = {NULL, fd};
  return do_getxattr(env, &t, name, "fgetxattr");
}

static napi_value js_lsetxattr(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char path[STR_BUF], name[STR_BUF];
  if (!get_args(env, info, 4, argv)) return NULL;
  if (!arg_str_throw(env, argv[0], 1, path, "lsetxattr")) return NULL;
  if (!arg_str_throw(env, argv[1], 2, name, "lsetxattr")) return NULL;
  struct xtarget t = {path, -1};
  return do_setxattr(env, &t, name, argv[2], argv[3], "lsetxattr");
}

static napi_value js_fsetxattr(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char name[STR_BUF];
  int32_t fd;
  if (!get_args(env, info, 4, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &fd)) return NULL;
  if (!arg_str_throw(env, argv[1], 2, name, "fsetxattr")) return NULL;
  struct xtarget t = {NULL, fd};
  return do_setxattr(env, &t, name, argv[2], argv[3], "fsetxattr");
}

static napi_value js_llistxattr(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char path[STR_BUF];
  if (!get_args(env, info, 1, argv)) return NULL;
  if (!arg_str_throw(env, argv[0], 1, path, "llistxattr")) return NULL;
  struct xtarget t = {path, -1};
  return do_listxattr(env, &t, "llistxattr");
}

static napi_value js_flistxattr(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (!get_args(env, info, 1, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &fd)) return NULL;
  struct xtarget t = {NULL, fd};
  return do_listxattr(env, &t, "flistxattr");
}

static napi_value js_lremovexattr(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char path[STR_BUF], name[STR_BUF];
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!arg_str_throw(env, argv[0], 1, path, "lremovexattr")) return NULL;
  if (!arg_str_throw(env, argv[1], 2, name, "lremovexattr")) return NULL;
  if (lremovexattr(path, name) != 0) return throw_errno(env, errno, "lremovexattr", path, NULL);
  return ret_undefined(env);
}

/* ---------- renameat2 ---------- */

static napi_value js_renameat2(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char oldp[STR_BUF], newp[STR_BUF];
  uint32_t flags;
  if (!get_args(env, info, 3, argv)) return NULL;
  if (!arg_str_throw(env, argv[0], 1, oldp, "renameat2")) return NULL;
  if (!arg_str_throw(env, argv[1], 2, newp, "renameat2")) return NULL;
  if (!arg_u32(env, argv[2], 3, &flags)) return NULL;
  if (syscall(SYS_renameat2, AT_FDCWD, oldp, AT_FDCWD, newp, flags) != 0)
    return throw_errno(env, errno, "renameat2", oldp, newp);
  return ret_undefined(env);
}

/* ---------- timestamps ---------- */

static bool arg_times(napi_env env, napi_value *argv, int first_idx, struct timespec ts[2]) {
  int64_t v[4];
  for (int i = 0; i < 4; i++)
    if (!arg_i64(env, argv[i], first_idx + i, &v[i])) return false;
  ts[0].tv_sec = (time_t)v[0];
  ts[0].tv_nsec = (long)v[1];
  ts[1].tv_sec = (time_t)v[2];
  ts[1].tv_nsec = (long)v[3];
  return true;
}

static napi_value js_utimensat(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  char path[STR_BUF];
  struct timespec ts[2];
  int32_t flags;
  if (!get_args(env, info, 6, argv)) return NULL;
  if (!arg_str_throw(env, argv[0], 1, path, "utimensat")) return NULL;
  if (!arg_times(env, argv + 1, 2, ts)) return NULL;
  if (!arg_i32(env, argv[5], 6, &flags)) return NULL;
  if (utimensat(AT_FDCWD, path, ts, flags) != 0) return throw_errno(env, errno, "utimensat", path, NULL);
  return ret_undefined(env);
}

static napi_value js_futimens(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  int32_t fd;
  struct timespec ts[2];
  if (!get_args(env, info, 5, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &fd)) return NULL;
  if (!arg_times(env, argv + 1, 2, ts)) return NULL;
  if (futimens(fd, ts) != 0) return throw_errno(env, errno, "futimens", NULL, NULL);
  return ret_undefined(env);
}

/* ---------- file data ---------- */

static napi_value js_lseek(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t fd, whence;
  int64_t offset;
  if (!get_args(env, info, 3, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &fd)) return NULL;
  if (!arg_i64(env, argv[1], 2, &offset)) return NULL;
  if (!arg_i32(env, argv[2], 3, &whence)) return NULL;
  off_t r = lseek(fd, (off_t)offset, whence);
  if (r < 0) {
    /* ENXIO is the normal "no more data/hole past offset" answer for SEEK_DATA/SEEK_HOLE. */
    if (errno == ENXIO) return ret_int32(env, -1);
    return throw_errno(env, errno, "lseek", NULL, NULL);
  }
  return ret_double(env, (double)r);
}

static napi_value js_copy_file_range(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  int32_t fd_in, fd_out;
  int64_t off_in, off_out, len;
  if (!get_args(env, info, 5, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &fd_in)) return NULL;
  if (!arg_i64(env, argv[1], 2, &off_in)) return NULL;
  if (!arg_i32(env, argv[2], 3, &fd_out)) return NULL;
  if (!arg_i64(env, argv[3], 4, &off_out)) return NULL;
  if (!arg_i64(env, argv[4], 5, &len)) return NULL;
  if (len < 0) return throw_errno(env, EINVAL, "copy_file_range", NULL, NULL);
  loff_t in = (loff_t)off_in, out = (loff_t)off_out;
  ssize_t r = copy_file_range(fd_in, &in, fd_out, &out, (size_t)len, 0);
  if (r < 0) return throw_errno(env, errno, "copy_file_range", NULL, NULL);
  return ret_double(env, (double)r);
}

static napi_value js_ficlone(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t dest_fd, src_fd;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &dest_fd)) return NULL;
  if (!arg_i32(env, argv[1], 2, &src_fd)) return NULL;
  if (ioctl(dest_fd, FICLONE, src_fd) != 0) return throw_errno(env, errno, "ioctl(FICLONE)", NULL, NULL);
  return ret_undefined(env);
}

/* syncfs of the filesystem holding path (a directory): 0 or -errno. */
static napi_value js_syncfs(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char path[STR_BUF];
  if (!get_args(env, info, 1, argv)) return NULL;
  int r = arg_str(env, argv[0], 1, path);
  if (r < 0) return NULL;
  if (r > 0) return ret_int32(env, -r);
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ret_int32(env, -errno);
  int rc = syncfs(fd) == 0 ? 0 : -errno;
  close(fd);
  return ret_int32(env, rc);
}

/* sync_file_range(fd, offset, nbytes, flags): 0 or -errno (start writeback without waiting for it). */
static napi_value js_sync_file_range(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int32_t fd, flags;
  int64_t offset, nbytes;
  if (!get_args(env, info, 4, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &fd)) return NULL;
  if (!arg_i64(env, argv[1], 2, &offset)) return NULL;
  if (!arg_i64(env, argv[2], 3, &nbytes)) return NULL;
  if (!arg_i32(env, argv[3], 4, &flags)) return NULL;
  return ret_int32(env, sync_file_range(fd, offset, nbytes, (unsigned int)flags) == 0 ? 0 : -errno);
}

/* ---------- file handles (overlayfs origin) ---------- */

#define STRATA_FS_IOC_GETFSUUID 0x80111500UL /* _IOR(0x15, 0, struct fsuuid2 { u8 len; u8 uuid[16]; }) */

/* name_to_handle_at(fd, "", AT_EMPTY_PATH): [handle_type int32 LE][f_handle bytes]; null when
 * the filesystem has no file handles (EOPNOTSUPP). */
static napi_value js_name_to_handle(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  int32_t fd;
  if (!get_args(env, info, 1, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &fd)) return NULL;
  union {
    struct file_handle fh;
    char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
  } h;
  int mount_id;
  h.fh.handle_bytes = MAX_HANDLE_SZ;
  if (name_to_handle_at(fd, "", &h.fh, &mount_id, AT_EMPTY_PATH) != 0) {
    if (errno == EOPNOTSUPP || errno == EOVERFLOW) {
      NAPI_CALL(env, napi_get_null(env, &result));
      return result;
    }
    return throw_errno(env, errno, "name_to_handle_at", NULL, NULL);
  }
  char out[4 + MAX_HANDLE_SZ];
  int32_t type = h.fh.handle_type;
  memcpy(out, &type, 4);
  memcpy(out + 4, h.fh.f_handle, h.fh.handle_bytes);
  NAPI_CALL(env, napi_create_buffer_copy(env, 4 + h.fh.handle_bytes, out, NULL, &result));
  return result;
}

/* open_by_handle_at(mountFd, handle as name_to_handle gives it, flags): the fd, or -errno. */
static napi_value js_open_by_handle(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t mount_fd, flags;
  void *data;
  size_t len;
  if (!get_args(env, info, 3, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &mount_fd)) return NULL;
  if (napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok) return throw_type(env, "argument 2 must be a Buffer");
  if (!arg_i32(env, argv[2], 3, &flags)) return NULL;
  if (len < 4 || len - 4 > MAX_HANDLE_SZ) return ret_int32(env, -EINVAL);
  union {
    struct file_handle fh;
    char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
  } h;
  int32_t type;
  memcpy(&type, data, 4);
  h.fh.handle_type = type;
  h.fh.handle_bytes = (unsigned int)(len - 4);
  memcpy(h.fh.f_handle, (char *)data + 4, len - 4);
  int fd = open_by_handle_at(mount_fd, &h.fh, flags | O_CLOEXEC);
  return ret_int32(env, fd < 0 ? -errno : fd);
}

/* The filesystem's UUID (super_block s_uuid) as FS_IOC_GETFSUUID gives it; null when it has none. */
static napi_value js_fs_uuid(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  int32_t fd;
  if (!get_args(env, info, 1, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &fd)) return NULL;
  unsigned char u[17] = {0};
  if (ioctl(fd, STRATA_FS_IOC_GETFSUUID, u) != 0 || u[0] > 16) {
    NAPI_CALL(env, napi_get_null(env, &result));
    return result;
  }
  NAPI_CALL(env, napi_create_buffer_copy(env, 16, u + 1, NULL, &result));
  return result;
}

static napi_value js_fallocate(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int32_t fd, mode;
  int64_t offset, len;
  if (!get_args(env, info, 4, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &fd)) return NULL;
  if (!arg_i32(env, argv[1], 2, &mode)) return NULL;
  if (!arg_i64(env, argv[2], 3, &offset)) return NULL;
  if (!arg_i64(env, argv[3], 4, &len)) return NULL;
  if (fallocate(fd, mode, (off_t)offset, (off_t)len) != 0) return throw_errno(env, errno, "fallocate", NULL, NULL);
  return ret_undefined(env);
}

static napi_value js_linkat_empty_path(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd;
  char newp[STR_BUF];
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &fd)) return NULL;
  if (!arg_str_throw(env, argv[1], 2, newp, "linkat")) return NULL;
  if (linkat(fd, "", AT_FDCWD, newp, AT_EMPTY_PATH) != 0) return throw_errno(env, errno, "linkat", newp, NULL);
  return ret_undefined(env);
}

/* ---------- directories ---------- */

static napi_value js_readdir_ino(napi_env env, napi_callback_info info) {
  napi_value argv[1], result = NULL, names, types_ab, types, inos_ab, inos, s;
  char path[STR_BUF];
  uint8_t *tbuf = NULL;
  double *ibuf = NULL;
  size_t n = 0, cap = 0;
  DIR *dir = NULL;
  if (!get_args(env, info, 1, argv)) return NULL;
  if (!arg_str_throw(env, argv[0], 1, path, "opendir")) return NULL;
  dir = opendir(path);
  if (dir == NULL) return throw_errno(env, errno, "opendir", path, NULL);
  NAPI_CALL_GOTO(env, napi_create_array(env, &names), done);
  for (;;) {
    errno = 0; /* readdir signals errors only through errno */
    struct dirent *de = readdir(dir);
    if (de == NULL) {
      if (errno != 0) {
        throw_errno(env, errno, "readdir", path, NULL);
        goto done;
      }
      break;
    }
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 64;
      uint8_t *nt = realloc(tbuf, ncap);
      if (nt == NULL) goto oom;
      tbuf = nt;
      double *ni = realloc(ibuf, ncap * sizeof *ibuf);
      if (ni == NULL) goto oom;
      ibuf = ni;
      cap = ncap;
    }
    tbuf[n] = de->d_type;
    ibuf[n] = (double)de->d_ino;
    NAPI_CALL_GOTO(env, napi_create_string_utf8(env, de->d_name, NAPI_AUTO_LENGTH, &s), done);
    NAPI_CALL_GOTO(env, napi_set_element(env, names, (uint32_t)n, s), done);
    n++;
  }
  void *data;
  NAPI_CALL_GOTO(env, napi_create_arraybuffer(env, n, &data, &types_ab), done);
  if (n) memcpy(data, tbuf, n);
  NAPI_CALL_GOTO(env, napi_create_typedarray(env, napi_uint8_array, n, types_ab, 0, &types), done);
  NAPI_CALL_GOTO(env, napi_create_arraybuffer(env, n * sizeof(double), &data, &inos_ab), done);
  if (n) memcpy(data, ibuf, n * sizeof(double));
  NAPI_CALL_GOTO(env, napi_create_typedarray(env, napi_float64_array, n, inos_ab, 0, &inos), done);
  napi_value obj;
  NAPI_CALL_GOTO(env, napi_create_object(env, &obj), done);
  NAPI_CALL_GOTO(env, napi_set_named_property(env, obj, "names", names), done);
  NAPI_CALL_GOTO(env, napi_set_named_property(env, obj, "types", types), done);
  NAPI_CALL_GOTO(env, napi_set_named_property(env, obj, "inos", inos), done);
  result = obj;
  goto done;
oom:
  throw_errno(env, ENOMEM, "readdir", path, NULL);
done:
  free(tbuf);
  free(ibuf);
  closedir(dir);
  return result;
}

/* ---------- process ---------- */

static napi_value js_umask(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  uint32_t mask;
  if (!get_args(env, info, 1, argv)) return NULL;
  if (!arg_u32(env, argv[0], 1, &mask)) return NULL;
  return ret_int32(env, (int32_t)umask((mode_t)mask));
}

/* unshare(2) for the calling thread (e.g. CLONE_FS: its own umask and cwd). */
static napi_value js_unshare(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t flags;
  if (!get_args(env, info, 1, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &flags)) return NULL;
  if (unshare(flags) != 0) return throw_errno(env, errno, "unshare", NULL, NULL);
  return ret_undefined(env);
}

/* Advisory whole-file lock (LOCK_EX|LOCK_NB etc.); returns errno, 0 on success. */
static napi_value js_flock(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd, op;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &fd) || !arg_i32(env, argv[1], 2, &op)) return NULL;
  return ret_int32(env, flock(fd, op) == 0 ? 0 : errno);
}

/* Arguments (fd, Buffer, ...): the fd and the Buffer's bytes; false with a JS exception pending. */
static bool fd_and_buffer(napi_env env, napi_value *argv, int32_t *fd, void **data, size_t *len) {
  if (!arg_i32(env, argv[0], 1, fd)) return false;
  if (napi_get_buffer_info(env, argv[1], data, len) != napi_ok) {
    napi_throw_type_error(env, NULL, "argument 2 must be a Buffer");
    return false;
  }
  return true;
}

/* Argument 3, a byte count within a Buffer of `len` bytes; false with a RangeError pending. */
static bool arg_len_within(napi_env env, napi_value v, size_t len, uint32_t *count) {
  if (napi_get_value_uint32(env, v, count) != napi_ok || *count > len) {
    napi_throw_range_error(env, NULL, "argument 3 must be a length within the Buffer");
    return false;
  }
  return true;
}

/* read(2) into a Buffer without throwing: bytes read, or -errno (e.g. -EAGAIN). */
static napi_value js_read_into(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd;
  void *data;
  size_t len;
  if (!get_args(env, info, 2, argv) || !fd_and_buffer(env, argv, &fd, &data, &len)) return NULL;
  ssize_t n = read(fd, data, len);
  return ret_int32(env, n >= 0 ? (int32_t)n : -errno);
}

/* write(2) of the first `count` bytes of a Buffer without throwing: bytes written, or -errno. */
static napi_value js_write_from(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t fd;
  uint32_t count;
  void *data;
  size_t len;
  if (!get_args(env, info, 3, argv) || !fd_and_buffer(env, argv, &fd, &data, &len)) return NULL;
  if (!arg_len_within(env, argv[2], len, &count)) return NULL;
  ssize_t n = write(fd, data, count);
  return ret_int32(env, n >= 0 ? (int32_t)n : -errno);
}

/* ---------- event waiting (the FUSE engine's threads wait on many /dev/fuse fds) ---------- */

/* epoll_create1(EPOLL_CLOEXEC): the fd, or -errno. */
static napi_value js_epoll_create(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = epoll_create1(EPOLL_CLOEXEC);
  return ret_int32(env, fd >= 0 ? fd : -errno);
}

/* epoll_ctl(epfd, op, fd, {events, data.fd = fd}): 0, or -errno. */
static napi_value js_epoll_ctl(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int32_t epfd, op, fd;
  uint32_t events;
  if (!get_args(env, info, 4, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &epfd) || !arg_i32(env, argv[1], 2, &op) || !arg_i32(env, argv[2], 3, &fd) ||
      !arg_u32(env, argv[3], 4, &events))
    return NULL;
  struct epoll_event ev = {.events = events, .data = {.fd = fd}};
  return ret_int32(env, epoll_ctl(epfd, op, fd, &ev) == 0 ? 0 : -errno);
}

/* epoll_wait into a Buffer of (u32 events, i32 fd) pairs: the number of pairs, or -errno. */
static napi_value js_epoll_wait(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t epfd, timeout;
  void *data;
  size_t len;
  if (!get_args(env, info, 3, argv) || !fd_and_buffer(env, argv, &epfd, &data, &len)) return NULL;
  if (!arg_i32(env, argv[2], 3, &timeout)) return NULL;
  struct epoll_event evs[64];
  int max = (int)(len / 8);
  if (max > 64) max = 64;
  if (max < 1) {
    napi_throw_range_error(env, NULL, "argument 2 must hold at least one event (8 bytes)");
    return NULL;
  }
  int n = epoll_wait(epfd, evs, max, timeout);
  if (n < 0) return ret_int32(env, -errno);
  uint32_t *out = data;
  for (int i = 0; i < n; i++) {
    out[2 * i] = evs[i].events;
    out[2 * i + 1] = (uint32_t)evs[i].data.fd;
  }
  return ret_int32(env, n);
}

/* eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK): the fd, or -errno. */
static napi_value js_eventfd(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  return ret_int32(env, fd >= 0 ? fd : -errno);
}

/* fcntl(fd, cmd, arg) with an integer argument: its result, or -errno. */
static napi_value js_fcntl(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t fd, cmd, arg;
  if (!get_args(env, info, 3, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &fd) || !arg_i32(env, argv[1], 2, &cmd) || !arg_i32(env, argv[2], 3, &arg)) return NULL;
  int r = fcntl(fd, cmd, arg);
  return ret_int32(env, r >= 0 ? r : -errno);
}

/* ---------- Unix sockets (fusermount3's _FUSE_COMMFD hands the /dev/fuse fd over one) ---------- */

/* socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC): the two fds as an array. */
static napi_value js_socketpair(napi_env env, napi_callback_info info) {
  (void)info;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return throw_errno(env, errno, "socketpair", NULL, NULL);
  napi_value arr, a, b;
  if (napi_create_array_with_length(env, 2, &arr) != napi_ok || napi_create_int32(env, sv[0], &a) != napi_ok ||
      napi_create_int32(env, sv[1], &b) != napi_ok || napi_set_element(env, arr, 0, a) != napi_ok ||
      napi_set_element(env, arr, 1, b) != napi_ok) {
    close(sv[0]);
    close(sv[1]);
    throw_napi(env, "socketpair");
    return NULL;
  }
  return arr;
}

/* recvmsg(2) of one byte with one SCM_RIGHTS fd (made close-on-exec): the fd, or -1 when the peer
 * closed without sending one. Throws on a failed recvmsg. */
static napi_value js_recv_fd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t sock;
  if (!get_args(env, info, 1, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &sock)) return NULL;
  char byte;
  struct iovec iov = {.iov_base = &byte, .iov_len = 1};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int))];
  } ctl;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
  ssize_t n;
  do n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) return throw_errno(env, errno, "recvmsg", NULL, NULL);
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  if (n == 0 || c == NULL || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) return ret_int32(env, -1);
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return ret_int32(env, fd);
}

/* ---------- pipes and splice (READ replies without a copy through user space) ---------- */

/* pipe2(O_CLOEXEC): [read end, write end]. */
static napi_value js_pipe2(napi_env env, napi_callback_info info) {
  (void)info;
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return throw_errno(env, errno, "pipe2", NULL, NULL);
  napi_value arr, a, b;
  if (napi_create_array_with_length(env, 2, &arr) != napi_ok || napi_create_int32(env, p[0], &a) != napi_ok ||
      napi_create_int32(env, p[1], &b) != napi_ok || napi_set_element(env, arr, 0, a) != napi_ok ||
      napi_set_element(env, arr, 1, b) != napi_ok) {
    close(p[0]);
    close(p[1]);
    throw_napi(env, "pipe2");
    return NULL;
  }
  return arr;
}

/* fcntl(fd, F_SETPIPE_SZ, size): the pipe's new capacity, or -errno. */
static napi_value js_set_pipe_size(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd, size;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &fd) || !arg_i32(env, argv[1], 2, &size)) return NULL;
  int r = fcntl(fd, F_SETPIPE_SZ, size);
  return ret_int32(env, r >= 0 ? r : -errno);
}

/* splice(2) without throwing (hot path): offsets < 0 mean NULL (the fd's own position, required
 * for pipes); bytes moved, or -errno. */
static napi_value js_splice(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  int32_t fd_in, fd_out;
  int64_t off_in, off_out;
  uint32_t len, flags;
  if (!get_args(env, info, 6, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &fd_in) || !arg_i64(env, argv[1], 2, &off_in) || !arg_i32(env, argv[2], 3, &fd_out) ||
      !arg_i64(env, argv[3], 4, &off_out) || !arg_u32(env, argv[4], 5, &len) || !arg_u32(env, argv[5], 6, &flags))
    return NULL;
  loff_t oi = off_in, oo = off_out;
  ssize_t n = splice(fd_in, off_in < 0 ? NULL : &oi, fd_out, off_out < 0 ? NULL : &oo, len, flags);
  return ret_int32(env, n >= 0 ? (int32_t)n : -errno);
}

/* posix_fadvise(2): 0, or the errno (it returns one rather than setting errno). */
static napi_value js_fadvise(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int32_t fd, advice;
  int64_t off, len;
  if (!get_args(env, info, 4, argv)) return NULL;
  if (!arg_i32(env, argv[0], 1, &fd) || !arg_i64(env, argv[1], 2, &off) || !arg_i64(env, argv[2], 3, &len) ||
      !arg_i32(env, argv[3], 4, &advice))
    return NULL;
  return ret_int32(env, posix_fadvise(fd, off, len, advice));
}

/* ---------- Unix seqpacket sockets with SCM_RIGHTS (the fd holder, daemon/holder) ---------- */

#include <sys/un.h>

static bool unix_addr(napi_env env, napi_value v, int idx, struct sockaddr_un *sa, const char *syscall) {
  char path[STR_BUF];
  if (!arg_str_throw(env, v, idx, path, syscall)) return false;
  if (strlen(path) >= sizeof sa->sun_path) {
    throw_errno(env, ENAMETOOLONG, syscall, path, NULL);
    return false;
  }
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  strcpy(sa->sun_path, path);
  return true;
}

/* socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0): the fd; throws on failure. */
static napi_value js_seqpacket_socket(napi_env env, napi_callback_info info) {
  (void)info;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket", NULL, NULL);
  return ret_int32(env, fd);
}

/* bind(fd, path) for an AF_UNIX socket; throws on failure. */
static napi_value js_bind_unix(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd;
  struct sockaddr_un sa;
  if (!get_args(env, info, 2, argv) || !arg_i32(env, argv[0], 1, &fd) || !unix_addr(env, argv[1], 2, &sa, "bind")) return NULL;
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) return throw_errno(env, errno, "bind", sa.sun_path, NULL);
  return ret_undefined(env);
}

/* listen(fd, backlog); throws on failure. */
static napi_value js_listen(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd, backlog;
  if (!get_args(env, info, 2, argv) || !arg_i32(env, argv[0], 1, &fd) || !arg_i32(env, argv[1], 2, &backlog)) return NULL;
  if (listen(fd, backlog) != 0) return throw_errno(env, errno, "listen", NULL, NULL);
  return ret_undefined(env);
}

/* accept4(fd, NULL, NULL, SOCK_CLOEXEC): the new fd, or -errno. */
static napi_value js_accept4(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (!get_args(env, info, 1, argv) || !arg_i32(env, argv[0], 1, &fd)) return NULL;
  int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
  return ret_int32(env, c >= 0 ? c : -errno);
}

/* connect(fd, path) for an AF_UNIX socket: 0, or -errno (ENOENT, ECONNREFUSED are routine). */
static napi_value js_connect_unix(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd;
  struct sockaddr_un sa;
  if (!get_args(env, info, 2, argv) || !arg_i32(env, argv[0], 1, &fd) || !unix_addr(env, argv[1], 2, &sa, "connect")) return NULL;
  int r;
  do r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
  while (r != 0 && errno == EINTR);
  return ret_int32(env, r == 0 ? 0 : -errno);
}

#define MAX_PASSED_FDS 16

/* sendmsg(fd, buf[0, len), SCM_RIGHTS fds, MSG_NOSIGNAL): bytes sent, or -errno. */
static napi_value js_sendmsg_fds(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int32_t fd;
  uint32_t count, nfds;
  void *data;
  size_t len;
  if (!get_args(env, info, 4, argv) || !fd_and_buffer(env, argv, &fd, &data, &len)) return NULL;
  if (!arg_len_within(env, argv[2], len, &count)) return NULL;
  if (napi_get_array_length(env, argv[3], &nfds) != napi_ok || nfds > MAX_PASSED_FDS) {
    napi_throw_range_error(env, NULL, "argument 4 must be an array of at most 16 fds");
    return NULL;
  }
  int fds[MAX_PASSED_FDS];
  for (uint32_t i = 0; i < nfds; i++) {
    napi_value e;
    if (napi_get_element(env, argv[3], i, &e) != napi_ok || !arg_i32(env, e, 4, &fds[i])) return NULL;
  }
  struct iovec iov = {.iov_base = data, .iov_len = count};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * MAX_PASSED_FDS)];
  } ctl;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (nfds > 0) {
    memset(&ctl, 0, sizeof ctl);
    msg.msg_control = ctl.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  do n = sendmsg(fd, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return ret_int32(env, n >= 0 ? (int32_t)n : -errno);
}

/* recvmsg(fd, buf, MSG_CMSG_CLOEXEC) with up to 16 SCM_RIGHTS fds: -errno, or [bytes, fds]
 * (bytes 0: the peer closed). A message cut short by the buffer fails with EMSGSIZE. */
static napi_value js_recvmsg_fds(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd;
  void *data;
  size_t len;
  if (!get_args(env, info, 2, argv) || !fd_and_buffer(env, argv, &fd, &data, &len)) return NULL;
  struct iovec iov = {.iov_base = data, .iov_len = len};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * MAX_PASSED_FDS)];
  } ctl;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
  ssize_t n;
  do n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) return ret_int32(env, -errno);
  int fds[MAX_PASSED_FDS];
  uint32_t nfds = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    uint32_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (uint32_t i = 0; i < k && nfds < MAX_PASSED_FDS; i++) memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
  }
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    for (uint32_t i = 0; i < nfds; i++) close(fds[i]);
    return ret_int32(env, -EMSGSIZE);
  }
  napi_value arr, list, v;
  NAPI_CALL(env, napi_create_array_with_length(env, 2, &arr));
  NAPI_CALL(env, napi_create_array_with_length(env, nfds, &list));
  for (uint32_t i = 0; i < nfds; i++) {
    NAPI_CALL(env, napi_create_int32(env, fds[i], &v));
    NAPI_CALL(env, napi_set_element(env, list, i, v));
  }
  NAPI_CALL(env, napi_create_int32(env, (int32_t)n, &v));
  NAPI_CALL(env, napi_set_element(env, arr, 0, v));
  NAPI_CALL(env, napi_set_element(env, arr, 1, list));
  return arr;
}

/* ---------- module ---------- */

#define FN(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_default, NULL}

static napi_value init(napi_env env, napi_value exports) {
  static const napi_property_descriptor props[] = {
      FN("mount", js_mount),
      FN("umount2", js_umount2),
      FN("fuseBackingOpen", js_fuse_backing_open),
      FN("fuseBackingClose", js_fuse_backing_close),
      FN("fuseClone", js_fuse_clone),
      FN("mknod", js_mknod),
      FN("lstatInto", js_lstat_into),
      FN("fstatInto", js_fstat_into),
      FN("lgetxattr", js_lgetxattr),
      FN("lsetxattr", js_lsetxattr),
      FN("llistxattr", js_llistxattr),
      FN("lremovexattr", js_lremovexattr),
      FN("fgetxattr", js_fgetxattr),
      FN("fsetxattr", js_fsetxattr),
      FN("flistxattr", js_flistxattr),
      FN("renameat2", js_renameat2),
      FN("utimensat", js_utimensat),
      FN("futimens", js_futimens),
      FN("lseek", js_lseek),
      FN("copyFileRange", js_copy_file_range),
      FN("ficlone", js_ficlone),
      FN("fallocate", js_fallocate),
      FN("syncFileRange", js_sync_file_range),
      FN("syncfs", js_syncfs),
      FN("nameToHandle", js_name_to_handle),
      FN("openByHandle", js_open_by_handle),
      FN("fsUuid", js_fs_uuid),
      FN("linkatEmptyPath", js_linkat_empty_path),
      FN("readdirIno", js_readdir_ino),
      FN("umask", js_umask),
      FN("unshare", js_unshare),
      FN("flock", js_flock),
      FN("readInto", js_read_into),
      FN("writeFrom", js_write_from),
      FN("epollCreate", js_epoll_create),
      FN("epollCtl", js_epoll_ctl),
      FN("epollWait", js_epoll_wait),
      FN("eventfd", js_eventfd),
      FN("fcntl", js_fcntl),
      FN("socketpair", js_socketpair),
      FN("recvFd", js_recv_fd),
      FN("pipe2", js_pipe2),
      FN("setPipeSize", js_set_pipe_size),
      FN("splice", js_splice),
      FN("fadvise", js_fadvise),
      FN("seqpacketSocket", js_seqpacket_socket),
      FN("bindUnix", js_bind_unix),
      FN("listen", js_listen),
      FN("accept4", js_accept4),
      FN("connectUnix", js_connect_unix),
      FN("sendmsgFds", js_sendmsg_fds),
      FN("recvmsgFds", js_recvmsg_fds),
  };
  NAPI_CALL(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
