/*
 * The store's kernel primitives that Node does not expose: flock(2), syncfs(2), publishing an
 * O_TMPFILE file with linkat(2), and fs-verity (enable, measure). Each function is one system
 * call with its arguments checked; failures throw an Error whose `code` is the errno name, so
 * the JavaScript side maps them exactly as it maps Node's own fs errors. Everything here is
 * optional: src/store/sys.ts has a fallback for each function when this module did not build.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include "napi_async.h"
#include "object_name.h"
#include "link_tmpfile.h"
#include "errno_name.h"
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <linux/fsverity.h>

#define PATH_BUF 4096

static napi_value throw_errno(napi_env env, int err, const char *what) {
  char msg[256];
  const char *name = errno_name(err);
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_value code, message, error;
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_value errnum;
  napi_create_int32(env, -err, &errnum);
  napi_set_named_property(env, error, "errno", errnum);
  napi_throw(env, error);
  return NULL;
}

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

static int get_int(napi_env env, napi_value v, int32_t *out) {
  return napi_get_value_int32(env, v, out) == napi_ok;
}

/* A path argument: a string or a Buffer (names are bytes). NUL-terminated into buf. */
static int get_path(napi_env env, napi_value v, char *buf, size_t cap) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return 0;
  if (t == napi_string) {
    size_t len;
    if (napi_get_value_string_utf8(env, v, buf, cap, &len) != napi_ok) return 0;
    return len < cap - 1;
  }
  bool is_buf = false;
  if (napi_is_buffer(env, v, &is_buf) != napi_ok || !is_buf) return 0;
  void *data;
  size_t len;
  if (napi_get_buffer_info(env, v, &data, &len) != napi_ok || len >= cap) return 0;
  if (memchr(data, 0, len) != NULL) return 0;
  memcpy(buf, data, len);
  buf[len] = 0;
  return 1;
}

static napi_value make_bool(napi_env env, bool b) {
  napi_value v;
  napi_get_boolean(env, b, &v);
  return v;
}

/* flock(fd, op): op 1 shared, 2 exclusive, 3 unlock; never blocks. true when held, false when
 * another holder has it (EWOULDBLOCK). The caller polls, so it can report and honour a timeout. */
static napi_value js_flock(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd, op;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 || !get_int(env, argv[0], &fd) ||
      !get_int(env, argv[1], &op) || op < 1 || op > 3)
    return throw_type(env, "flock(fd, op 1|2|3)");
  int how = op == 1 ? LOCK_SH : op == 2 ? LOCK_EX : LOCK_UN;
  int r;
  do r = flock(fd, how | LOCK_NB); while (r < 0 && errno == EINTR);
  if (r == 0) return make_bool(env, true);
  if (errno == EWOULDBLOCK) return make_bool(env, false);
  return throw_errno(env, errno, "flock");
}

/* linkFd(fd, path): gives the open file `fd` the name `path` (EEXIST if taken; never replaces),
 * see link_tmpfile.h. */
static napi_value js_link_fd(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  char dest[PATH_BUF];
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 || !get_int(env, argv[0], &fd) ||
      !get_path(env, argv[1], dest, sizeof dest))
    return throw_type(env, "linkFd(fd, path)");
  int err = link_tmpfile(fd, AT_FDCWD, dest);
  if (err) return throw_errno(env, err, "linkat");
  return make_bool(env, true);
}

/* A name argument: one path component, not empty (no '/'), NUL-terminated into buf. */
static int get_name(napi_env env, napi_value v, char *buf, size_t cap) {
  return get_path(env, v, buf, cap) && buf[0] != 0 && strchr(buf, '/') == NULL;
}

/* A Buffer argument as bytes (no copy): data and length. */
static int get_bytes(napi_env env, napi_value v, void **data, size_t *len) {
  bool is_buf = false;
  return napi_is_buffer(env, v, &is_buf) == napi_ok && is_buf && napi_get_buffer_info(env, v, data, len) == napi_ok;
}

/* setXattr(fd, entryName | null, key, value): sets one extended attribute, names and value as
 * bytes (Buffers), exactly. With entryName null: on the inode `fd` refers to (an open file or
 * folder, or an O_PATH handle of a device or FIFO), through its /proc link, which setxattr(2)
 * resolves to that inode without opening it. With entryName: on the entry of that name in the
 * folder `fd`, not following it (a symlink's own attributes), through lsetxattr(2). What
 * setfattr(1) does with the same paths, without a process per attribute. */
