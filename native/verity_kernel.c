/*
 * The batch SHA back end: hashes every whole 4096-byte block of a buffer in one call.
 * Why native: each node:crypto call from JavaScript costs a few microseconds, about as much as
 * hashing a 4 KiB block with SHA extensions, so per-block calls reach only half of OpenSSL's
 * speed. One call per chunk removes that overhead. It links against the OpenSSL that Node itself
 * ships (its symbols are exported by the node binary), so there is no extra library to install.
 */
#define _GNU_SOURCE
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <node_api.h>
#include "napi_async.h"
#include "sha256_x2.h"
#include "object_name.h"
#include "link_tmpfile.h"
#include "errno_name.h"
#include <openssl/sha.h>
#include <pthread.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCK_SIZE 4096

/*
 * One message's digest through the low-level calls: in OpenSSL 3 the one-shot SHA256() goes
 * through EVP_Q_digest, which looks the algorithm up by name on every call; for 4 KiB blocks
 * that costs about 11% (1.58 vs 1.78 GB/s measured on this project's machine).
 */
static void sha_once(int alg, const uint8_t *in, size_t len, uint8_t *out) {
  if (alg == 1) {
    SHA256_CTX c;
    SHA256_Init(&c);
    SHA256_Update(&c, in, len);
    SHA256_Final(out, &c);
  } else {
    SHA512_CTX c;
    SHA512_Init(&c);
    SHA512_Update(&c, in, len);
    SHA512_Final(out, &c);
  }
}

/* Two 4 KiB blocks at once where the CPU allows (sha256_x2.c); NULL: one at a time. Set at load. */
static sha256_x2_fn sha256_pair;

/*
 * `n` whole 4096-byte blocks of `data` hashed, each digest to out + i * digest size: SHA-256
 * blocks two at a time where the CPU can, the rest through OpenSSL.
 */
static void hash_block_run(int alg, const uint8_t *data, size_t n, uint8_t *out) {
  size_t i = 0;
  if (alg == 1 && sha256_pair)
    for (; i + 2 <= n; i += 2)
      sha256_pair(data + i * BLOCK_SIZE, data + (i + 1) * BLOCK_SIZE, out + i * SHA256_DIGEST_LENGTH, out + (i + 1) * SHA256_DIGEST_LENGTH);
  size_t ds = alg == 1 ? SHA256_DIGEST_LENGTH : SHA512_DIGEST_LENGTH;
  for (; i < n; i++) sha_once(alg, data + i * BLOCK_SIZE, BLOCK_SIZE, out + i * ds);
}

/*
 * Checks the paired kernel against OpenSSL on blocks of varied bytes; a mismatch turns it off.
 * Run once per process (pthread_once): the addon's init runs again in each worker thread that
 * loads it, and those threads hash with sha256_pair while another would be setting it.
 */
static pthread_once_t sha256_pair_once = PTHREAD_ONCE_INIT;
static void sha256_pair_init(void) {
  const char *env = getenv("VERITREE_SHA_X2");
  sha256_pair = env && strcmp(env, "0") == 0 ? NULL : sha256_x2_select();
  if (!sha256_pair) return;
  static uint8_t blocks[2 * BLOCK_SIZE];
  uint32_t x = 2463534242u;
  for (size_t i = 0; i < sizeof blocks; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    blocks[i] = (uint8_t)x;
  }
  uint8_t got[2][SHA256_DIGEST_LENGTH], want[2][SHA256_DIGEST_LENGTH];
  sha256_pair(blocks, blocks + BLOCK_SIZE, got[0], got[1]);
  sha_once(1, blocks, BLOCK_SIZE, want[0]);
  sha_once(1, blocks + BLOCK_SIZE, BLOCK_SIZE, want[1]);
  if (memcmp(got, want, sizeof got) != 0) sha256_pair = NULL;
}

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

static int get_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  napi_typedarray_type type;
  napi_value ab;
  size_t offset;
  bool is_ta = false;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) return 0;
  if (napi_get_typedarray_info(env, v, &type, len, (void **)data, &ab, &offset) != napi_ok) return 0;
  return type == napi_uint8_array;
}

/* hashBlocks(alg: 1 (sha256) | 2 (sha512), input: Uint8Array, out: Uint8Array): number of blocks */
static napi_value hash_blocks(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3)
    return throw_type(env, "hashBlocks(alg, input, out) takes three arguments");
  uint32_t alg;
  if (napi_get_value_uint32(env, argv[0], &alg) != napi_ok || (alg != 1 && alg != 2))
    return throw_type(env, "alg must be 1 (sha256) or 2 (sha512)");
  uint8_t *in, *out;
  size_t in_len, out_len;
  if (!get_bytes(env, argv[1], &in, &in_len)) return throw_type(env, "input must be a Uint8Array");
  if (!get_bytes(env, argv[2], &out, &out_len)) return throw_type(env, "out must be a Uint8Array");
  size_t ds = alg == 1 ? SHA256_DIGEST_LENGTH : SHA512_DIGEST_LENGTH;
  size_t blocks = in_len / BLOCK_SIZE;
  if (out_len < blocks * ds) return throw_type(env, "out is too small for the digests");
  hash_block_run((int)alg, in, blocks, out);
  napi_value result;
  napi_create_double(env, (double)blocks, &result);
  return result;
}

/*
 * The fs-verity digest of a whole open file, read and hashed here: fsck re-hashes every object,
 * and most are a few KiB, where building the tree in JavaScript costs more than hashing. The
 * tree is the same as src/verity/merkle.ts builds (streaming, one 4 KiB buffer a level, each
 * level's last block zero-padded; one data block: its hash is the root; empty: zeros), then the
 * hash of the 256-byte descriptor. The caller opened the file (no symlink followed, a regular
 * file checked); this only reads it, from offset 0, with pread.
 */
#define MAX_LEVELS 16
#define READ_BUF (1 << 20)

typedef struct {
  uint8_t buf[BLOCK_SIZE];
  size_t len;
  uint64_t total;
} level_t;

typedef struct {
  int alg;
  size_t ds;
  level_t levels[MAX_LEVELS];
} tree_t;

/* Appends a digest to level k; a full block of digests is hashed into level k + 1, and so on up. */
static void tree_push(tree_t *t, int k, const uint8_t *digest) {
  uint8_t carry[SHA512_DIGEST_LENGTH];
  memcpy(carry, digest, t->ds);
  for (; k < MAX_LEVELS; k++) {
    level_t *l = &t->levels[k];
    memcpy(l->buf + l->len, carry, t->ds);
    l->len += t->ds;
    l->total++;
    if (l->len < BLOCK_SIZE) return;
    sha_once(t->alg, l->buf, BLOCK_SIZE, carry);
    l->len = 0;
  }
}

static void tree_root(tree_t *t, uint8_t *root) {
  for (int k = 0; k < MAX_LEVELS; k++) {
    level_t *l = &t->levels[k];
    if (l->total == 0) {
      memset(root, 0, t->ds);
      return;
    }
    if (l->total == 1 && l->len == t->ds) {
      memcpy(root, l->buf, t->ds);
      return;
    }
    if (l->len > 0) {
      uint8_t up[SHA512_DIGEST_LENGTH];
      memset(l->buf + l->len, 0, BLOCK_SIZE - l->len);
      sha_once(t->alg, l->buf, BLOCK_SIZE, up);
      l->len = 0;
      tree_push(t, k + 1, up);
    }
  }
  memset(root, 0, t->ds);
}

/*
 * Each thread's tree and read buffer, made on its first digest and freed when the thread ends:
 * fsck digests tens of thousands of small files per worker, and a fresh 1 MiB buffer per file
 * is an mmap, page faults and an munmap each time.
 */
typedef struct {
  tree_t tree;
  uint8_t buf[READ_BUF];
} work_t;

static pthread_key_t work_key;
static pthread_once_t work_once = PTHREAD_ONCE_INIT;
static int work_key_ok = 0;

static void work_key_make(void) {
  work_key_ok = pthread_key_create(&work_key, free) == 0;
}

/* This thread's work area, its tree emptied and set for `alg`; NULL when out of memory. */
static work_t *thread_work(int alg) {
  pthread_once(&work_once, work_key_make);
  if (!work_key_ok) return NULL;
  work_t *w = pthread_getspecific(work_key);
  if (!w) {
    w = malloc(sizeof *w);
    if (!w) return NULL;
    if (pthread_setspecific(work_key, w) != 0) {
      free(w);
      return NULL;
    }
  }
  for (int k = 0; k < MAX_LEVELS; k++) {
    w->tree.levels[k].len = 0;
    w->tree.levels[k].total = 0;
  }
  w->tree.alg = alg;
  w->tree.ds = alg == 1 ? SHA256_DIGEST_LENGTH : SHA512_DIGEST_LENGTH;
  return w;
}

/* Hashes `n` whole blocks of `data` into the tree's first level. */
static void push_blocks(tree_t *t, const uint8_t *data, size_t n) {
  uint8_t d[64 * SHA512_DIGEST_LENGTH];
  size_t per = sizeof d / t->ds;
  for (size_t i = 0; i < n; i += per) {
    size_t k = n - i < per ? n - i : per;
    hash_block_run(t->alg, data + i * BLOCK_SIZE, k, d);
    for (size_t j = 0; j < k; j++) tree_push(t, 0, d + j * t->ds);
  }
}

/* The last, partial block (0 < len < BLOCK_SIZE), zero-padded in `room` (a block; may be `data`). */
static void push_tail(tree_t *t, const uint8_t *data, size_t len, uint8_t *room) {
  if (room != data) memcpy(room, data, len);
  memset(room + len, 0, BLOCK_SIZE - len);
  push_blocks(t, room, 1);
}

/* The file's digest: the descriptor (version 1, the algorithm, 4 KiB blocks, the size, the root), hashed. */
static void tree_digest(tree_t *t, uint64_t size, uint8_t *out) {
  uint8_t desc[256];
  memset(desc, 0, sizeof desc);
  desc[0] = 1;
  desc[1] = (uint8_t)t->alg;
  desc[2] = 12;
  for (int i = 0; i < 8; i++) desc[8 + i] = (uint8_t)(size >> (8 * i));
  tree_root(t, desc + 16);
  sha_once(t->alg, desc, sizeof desc, out);
}

/*
 * Reads fd from offset 0 and writes its fs-verity digest to out; 0, or an errno. `expect` is the
 * size fstat gave (UINT64_MAX when unknown): a short read that ends there is the end of the file,
 * which saves the final read that returns 0 (fsck's objects are mostly one read each).
 */
static int digest_core(int alg, int fd, uint8_t *out, uint64_t *size_out, uint64_t expect) {
  work_t *w = thread_work(alg);
  if (!w) return ENOMEM;
  tree_t *t = &w->tree;
  uint8_t *buf = w->buf;
  uint64_t size = 0;
  size_t have = 0; /* bytes in buf not yet hashed (less than one block between reads) */
  for (;;) {
    ssize_t n = pread(fd, buf + have, READ_BUF - have, (off_t)(size + have));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) break;
    int at_end = (size_t)n < READ_BUF - have && size + have + (uint64_t)n == expect;
    have += (size_t)n;
    size_t whole = have / BLOCK_SIZE;
    push_blocks(t, buf, whole);
    size += whole * BLOCK_SIZE;
    have -= whole * BLOCK_SIZE;
    if (have) memmove(buf, buf + whole * BLOCK_SIZE, have);
    if (at_end) break;
  }
  if (have) push_tail(t, buf, have, buf);
  size += have;
  tree_digest(t, size, out);
  *size_out = size;
  return 0;
}

/* The fs-verity digest of bytes in memory: the same tree and descriptor as digest_core. */
static int digest_mem(int alg, const uint8_t *data, size_t len, uint8_t *out) {
  work_t *w = thread_work(alg);
  if (!w) return ENOMEM;
  size_t whole = len / BLOCK_SIZE;
  push_blocks(&w->tree, data, whole);
  if (len > whole * BLOCK_SIZE) push_tail(&w->tree, data + whole * BLOCK_SIZE, len - whole * BLOCK_SIZE, w->buf);
  tree_digest(&w->tree, len, out);
  return 0;
}