static napi_value js_set_xattr(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  int32_t fd;
  char key[256];
  void *value;
  size_t value_len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 4 || !get_int(env, argv[0], &fd) ||
      !get_path(env, argv[2], key, sizeof key) || !get_bytes(env, argv[3], &value, &value_len))
    return throw_type(env, "setXattr(fd, entryName | null, key: Buffer, value: Buffer)");
  napi_valuetype t;
  if (napi_typeof(env, argv[1], &t) != napi_ok) return throw_type(env, "setXattr: entryName");
  char path[PATH_BUF];
  int n = snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  int r;
  if (t == napi_null) {
    do r = setxattr(path, key, value, value_len, 0); while (r < 0 && errno == EINTR);
    if (r < 0) return throw_errno(env, errno, "setxattr");
  } else {
    char name[PATH_BUF];
    if (!get_name(env, argv[1], name, sizeof name) || (size_t)n + 1 + strlen(name) >= sizeof path)
      return throw_type(env, "setXattr: entryName must be one path component");
    snprintf(path + n, sizeof path - (size_t)n, "/%s", name);
    do r = lsetxattr(path, key, value, value_len, 0); while (r < 0 && errno == EINTR);
    if (r < 0) return throw_errno(env, errno, "lsetxattr");
  }
  return make_bool(env, true);
}

/* mknodAt(dirFd, name, kind 1 fifo | 2 char | 3 block, major, minor): mknodat(2) of that name in
 * the folder `dirFd`, mode 0600 (the caller sets the entry's own after its owner). EEXIST when
 * the name is taken: it never replaces. */
static napi_value js_mknod_at(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  int32_t dirfd, kind, major, minor;
  char name[PATH_BUF];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 5 || !get_int(env, argv[0], &dirfd) ||
      !get_name(env, argv[1], name, sizeof name) || !get_int(env, argv[2], &kind) || !get_int(env, argv[3], &major) ||
      !get_int(env, argv[4], &minor) || kind < 1 || kind > 3 || major < 0 || minor < 0)
    return throw_type(env, "mknodAt(dirFd, name: Buffer, kind 1|2|3, major, minor)");
  mode_t type = kind == 1 ? S_IFIFO : kind == 2 ? S_IFCHR : S_IFBLK;
  dev_t dev = kind == 1 ? 0 : makedev((unsigned)major, (unsigned)minor);
  int r;
  do r = mknodat(dirfd, name, type | 0600, dev); while (r < 0 && errno == EINTR);
  if (r < 0) return throw_errno(env, errno, "mknodat");
  return make_bool(env, true);
}

/* setTimes(fd, entryName | null, sec, nsec): atime and mtime, to the nanosecond and before 1970
 * too (Node's futimes takes float seconds, keeps microseconds, and puts the current time for a
 * negative one). With entryName null: futimens(2) on `fd`, or, for an O_PATH handle (a device or
 * FIFO; futimens refuses it with EBADF), utimensat(2) on its /proc link, which names the inode
 * itself. With entryName: the entry of that name in the folder `fd`, not following it
 * (utimensat with AT_SYMLINK_NOFOLLOW: a symlink's own times). */
static napi_value js_set_times(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  int32_t fd, nsec;
  int64_t sec;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 4 || !get_int(env, argv[0], &fd) ||
      napi_get_value_int64(env, argv[2], &sec) != napi_ok || !get_int(env, argv[3], &nsec) || nsec < 0 || nsec > 999999999)
    return throw_type(env, "setTimes(fd, entryName | null, sec, nsec 0..999999999)");
  napi_valuetype t;
  if (napi_typeof(env, argv[1], &t) != napi_ok) return throw_type(env, "setTimes: entryName");
  struct timespec ts[2];
  ts[0].tv_sec = (time_t)sec;
  ts[0].tv_nsec = nsec;
  ts[1] = ts[0];
  int r;
  if (t == napi_null) {
    do r = futimens(fd, ts); while (r < 0 && errno == EINTR);
    if (r < 0 && errno == EBADF) {
      char path[64];
      snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
      do r = utimensat(AT_FDCWD, path, ts, 0); while (r < 0 && errno == EINTR);
    }
    if (r < 0) return throw_errno(env, errno, "utimensat");
  } else {
    char name[PATH_BUF];
    if (!get_name(env, argv[1], name, sizeof name)) return throw_type(env, "setTimes: entryName must be one path component");
    do r = utimensat(fd, name, ts, AT_SYMLINK_NOFOLLOW); while (r < 0 && errno == EINTR);
    if (r < 0) return throw_errno(env, errno, "utimensat");
  }
  return make_bool(env, true);
}