static int get_alg_out(napi_env env, napi_value *argv, uint32_t *alg, uint8_t **out) {
  size_t out_len;
  if (napi_get_value_uint32(env, argv[0], alg) != napi_ok || (*alg != 1 && *alg != 2)) return 0;
  return get_bytes(env, argv[2], out, &out_len) && out_len >= SHA512_DIGEST_LENGTH;
}

/* digestFd(alg, fd, out: Uint8Array(64)): the file's size in bytes; `out` gets the digest */
static napi_value digest_fd(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  uint32_t alg;
  int32_t fd;
  uint8_t *out;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 || !get_alg_out(env, argv, &alg, &out))
    return throw_type(env, "digestFd(alg: 1 | 2, fd, out: Uint8Array(64))");
  if (napi_get_value_int32(env, argv[1], &fd) != napi_ok || fd < 0) return throw_type(env, "fd must be a descriptor");
  uint64_t size = 0;
  int err = digest_core((int)alg, fd, out, &size, UINT64_MAX);
  if (err) {
    napi_throw_error(env, errno_name(err), strerror(err));
    return NULL;
  }
  napi_value result;
  napi_create_double(env, (double)size, &result);
  return result;
}

/* digestBuffer(alg, data: Uint8Array, out: Uint8Array(64)): the fs-verity digest of data, in one call. */
static napi_value digest_buffer(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  uint32_t alg;
  uint8_t *out, *data;
  size_t len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 || !get_alg_out(env, argv, &alg, &out) || !get_bytes(env, argv[1], &data, &len))
    return throw_type(env, "digestBuffer(alg: 1 | 2, data: Uint8Array, out: Uint8Array(64))");
  int err = digest_mem((int)alg, data, len, out);
  if (err) {
    napi_throw_error(env, errno_name(err), strerror(err));
    return NULL;
  }
  napi_value undef;
  napi_get_undefined(env, &undef);
  return undef;
}

/*
 * Storing a batch of small files: each one's fs-verity digest, then the object written and named
 * in one pass of system calls, with no JavaScript between files (a worker's per-object cost was
 * mostly its own JavaScript and the optimising compiler's work on it, not the kernel's).
 *
 * Only the common case is done here: an unnamed file (O_TMPFILE) in objects/, written whole,
 * named by linkat(2) (link_tmpfile.h: what TmpObjectFile and linkFd do), on a filesystem
 * the caller already knows has no fs-verity to enable. The first file this path cannot finish as
 * the JavaScript path would (an errno anywhere, O_TMPFILE refused, a name taken by an object of
 * another size) stops the batch there, its unnamed file closed (so it vanishes): the caller
 * stores that file and the rest through the JavaScript path, which reports the failure in its
 * own words. Descriptors are opened and closed within this synchronous call, so no worker can be
 * stopped while one is open behind Node's back.
 */
#define PRESENT_CHECK_MIN (64 << 10)

static int write_full(int fd, const uint8_t *p, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Whether `name` is a regular file of `len` bytes (not followed if a symlink): the object, whose
 * name is the digest of its bytes. */
static int present_at(int objfd, const char *name, size_t len) {
  struct stat st;
  return fstatat(objfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == len;
}

/* 0: stored (written 1) or found present at the right size (written 0); else an errno (or
 * EEXIST for a present object of another size): the caller's JavaScript path takes over. */
static int store_one(int alg, int objfd, const uint8_t *data, size_t len, uint8_t *digest, uint8_t *written) {
  int err = digest_mem(alg, data, len, digest);
  if (err) return err;
  char name[OBJECT_NAME_MAX];
  object_name(digest, alg == 1 ? SHA256_DIGEST_LENGTH : SHA512_DIGEST_LENGTH, name);
  if (len > PRESENT_CHECK_MIN && present_at(objfd, name, len)) {
    *written = 0;
    return 0;
  }
  int fd = openat(objfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  err = write_full(fd, data, len);
  if (!err) {
    for (int retried = 0;; retried = 1) {
      err = link_tmpfile(fd, objfd, name);
      if (err == 0) {
        *written = 1;
        break;
      }
      if (err == EEXIST) {
        if (present_at(objfd, name, len)) {
          err = 0;
          *written = 0;
        }
        break;
      }
      if (err != ENOENT || retried) break;
      name[2] = 0;
      int made = mkdirat(objfd, name, 0755) == 0 || errno == EEXIST;
      name[2] = '/';
      if (!made) {
        err = errno;
        break;
      }
    }
  }
  /* after a successful link the object is named and complete: a failed close loses nothing */
  close(fd);
  return err;
}

/*
 * storeBatch(alg, objectsDir: string, data: Uint8Array, sizes: Uint32Array, digests:
 * Uint8Array(n * digest size), written: Uint8Array(n)): how many files, from the first, were
 * stored (see above); `digests` and `written` are filled for those. Throws only on bad arguments
 * or when objectsDir cannot be opened.
 */
static napi_value store_batch(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  uint32_t alg;
  char dir[4096];
  size_t dir_len, data_len, n, dig_len, wr_len;
  uint8_t *data, *digests, *written;
  void *sizes_p;
  napi_typedarray_type st;
  napi_value ab;
  size_t aoff;
  bool is_ta = false;
  const char *usage = "storeBatch(alg: 1 | 2, objectsDir: string, data: Uint8Array, sizes: Uint32Array, digests: Uint8Array(n * digest size), written: Uint8Array(n))";
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 6 || napi_get_value_uint32(env, argv[0], &alg) != napi_ok || (alg != 1 && alg != 2) ||
      napi_get_value_string_utf8(env, argv[1], dir, sizeof dir, &dir_len) != napi_ok || dir_len >= sizeof dir - 1 || !get_bytes(env, argv[2], &data, &data_len) ||
      napi_is_typedarray(env, argv[3], &is_ta) != napi_ok || !is_ta || napi_get_typedarray_info(env, argv[3], &st, &n, &sizes_p, &ab, &aoff) != napi_ok ||
      st != napi_uint32_array || !get_bytes(env, argv[4], &digests, &dig_len) || !get_bytes(env, argv[5], &written, &wr_len))
    return throw_type(env, usage);
  const uint32_t *sizes = sizes_p;
  size_t ds = alg == 1 ? SHA256_DIGEST_LENGTH : SHA512_DIGEST_LENGTH;
  if (dig_len < n * ds || wr_len < n) return throw_type(env, usage);
  size_t total = 0;
  for (size_t i = 0; i < n; i++) total += sizes[i];
  if (total > data_len) return throw_type(env, "storeBatch: the sizes add up to more than data");
  int objfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (objfd < 0) {
    int err = errno;
    char msg[128];
    snprintf(msg, sizeof msg, "storeBatch: opening objects/: %s", strerror(err));
    napi_throw_error(env, errno_name(err), msg);
    return NULL;
  }
  size_t i = 0, off = 0;
  for (; i < n; off += sizes[i], i++)
    if (store_one((int)alg, objfd, data + off, sizes[i], digests + i * ds, written + i) != 0) break;
  close(objfd);
  napi_value result;
  napi_create_uint32(env, (uint32_t)i, &result);
  return result;
}

/*
 * One file's digest by path (relative to dfd, or AT_FDCWD): open (no symlink followed unless
 * `follow`, never blocking), check it is a regular file, digest, close. The size, or -errno, or -1000 - the file type (S_IFMT >> 12).
 */
static double digest_object(int alg, int dfd, const char *path, uint8_t *out, int follow) {
  double ret;
  int fd = openat(dfd, path, O_RDONLY | (follow ? 0 : O_NOFOLLOW) | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return -(double)errno;
  struct stat st;
  if (fstat(fd, &st) != 0) ret = -(double)errno;
  else if (!S_ISREG(st.st_mode)) ret = -1000.0 - (double)((st.st_mode & S_IFMT) >> 12);
  else {
    uint64_t size = 0;
    int err = digest_core(alg, fd, out, &size, (uint64_t)st.st_size);
    ret = err ? -(double)err : (double)size;
  }
  close(fd);
  return ret;
}

/*
 * digestPath(alg, path, out): open (no symlink followed, never blocking), check it is a regular
 * file, digest, close: one call per object for fsck. Returns the size, or a negative number:
 * -errno when the open or a read failed, -1000 - the file type (S_IFMT >> 12) when it is not a
 * regular file.
 */
static napi_value digest_path(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  uint32_t alg;
  uint8_t *out;
  char path[4096];
  size_t path_len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 || !get_alg_out(env, argv, &alg, &out) ||
      napi_get_value_string_utf8(env, argv[1], path, sizeof path, &path_len) != napi_ok || path_len >= sizeof path - 1)
    return throw_type(env, "digestPath(alg: 1 | 2, path, out: Uint8Array(64))");
  double ret = digest_object((int)alg, AT_FDCWD, path, out, 0);
  napi_value result;
  napi_create_double(env, ret, &result);
  return result;
}

/*
 * The same digests on libuv's thread pool, many per job: fsck and `digest` hash there instead of
 * in worker threads, so a command starts hashing without booting a pool of JavaScript workers.
 * A job's typed arrays are held by references until it settles; the caller does not touch them
 * meanwhile. `stop` (an Int32Array the caller sets to 1 on abort) is read between files and
 * reads: a job never outlives an interrupt by more than one read.
 */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  held_arrays held;
  int alg;
  const int32_t *stop;
  /* digestPaths */
  int follow;
  size_t count;
  char **paths;
  double *sizes;
  uint8_t *digests;
  /* digestRange */
  char *path;
  uint64_t offset, length;
  uint8_t *level1;
  double result;
} pool_job;

static int stopped(const pool_job *job) {
  return stop_asked(job->stop);
}

/* Frees a job, queued or not (work is NULL until it is). */
static void pool_job_free(napi_env env, pool_job *job) {
  release_held(env, &job->held);
  if (job->paths) {
    for (size_t i = 0; i < job->count; i++) free(job->paths[i]);
    free(job->paths);
  }
  free(job->path);
  if (job->work) napi_delete_async_work(env, job->work);
  free(job);
}

static void pool_complete(napi_env env, napi_status status, void *data) {
  pool_job *job = data;
  settle_job(env, job->deferred, status, &job->result, job->paths ? "digestPaths" : "digestRange");
  pool_job_free(env, job);
}

static void paths_execute(napi_env env, void *data) {
  (void)env;
  pool_job *job = data;
  size_t ds = job->alg == 1 ? SHA256_DIGEST_LENGTH : SHA512_DIGEST_LENGTH;
  size_t i = 0;
  for (; i < job->count && !stopped(job); i++) job->sizes[i] = digest_object(job->alg, AT_FDCWD, job->paths[i], job->digests + i * ds, job->follow);
  job->result = (double)i;
}

static char *string_arg(napi_env env, napi_value v) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok || len >= 4095) return NULL;
  char *s = malloc(len + 1);
  if (s && napi_get_value_string_utf8(env, v, s, len + 1, &len) != napi_ok) {
    free(s);
    return NULL;
  }
  return s;
}

/*
 * digestPaths(alg, paths: string[], sizes: Float64Array(n), digests: Uint8Array(n * digest size),
 * stop?: Int32Array, follow?: boolean): Promise<number>. Each file as digestPath does it (a
 * symlink followed only with `follow`); sizes[i] gets the size or the negative code. Resolves to
 * how many were done (fewer than n only when stopped).
 */