/* enableVerity(fd, alg 1|2): FS_IOC_ENABLE_VERITY with 4096-byte blocks and no salt, the
 * parameters every object name is computed with. fd must be open read-only with no writers. */
static napi_value js_enable_verity(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd, alg;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 || !get_int(env, argv[0], &fd) ||
      !get_int(env, argv[1], &alg) || (alg != 1 && alg != 2))
    return throw_type(env, "enableVerity(fd, alg 1|2)");
  struct fsverity_enable_arg arg;
  memset(&arg, 0, sizeof arg);
  arg.version = 1;
  arg.hash_algorithm = (unsigned)alg;
  arg.block_size = 4096;
  int r;
  do r = ioctl(fd, FS_IOC_ENABLE_VERITY, &arg); while (r < 0 && errno == EINTR);
  if (r < 0) return throw_errno(env, errno, "FS_IOC_ENABLE_VERITY");
  return make_bool(env, true);
}

/* measureVerity(fd): the kernel's fs-verity digest of the file as a Buffer (its algorithm is
 * the repository's: the caller checks the length), or throws (ENODATA: verity not enabled on
 * this file; ENOTTY/EOPNOTSUPP: the filesystem has no fs-verity). */
static napi_value js_measure_verity(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 || !get_int(env, argv[0], &fd))
    return throw_type(env, "measureVerity(fd)");
  struct {
    struct fsverity_digest d;
    unsigned char buf[64];
  } m;
  memset(&m, 0, sizeof m);
  m.d.digest_size = 64;
  if (ioctl(fd, FS_IOC_MEASURE_VERITY, &m) < 0) return throw_errno(env, errno, "FS_IOC_MEASURE_VERITY");
  if (m.d.digest_size > 64) return throw_errno(env, EOVERFLOW, "FS_IOC_MEASURE_VERITY");
  napi_value out;
  void *data;
  napi_create_buffer_copy(env, m.d.digest_size, m.d.digest, &data, &out);
  return out;
}

/* syncfs(fd) -> Promise: runs on libuv's thread pool, since it may take seconds. */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  int err;
} sync_job;

static void sync_execute(napi_env env, void *data) {
  (void)env;
  sync_job *job = data;
  job->err = syncfs(job->fd) < 0 ? errno : 0;
}

static void sync_complete(napi_env env, napi_status status, void *data) {
  sync_job *job = data;
  if (status == napi_ok && job->err == 0) {
    napi_value undef;
    napi_get_undefined(env, &undef);
    napi_resolve_deferred(env, job->deferred, undef);
  } else {
    int err = status == napi_ok ? job->err : EINTR;
    char msg[128];
    snprintf(msg, sizeof msg, "syncfs: %s", strerror(err));
    reject_with_code(env, job->deferred, errno_name(err), msg);
  }
  napi_delete_async_work(env, job->work);
  free(job);
}

static napi_value js_syncfs(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 || !get_int(env, argv[0], &fd))
    return throw_type(env, "syncfs(fd)");
  sync_job *job = calloc(1, sizeof *job);
  if (!job) return throw_errno(env, ENOMEM, "syncfs");
  job->fd = fd;
  return queue_promise_work(env, "veritree:syncfs", sync_execute, sync_complete, job, &job->deferred, &job->work);
}


/*
 * readSmall(paths: string[], max: number): Promise<(Buffer | number)[]>: for each path, in one
 * job on libuv's thread pool: open (no symlink followed, never blocking), check it is a regular
 * file of at most `max` bytes, read it whole, close. Per path a Buffer, or a number: -errno, or
 * -1000 - (S_IFMT >> 12) when it is not a regular file, or -2000 when it is larger than `max`.
 * Rebuilding a layer reads thousands of small objects; one job per few of them, instead of four
 * round trips through the thread pool per object, is what keeps the main thread free.
 */