static napi_value digest_paths(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  const char *usage = "digestPaths(alg: 1 | 2, paths: string[], sizes: Float64Array(n), digests: Uint8Array(n * digest size), stop?: Int32Array, follow?: boolean)";
  uint32_t alg, n;
  bool is_array = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4 || napi_get_value_uint32(env, argv[0], &alg) != napi_ok || (alg != 1 && alg != 2) ||
      napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array || napi_get_array_length(env, argv[1], &n) != napi_ok)
    return throw_type(env, usage);
  pool_job *job = calloc(1, sizeof *job);
  if (!job) return throw_type(env, "digestPaths: out of memory");
  job->alg = (int)alg;
  bool follow = false;
  napi_get_value_bool(env, argv[5], &follow); /* undefined: false */
  job->follow = follow;
  size_t sizes_len, digests_len;
  void *sizes, *digests;
  size_t ds = alg == 1 ? SHA256_DIGEST_LENGTH : SHA512_DIGEST_LENGTH;
  int ok = hold_typed(env, &job->held, argv[2], napi_float64_array, &sizes, &sizes_len) && sizes_len >= n &&
           hold_typed(env, &job->held, argv[3], napi_uint8_array, &digests, &digests_len) && digests_len >= (size_t)n * ds && hold_stop(env, &job->held, argv[4], &job->stop);
  if (ok) {
    job->sizes = sizes;
    job->digests = digests;
    job->paths = calloc(n ? n : 1, sizeof(char *));
    ok = job->paths != NULL;
    for (uint32_t i = 0; ok && i < n; i++) {
      napi_value e;
      ok = napi_get_element(env, argv[1], i, &e) == napi_ok && (job->paths[i] = string_arg(env, e)) != NULL;
      job->count = i + 1;
    }
  }
  if (!ok) {
    pool_job_free(env, job);
    return throw_type(env, usage);
  }
  job->count = n;
  return queue_promise_work(env, "veritree:digestPaths", paths_execute, pool_complete, job, &job->deferred, &job->work);
}

/*
 * A range of whole level-1 groups of a file (its offset a multiple of the group's span): every
 * 4 KiB block hashed (the file's last one zero-padded), and each group of block digests hashed
 * into `level1`; a last partial group is zero-padded, as src/verity/merkle.ts's RangeHasher does.
 * The result: bytes read (less than the length when the file shrank), or -errno, or -1000 - type.
 */
static void range_execute(napi_env env, void *data) {
  (void)env;
  pool_job *job = data;
  int fd = open(job->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    job->result = -(double)errno;
    return;
  }
  struct stat st;
  work_t *w = thread_work(job->alg);
  if (fstat(fd, &st) != 0) job->result = -(double)errno;
  else if (!S_ISREG(st.st_mode)) job->result = -1000.0 - (double)((st.st_mode & S_IFMT) >> 12);
  else if (!w) job->result = -(double)ENOMEM;
  else {
    size_t ds = job->alg == 1 ? SHA256_DIGEST_LENGTH : SHA512_DIGEST_LENGTH;
    uint8_t group[BLOCK_SIZE];
    size_t in_group = 0, groups = 0;
    uint64_t done = 0;
    size_t have = 0;
    int err = 0;
    while (done + have < job->length && !stopped(job)) {
      size_t want = READ_BUF - have;
      if (want > job->length - done - have) want = (size_t)(job->length - done - have);
      ssize_t n = pread(fd, w->buf + have, want, (off_t)(job->offset + done + have));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        err = errno;
        break;
      }
      if (n == 0) break;
      have += (size_t)n;
      /* Whole blocks now; a partial one only at the end of the range (the file's end). */
      size_t whole = have / BLOCK_SIZE;
      int last = done + have == job->length && have % BLOCK_SIZE != 0;
      if (last) {
        memset(w->buf + have, 0, BLOCK_SIZE - have % BLOCK_SIZE);
        whole++;
      }
      for (size_t b = 0; b < whole;) {
        size_t k = (BLOCK_SIZE - in_group) / ds;
        if (k > whole - b) k = whole - b;
        hash_block_run(job->alg, w->buf + b * BLOCK_SIZE, k, group + in_group);
        b += k;
        in_group += k * ds;
        if (in_group == BLOCK_SIZE) {
          sha_once(job->alg, group, BLOCK_SIZE, job->level1 + groups++ * ds);
          in_group = 0;
        }
      }
      size_t used = last ? have : (have / BLOCK_SIZE) * BLOCK_SIZE;
      done += used;
      have -= used;
      if (have) memmove(w->buf, w->buf + used, have);
    }
    if (in_group > 0) {
      memset(group + in_group, 0, BLOCK_SIZE - in_group);
      sha_once(job->alg, group, BLOCK_SIZE, job->level1 + groups * ds);
    }
    job->result = err ? -(double)err : stopped(job) ? -(double)ECANCELED : (double)(done + have);
  }
  close(fd);
}

/*
 * digestRange(alg, path, offset, length, level1: Uint8Array, stop?: Int32Array): Promise<number>:
 * see range_execute. `level1` holds one digest per started group of 128 (SHA-256) or 64 blocks.
 */
static napi_value digest_range(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  const char *usage = "digestRange(alg: 1 | 2, path, offset, length, level1: Uint8Array, stop?: Int32Array)";
  uint32_t alg;
  double offset, length;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5 || napi_get_value_uint32(env, argv[0], &alg) != napi_ok || (alg != 1 && alg != 2) ||
      napi_get_value_double(env, argv[2], &offset) != napi_ok || napi_get_value_double(env, argv[3], &length) != napi_ok || offset < 0 || length < 0 ||
      offset + length > 9007199254740991.0 || offset != (double)(uint64_t)offset || length != (double)(uint64_t)length)
    return throw_type(env, usage);
  pool_job *job = calloc(1, sizeof *job);
  if (!job) return throw_type(env, "digestRange: out of memory");
  job->alg = (int)alg;
  job->offset = (uint64_t)offset;
  job->length = (uint64_t)length;
  size_t ds = alg == 1 ? SHA256_DIGEST_LENGTH : SHA512_DIGEST_LENGTH;
  uint64_t blocks = (job->length + BLOCK_SIZE - 1) / BLOCK_SIZE;
  uint64_t groups = (blocks + BLOCK_SIZE / ds - 1) / (BLOCK_SIZE / ds);
  void *level1;
  size_t level1_len;
  job->path = string_arg(env, argv[1]);
  if (!job->path || !hold_typed(env, &job->held, argv[4], napi_uint8_array, &level1, &level1_len) || level1_len < groups * ds || !hold_stop(env, &job->held, argv[5], &job->stop)) {
    pool_job_free(env, job);
    return throw_type(env, usage);
  }
  job->level1 = level1;
  return queue_promise_work(env, "veritree:digestRange", range_execute, pool_complete, job, &job->deferred, &job->work);
}