#define READ_SMALL_TOO_BIG (-2000)

typedef struct {
  char *path;
  uint8_t *data;
  size_t len;
  long result; /* 0: data holds the file; else the negative code above */
} small_file;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  size_t count;
  size_t max;
  small_file *files;
} small_job;

/*
 * Opens `path` (relative to dfd, or AT_FDCWD) as the store opens what it reads: no symlink
 * followed, no open that blocks, a regular file only. The descriptor, its size in *size; or
 * -errno, or -1000 - the file type (S_IFMT >> 12).
 */
static long long open_regular_at(int dfd, const char *path, uint64_t *size) {
  int fd = openat(dfd, path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return -(long long)errno;
  struct stat st;
  long long r = fd;
  if (fstat(fd, &st) != 0) r = -(long long)errno;
  else if (!S_ISREG(st.st_mode)) r = -1000 - (long long)((st.st_mode & S_IFMT) >> 12);
  else *size = (uint64_t)st.st_size;
  if (r < 0) close(fd);
  return r;
}

/*
 * Reads [from, from + want) into dst: the bytes read, fewer when the file ends first (it shrank:
 * what is there, the caller's digest check decides), or -errno.
 */
static long long pread_full(int fd, uint8_t *dst, size_t want, uint64_t from) {
  size_t got = 0;
  while (got < want) {
    ssize_t n = pread(fd, dst + got, want - got, (off_t)(from + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -(long long)errno;
    if (n == 0) break;
    got += (size_t)n;
  }
  return (long long)got;
}

static void read_one(small_file *f, size_t max) {
  uint64_t size = 0;
  long long fd = open_regular_at(AT_FDCWD, f->path, &size);
  if (fd < 0) {
    f->result = (long)fd;
    return;
  }
  if (size > max) f->result = READ_SMALL_TOO_BIG;
  else if (!(f->data = malloc(size ? (size_t)size : 1))) f->result = -ENOMEM;
  else {
    long long got = pread_full((int)fd, f->data, (size_t)size, 0);
    if (got < 0) f->result = (long)got;
    else f->len = (size_t)got;
  }
  close((int)fd);
}

static void small_execute(napi_env env, void *data) {
  (void)env;
  small_job *job = data;
  for (size_t i = 0; i < job->count; i++) read_one(&job->files[i], job->max);
}

static void free_data(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static void small_job_free(small_job *job) {
  for (size_t i = 0; i < job->count; i++) {
    free(job->files[i].path);
    free(job->files[i].data);
  }
  free(job->files);
  free(job);
}

static void small_complete(napi_env env, napi_status status, void *data) {
  small_job *job = data;
  napi_value arr;
  if (status != napi_ok || napi_create_array_with_length(env, job->count, &arr) != napi_ok) {
    reject_with_code(env, job->deferred, "EINTR", "readSmall: cancelled");
  } else {
    for (size_t i = 0; i < job->count; i++) {
      small_file *f = &job->files[i];
      napi_value v;
      if (f->result != 0) napi_create_double(env, (double)f->result, &v);
      /* A small file is copied into a buffer of V8's own: cheaper than a finalizer per file. */
      else if (f->len > (64 << 10) && napi_create_external_buffer(env, f->len, f->data, free_data, NULL, &v) == napi_ok) f->data = NULL;
      else napi_create_buffer_copy(env, f->len, f->data, NULL, &v);
      napi_set_element(env, arr, (uint32_t)i, v);
    }
    napi_resolve_deferred(env, job->deferred, arr);
  }
  napi_delete_async_work(env, job->work);
  small_job_free(job);
}

static napi_value js_read_small(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  bool is_array = false;
  uint32_t count;
  double max;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 || napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[0], &count) != napi_ok || napi_get_value_double(env, argv[1], &max) != napi_ok || max < 0)
    return throw_type(env, "readSmall(paths: string[], max: number)");
  small_job *job = calloc(1, sizeof *job);
  if (!job) return throw_errno(env, ENOMEM, "readSmall");
  job->files = calloc(count ? count : 1, sizeof *job->files);
  if (!job->files) {
    free(job);
    return throw_errno(env, ENOMEM, "readSmall");
  }
  job->count = count;
  job->max = (size_t)max;
  for (uint32_t i = 0; i < count; i++) {
    napi_value el;
    char buf[4096];
    size_t len;
    if (napi_get_element(env, argv[0], i, &el) != napi_ok || napi_get_value_string_utf8(env, el, buf, sizeof buf, &len) != napi_ok || len >= sizeof buf - 1 ||
        !(job->files[i].path = strdup(buf))) {
      small_job_free(job);
      return throw_type(env, "readSmall: each path must be a string shorter than 4095 bytes");
    }
  }
  return queue_promise_work(env, "veritree:readSmall", small_execute, small_complete, job, &job->deferred, &job->work);
}

/*
 * assemble(objectsDir, refs: Uint8Array, digestSize, segs: Float64Array, arena: Uint8Array, start,
 * out: Uint8Array, result: Float64Array(4), stop?: Int32Array): Promise<void>: one batch of a
 * rebuilt split stream, laid out in `out` on libuv's thread pool. `refs` is the stream's table of
 * object digests (digestSize bytes each). segs holds two numbers per segment: [0, length] is the
 * next `length` bytes of `arena` (inline bytes), [1, i] is the object of digest i (objects/XX/rest,
 * opened under objectsDir with no symlink followed and no open that blocks, a regular file). The
 * first segment starts `start` bytes in (what an earlier batch wrote of it). The batch stops
 * when `out` is full, mid-segment if need be. result gets [bytes written, whole segments done,
 * bytes done of the next segment, 0] or, when an object cannot be used, [bytes written, its
 * segment, 0, -errno or -1000 - its file type]. Rebuilding a layer reads tens of thousands of
 * objects: the main thread then only decodes the stream, and no object crosses into JavaScript.
 */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  held_arrays held; /* refs, segs, arena, out, result, stop */
  char *dir;
  const uint8_t *refs;
  size_t ds, nrefs_table;
  const double *segs;
  size_t nsegs;
  const uint8_t *arena;
  size_t arena_len;
  uint64_t start;
  uint8_t *out;
  size_t out_len;
  double *result;
  const int32_t *stop;
} assemble_job;

/* Reads [from, from + want) of an object into dst; the bytes read (fewer at its end), or -errno / -1000 - type. */
static long long read_object_part(int dfd, const char *id, uint64_t from, uint8_t *dst, size_t want, uint64_t *size_out) {
  long long fd = open_regular_at(dfd, id, size_out);
  if (fd < 0) return fd;
  long long r = pread_full((int)fd, dst, want, from);
  close((int)fd);
  return r;
}

static void assemble_execute(napi_env env, void *data) {
  (void)env;
  assemble_job *job = data;
  double *res = job->result;
  res[0] = res[1] = res[2] = res[3] = 0;
  int dfd = open(job->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    res[3] = -(double)errno;
    return;
  }
  size_t used = 0, arena_at = 0;
  uint64_t start = job->start;
  size_t i = 0;
  for (; i < job->nsegs && used < job->out_len; i++) {
    if (stop_asked(job->stop)) break;
    double kind = job->segs[2 * i], arg = job->segs[2 * i + 1];
    size_t room = job->out_len - used;
    if (kind == 0) {
      size_t len = (size_t)arg;
      size_t take = len - start < room ? len - (size_t)start : room;
      memcpy(job->out + used, job->arena + arena_at + start, take);
      used += take;
      if (start + take < len) {
        start += take;
        break;
      }
      arena_at += len;
    } else {
      uint64_t size = 0;
      char id[OBJECT_NAME_MAX];
      object_name(job->refs + (size_t)arg * job->ds, job->ds, id);
      long long r = read_object_part(dfd, id, start, job->out + used, room, &size);
      /* A batch that starts inside an object that is not that long: it changed since. */
      if (r >= 0 && start > 0 && start >= size) r = -ERANGE;
      if (r < 0) {
        res[3] = (double)r;
        break;
      }
      used += (size_t)r;
      /* Short of its size and the batch full: the rest in the next batch. */
      if (start + (uint64_t)r < size && used == job->out_len) {
        start += (uint64_t)r;
        break;
      }
    }
    start = 0;
  }
  close(dfd);
  res[0] = (double)used;
  res[1] = (double)i;
  res[2] = (double)start;
}

static void assemble_free(napi_env env, assemble_job *job) {
  release_held(env, &job->held);
  free(job->dir);
  free(job);
}

static void assemble_complete(napi_env env, napi_status status, void *data) {
  assemble_job *job = data;
  settle_job(env, job->deferred, status, NULL, "assemble");
  napi_delete_async_work(env, job->work);
  assemble_free(env, job);
}

static napi_value js_assemble(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  const char *usage = "assemble(objectsDir, refs: Uint8Array, digestSize: 32 | 64, segs: Float64Array, arena: Uint8Array, start, out: Uint8Array, result: Float64Array(4), stop?: Int32Array)";
  uint32_t ds;
  double start;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 8 || napi_get_value_uint32(env, argv[2], &ds) != napi_ok || (ds != 32 && ds != 64) ||
      napi_get_value_double(env, argv[5], &start) != napi_ok || start < 0 || start > 9007199254740991.0)
    return throw_type(env, usage);
  assemble_job *job = calloc(1, sizeof *job);
  if (!job) return throw_errno(env, ENOMEM, "assemble");
  job->start = (uint64_t)start;
  job->ds = ds;
  char buf[PATH_BUF];
  size_t len;
  int ok = napi_get_value_string_utf8(env, argv[0], buf, sizeof buf, &len) == napi_ok && len < sizeof buf - 1 && (job->dir = strdup(buf)) != NULL;
  void *p;
  size_t n;
  if (ok && (ok = hold_typed(env, &job->held, argv[1], napi_uint8_array, &p, &n))) {
    job->refs = p;
    job->nrefs_table = n / ds;
  }
  if (ok && (ok = hold_typed(env, &job->held, argv[3], napi_float64_array, &p, &n))) {
    job->segs = p;
    job->nsegs = n / 2;
  }
  if (ok && (ok = hold_typed(env, &job->held, argv[4], napi_uint8_array, &p, &n))) {
    job->arena = p;
    job->arena_len = n;
  }
  if (ok && (ok = hold_typed(env, &job->held, argv[6], napi_uint8_array, &p, &n))) {
    job->out = p;
    job->out_len = n;
  }
  if (ok && (ok = hold_typed(env, &job->held, argv[7], napi_float64_array, &p, &n) && n >= 4)) job->result = p;
  if (ok) ok = hold_stop(env, &job->held, argv[8], &job->stop);
  /* Every inline segment must lie in the arena, every object index in ids. */
  size_t arena_need = 0;
  for (size_t i = 0; ok && i < job->nsegs; i++) {
    double kind = job->segs[2 * i], arg = job->segs[2 * i + 1];
    if (kind == 0 && arg >= 0 && arg == (double)(size_t)arg) arena_need += (size_t)arg;
    else if (!(kind == 1 && arg >= 0 && arg < (double)job->nrefs_table && arg == (double)(size_t)arg)) ok = 0;
  }
  if (ok && arena_need > job->arena_len) ok = 0;
  /* `start` is how far an earlier batch got into the first segment: inside it, or 0. An object's
     size is known only once it is open (assemble_execute checks it there). */
  if (ok && job->start > 0 && (job->nsegs == 0 || (job->segs[0] == 0 && job->start >= (uint64_t)job->segs[1]))) ok = 0;
  if (!ok) {
    assemble_free(env, job);
    return throw_type(env, usage);
  }
  return queue_promise_work(env, "veritree:assemble", assemble_execute, assemble_complete, job, &job->deferred, &job->work);
}

static napi_value init(napi_env env, napi_value exports) {
  static const export_fn fns[] = {
    {"flock", js_flock},
    {"linkFd", js_link_fd},
    {"enableVerity", js_enable_verity},
    {"measureVerity", js_measure_verity},
    {"syncfs", js_syncfs},
    {"readSmall", js_read_small},
    {"assemble", js_assemble},
    {"setXattr", js_set_xattr},
    {"mknodAt", js_mknod_at},
    {"setTimes", js_set_times},
  };
  return export_functions(env, exports, fns, sizeof fns / sizeof fns[0]);
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