/*
 * digestDirs(alg, objectsDir, prefixes, nameLength, lanes, onFolder, stop?): Promise<undefined>:
 * fsck's check of the objects/XX folders, `prefixes` naming them (two hex digits each, one
 * string). `lanes` jobs run on libuv's thread pool; each takes the next folder not yet taken,
 * hashes it, hands the result to onFolder on the main thread and goes on to the next without
 * waiting for it. (A job per folder left its thread idle between folders until the main thread
 * queued the next, a millisecond or more where both cores were busy: a tenth of fsck's time on
 * two cores.) The promise settles when every result has been handed over.
 *
 * onFolder(index, code, text, status, sizes, digests) for the folder prefixes[index]:
 *   code null: `text` joins its entries, but . and .., in readdir order, each as XX + its name,
 *   with '/' (bytes as latin1: an object's name there is its whole id), and for entry i:
 *     status[i] 0: a regular file named like an object, whose digest is XX + its name;
 *               1: such a file whose digest is another (digests[i] has it);
 *               2: not a candidate (wrong name, or not a regular file): the caller classifies it;
 *               3: a candidate that could not be read: sizes[i] is -errno or -1000 - the type.
 *     sizes[i]  the bytes hashed (status 0 and 1).
 *   code a string (ENOENT, ECANCELED, ...): the folder could not be listed; `text` says why.
 * A candidate is a name of `nameLength` lowercase hex digits that is a regular file (no symlink
 * followed, no open that blocks). A folder is read through its descriptor: no path walked per
 * object, and nothing per object crosses into JavaScript but its name. onFolder must not throw.
 */
typedef struct {
  size_t index;
  int err;
  char prefix[3];
  char *names;
  size_t names_len, names_cap;
  uint8_t *status;
  double *sizes;
  uint8_t *digests;
  size_t count, cap;
} dir_result;

struct dirs_job;
typedef struct {
  struct dirs_job *job;
  napi_async_work work;
} dir_lane;

typedef struct dirs_job {
  napi_deferred deferred;
  napi_threadsafe_function tsfn;
  held_arrays held;
  const int32_t *stop;
  int alg;
  size_t name_len;
  char *root;
  char *prefixes;
  size_t folders;
  size_t next;       /* the next folder to take; lanes take it atomically */
  int out_of_memory; /* set by a lane that could not make a result: the promise rejects */
  int refs;          /* main thread only: lanes not yet completed, and the thread-safe function */
  int lanes;
  dir_lane lane[];
} dirs_job;

static void dir_result_free(dir_result *r) {
  free(r->names);
  free(r->status);
  free(r->sizes);
  free(r->digests);
  free(r);
}

static int dir_grow(dir_result *r, size_t ds, size_t name_len) {
  if (r->count == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 256;
    uint8_t *st = realloc(r->status, cap);
    if (st) r->status = st;
    double *sz = realloc(r->sizes, cap * sizeof(double));
    if (sz) r->sizes = sz;
    uint8_t *dg = realloc(r->digests, cap * ds);
    if (dg) r->digests = dg;
    if (!st || !sz || !dg) return 0;
    r->cap = cap;
  }
  if (r->names_len + name_len + 3 > r->names_cap) {
    size_t cap = (r->names_cap ? r->names_cap * 2 : 16384) + name_len + 3;
    char *nm = realloc(r->names, cap);
    if (!nm) return 0;
    r->names = nm;
    r->names_cap = cap;
  }
  return 1;
}

static int is_object_name(const char *name, size_t want) {
  size_t i = 0;
  for (; name[i]; i++)
    if (i >= want || !((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f'))) return 0;
  return i == want;
}

static void dir_entry(const dirs_job *job, dir_result *r, int dfd, const struct dirent *e) {
  size_t i = r->count++;
  size_t ds = job->alg == 1 ? SHA256_DIGEST_LENGTH : SHA512_DIGEST_LENGTH;
  size_t len = strlen(e->d_name);
  if (r->names_len) r->names[r->names_len++] = '/';
  memcpy(r->names + r->names_len, r->prefix, 2);
  r->names_len += 2;
  memcpy(r->names + r->names_len, e->d_name, len);
  r->names_len += len;
  r->sizes[i] = 0;
  r->status[i] = 2;
  if (!is_object_name(e->d_name, job->name_len)) return;
  unsigned char type = e->d_type;
  if (type == DT_UNKNOWN) {
    struct stat st;
    if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) type = DT_REG;
  }
  if (type != DT_REG) return;
  uint8_t *digest = r->digests + i * ds;
  double got = digest_object(job->alg, dfd, e->d_name, digest, 0);
  r->sizes[i] = got;
  if (got < 0) {
    r->status[i] = 3;
    return;
  }
  static const char hex[] = "0123456789abcdef";
  int same = hex[digest[0] >> 4] == r->prefix[0] && hex[digest[0] & 15] == r->prefix[1];
  for (size_t k = 1; same && k < ds; k++) same = hex[digest[k] >> 4] == e->d_name[2 * k - 2] && hex[digest[k] & 15] == e->d_name[2 * k - 1];
  r->status[i] = same ? 0 : 1;
}

/* One folder, root/XX, into `r` (r->err on a failure to open or list it). */
static void dir_digest(const dirs_job *job, dir_result *r) {
  size_t ds = job->alg == 1 ? SHA256_DIGEST_LENGTH : SHA512_DIGEST_LENGTH;
  int rfd = open(job->root, O_RDONLY | O_DIRECTORY | O_NONBLOCK | O_CLOEXEC);
  int dfd = rfd < 0 ? -1 : openat(rfd, r->prefix, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (dfd < 0) {
    r->err = errno;
    if (rfd >= 0) close(rfd);
    return;
  }
  close(rfd);
  DIR *d = fdopendir(dfd);
  if (!d) {
    r->err = errno;
    close(dfd);
    return;
  }
  for (;;) {
    if (stop_asked(job->stop)) {
      r->err = ECANCELED;
      break;
    }
    errno = 0;
    struct dirent *e = readdir(d);
    if (!e) {
      r->err = errno;
      break;
    }
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if (!dir_grow(r, ds, strlen(e->d_name))) {
      r->err = ENOMEM;
      break;
    }
    dir_entry(job, r, dirfd(d), e);
  }
  closedir(d);
}

static void lane_execute(napi_env env, void *data) {
  (void)env;
  dirs_job *job = ((dir_lane *)data)->job;
  while (!stop_asked(job->stop)) {
    size_t i = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
    if (i >= job->folders) break;
    dir_result *r = calloc(1, sizeof *r);
    if (!r) {
      __atomic_store_n(&job->out_of_memory, 1, __ATOMIC_RELAXED);
      break;
    }
    r->index = i;
    memcpy(r->prefix, job->prefixes + 2 * i, 2);
    dir_digest(job, r);
    if (napi_call_threadsafe_function(job->tsfn, r, napi_tsfn_blocking) != napi_ok) {
      dir_result_free(r);
      break;
    }
  }
  napi_release_threadsafe_function(job->tsfn, napi_tsfn_release);
}

static void dirs_job_unref(napi_env env, dirs_job *job) {
  if (--job->refs > 0) return;
  release_held(env, &job->held);
  free(job->root);
  free(job->prefixes);
  free(job);
}

static void lane_complete(napi_env env, napi_status status, void *data) {
  dir_lane *lane = data;
  dirs_job *job = lane->job;
  /* A lane that never ran still holds the thread-safe function, which would never settle. */
  if (status != napi_ok) napi_release_threadsafe_function(job->tsfn, napi_tsfn_release);
  napi_delete_async_work(env, lane->work);
  dirs_job_unref(env, job);
}


/* On the main thread: one folder's result to onFolder (env is NULL when the function is being torn down). */
static void folder_to_js(napi_env env, napi_value js_cb, void *context, void *data) {
  dirs_job *job = context;
  dir_result *r = data;
  if (env == NULL) {
    dir_result_free(r);
    return;
  }
  size_t ds = job->alg == 1 ? SHA256_DIGEST_LENGTH : SHA512_DIGEST_LENGTH;
  napi_value argv[6], undefined, st_ab, sz_ab, dg_ab;
  void *p;
  napi_get_undefined(env, &undefined);
  napi_create_double(env, (double)r->index, &argv[0]);
  if (r->err) {
    char msg[300];
    snprintf(msg, sizeof msg, "%s, listing '%.200s/%s'", strerror(r->err), job->root, r->prefix);
    napi_create_string_utf8(env, errno_name(r->err), NAPI_AUTO_LENGTH, &argv[1]);
    napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &argv[2]);
    argv[3] = argv[4] = argv[5] = undefined;
  } else if (napi_get_null(env, &argv[1]) != napi_ok || napi_create_string_latin1(env, r->names ? r->names : "", r->names_len, &argv[2]) != napi_ok ||
             napi_create_arraybuffer(env, r->count, &p, &st_ab) != napi_ok || (r->count && (memcpy(p, r->status, r->count), 0)) ||
             napi_create_typedarray(env, napi_uint8_array, r->count, st_ab, 0, &argv[3]) != napi_ok ||
             napi_create_arraybuffer(env, r->count * sizeof(double), &p, &sz_ab) != napi_ok || (r->count && (memcpy(p, r->sizes, r->count * sizeof(double)), 0)) ||
             napi_create_typedarray(env, napi_float64_array, r->count, sz_ab, 0, &argv[4]) != napi_ok ||
             napi_create_arraybuffer(env, r->count * ds, &p, &dg_ab) != napi_ok || (r->count && (memcpy(p, r->digests, r->count * ds), 0)) ||
             napi_create_typedarray(env, napi_uint8_array, r->count * ds, dg_ab, 0, &argv[5]) != napi_ok) {
    napi_create_string_utf8(env, "ENOMEM", NAPI_AUTO_LENGTH, &argv[1]);
    napi_create_string_utf8(env, "out of memory handing over a folder's digests", NAPI_AUTO_LENGTH, &argv[2]);
    argv[3] = argv[4] = argv[5] = undefined;
  }
  dir_result_free(r);
  napi_call_function(env, undefined, js_cb, 6, argv, NULL);
}

/* When every lane has let go and every result is handed over. */
static void dirs_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  dirs_job *job = data;
  if (job->out_of_memory) reject_with_code(env, job->deferred, "ENOMEM", "digestDirs: out of memory");
  else {
    napi_value undefined;
    napi_get_undefined(env, &undefined);
    napi_resolve_deferred(env, job->deferred, undefined);
  }
  dirs_job_unref(env, job);
}

static napi_value digest_dirs(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  const char *usage = "digestDirs(alg: 1 | 2, objectsDir, prefixes: two hex digits each, nameLength, lanes, onFolder, stop?: Int32Array)";
  uint32_t alg, name_len, lanes;
  napi_valuetype cb_type;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 6 || napi_get_value_uint32(env, argv[0], &alg) != napi_ok || (alg != 1 && alg != 2) ||
      napi_get_value_uint32(env, argv[3], &name_len) != napi_ok || name_len + 2 != 2 * (alg == 1 ? SHA256_DIGEST_LENGTH : SHA512_DIGEST_LENGTH) ||
      napi_get_value_uint32(env, argv[4], &lanes) != napi_ok || lanes < 1 || lanes > 1024 || napi_typeof(env, argv[5], &cb_type) != napi_ok || cb_type != napi_function)
    return throw_type(env, usage);
  dirs_job *job = calloc(1, sizeof *job + lanes * sizeof(dir_lane));
  if (!job) return throw_type(env, "digestDirs: out of memory");
  job->alg = (int)alg;
  job->name_len = name_len;
  job->lanes = (int)lanes;
  job->refs = 1;
  job->root = string_arg(env, argv[1]);
  job->prefixes = string_arg(env, argv[2]);
  size_t plen = job->prefixes ? strlen(job->prefixes) : 1;
  int ok = job->root && job->prefixes && plen % 2 == 0 && plen > 0 && hold_stop(env, &job->held, argv[6], &job->stop);
  for (size_t i = 0; ok && i < plen; i++) ok = (job->prefixes[i] >= '0' && job->prefixes[i] <= '9') || (job->prefixes[i] >= 'a' && job->prefixes[i] <= 'f');
  if (!ok) {
    dirs_job_unref(env, job);
    return throw_type(env, usage);
  }
  job->folders = plen / 2;
  if (job->lanes > (int)job->folders) job->lanes = (int)job->folders;
  napi_value promise, name;
  napi_create_string_utf8(env, "veritree:digestDirs", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[5], NULL, name, 0, (size_t)job->lanes, job, dirs_finalize, job, folder_to_js, &job->tsfn) != napi_ok) {
    dirs_job_unref(env, job);
    return throw_type(env, "digestDirs: could not make its thread-safe function");
  }
  napi_create_promise(env, &job->deferred, &promise);
  /* From here the thread-safe function's finalizer settles the promise and lets go of its share. */
  job->refs = 1 + job->lanes;
  for (int i = 0; i < job->lanes; i++) {
    job->lane[i].job = job;
    if (napi_create_async_work(env, NULL, name, lane_execute, lane_complete, &job->lane[i], &job->lane[i].work) != napi_ok ||
        napi_queue_async_work(env, job->lane[i].work) != napi_ok) {
      /* This lane and those after it never run: each gives back its share at once. With no
         lane at all, no folder would be checked: the promise rejects. */
      if (i == 0) job->out_of_memory = 1;
      for (int k = i; k < job->lanes; k++) {
        if (k == i && job->lane[i].work) napi_delete_async_work(env, job->lane[i].work);
        napi_release_threadsafe_function(job->tsfn, napi_tsfn_release);
        job->refs--;
      }
      break;
    }
  }
  return promise;
}


/*
 * SHA-256 of a stream, with the hashing on libuv's thread pool: the import's two passes (the
 * blob against its digest, the tar against its diff_id) no longer take the main thread. The
 * context lives in a Uint8Array the caller owns (shaCtxSize bytes); the caller keeps one update
 * in flight per context and never touches a buffer it handed over until that update settles.
 */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref ctx_ref, data_ref;
  SHA256_CTX *ctx;
  const uint8_t *data;
  size_t len;
} sha_job;

static int get_ctx(napi_env env, napi_value v, SHA256_CTX **ctx) {
  uint8_t *p;
  size_t len;
  if (!get_bytes(env, v, &p, &len) || len < sizeof(SHA256_CTX) || ((uintptr_t)p % sizeof(void *)) != 0) return 0;
  *ctx = (SHA256_CTX *)p;
  return 1;
}

static napi_value sha_ctx_size(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value v;
  napi_create_uint32(env, (uint32_t)sizeof(SHA256_CTX), &v);
  return v;
}

static napi_value sha_init(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  SHA256_CTX *ctx;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 || !get_ctx(env, argv[0], &ctx))
    return throw_type(env, "shaInit(ctx: Uint8Array(shaCtxSize), aligned)");
  SHA256_Init(ctx);
  return NULL;
}

static void sha_execute(napi_env env, void *data) {
  (void)env;
  sha_job *job = data;
  SHA256_Update(job->ctx, job->data, job->len);
}

static void sha_complete(napi_env env, napi_status status, void *data) {
  sha_job *job = data;
  napi_delete_reference(env, job->ctx_ref);
  napi_delete_reference(env, job->data_ref);
  settle_job(env, job->deferred, status, NULL, "shaUpdate");
  napi_delete_async_work(env, job->work);
  free(job);
}

/* shaUpdate(ctx, data): Promise<void>, the update done on the thread pool. */
static napi_value sha_update(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  SHA256_CTX *ctx;
  uint8_t *d;
  size_t len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 || !get_ctx(env, argv[0], &ctx) || !get_bytes(env, argv[1], &d, &len))
    return throw_type(env, "shaUpdate(ctx: Uint8Array(shaCtxSize), data: Uint8Array)");
  sha_job *job = calloc(1, sizeof *job);
  if (!job) {
    napi_throw_error(env, "ENOMEM", "shaUpdate: out of memory");
    return NULL;
  }
  job->ctx = ctx;
  job->data = d;
  job->len = len;
  napi_create_reference(env, argv[0], 1, &job->ctx_ref);
  napi_create_reference(env, argv[1], 1, &job->data_ref);
  return queue_promise_work(env, "veritree:sha256", sha_execute, sha_complete, job, &job->deferred, &job->work);
}

static napi_value sha_final(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  SHA256_CTX *ctx;
  uint8_t *out;
  size_t out_len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 || !get_ctx(env, argv[0], &ctx) || !get_bytes(env, argv[1], &out, &out_len) ||
      out_len < SHA256_DIGEST_LENGTH)
    return throw_type(env, "shaFinal(ctx: Uint8Array(shaCtxSize), out: Uint8Array(32))");
  SHA256_Final(out, ctx);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  pthread_once(&sha256_pair_once, sha256_pair_init);
  static const export_fn fns[] = {
    {"hashBlocks", hash_blocks},
    {"digestFd", digest_fd},
    {"digestPath", digest_path},
    {"digestBuffer", digest_buffer},
    {"storeBatch", store_batch},
    {"digestPaths", digest_paths},
    {"digestRange", digest_range},
    {"digestDirs", digest_dirs},
    {"shaCtxSize", sha_ctx_size},
    {"shaInit", sha_init},
    {"shaUpdate", sha_update},
    {"shaFinal", sha_final},
  };
  return export_functions(env, exports, fns, sizeof fns / sizeof fns[0]);
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
