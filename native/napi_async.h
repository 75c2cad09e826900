/* Shared by the addons: their exports, and promises settled by work on libuv's thread pool. */
#ifndef VERITREE_NAPI_ASYNC_H
#define VERITREE_NAPI_ASYNC_H
#include <node_api.h>
#include <stdio.h>

/* Rejects with an Error whose `code` is set, as node:fs errors are. */
static inline void reject_with_code(napi_env env, napi_deferred deferred, const char *code_str, const char *msg) {
  napi_value code, message, error;
  napi_create_string_utf8(env, code_str, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_reject_deferred(env, deferred, error);
}

/*
 * Settles a job's promise from its complete callback: rejected ("<what>: cancelled") when the job
 * never ran, else resolved with `*value`, or with undefined when value is NULL.
 */
static inline void settle_job(napi_env env, napi_deferred deferred, napi_status status, const double *value, const char *what) {
  if (status != napi_ok) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s: cancelled", what);
    reject_with_code(env, deferred, "EINTR", msg);
    return;
  }
  napi_value v;
  if (value) napi_create_double(env, *value, &v);
  else napi_get_undefined(env, &v);
  napi_resolve_deferred(env, deferred, v);
}

/* Queues `execute` (thread pool) then `complete` (this thread) on `data`; returns the promise `complete` settles. */
static inline napi_value queue_promise_work(napi_env env, const char *name_str, napi_async_execute_callback execute, napi_async_complete_callback complete,
                                            void *data, napi_deferred *deferred, napi_async_work *work) {
  napi_value promise, name;
  napi_create_promise(env, deferred, &promise);
  napi_create_string_utf8(env, name_str, NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, data, work);
  napi_queue_async_work(env, *work);
  return promise;
}

/*
 * The typed arrays a job on the thread pool reads or writes, held by references until it
 * settles (the caller leaves them alone meanwhile), and an optional stop flag: an Int32Array the
 * caller sets to 1 to ask the job to end early, read between files and reads.
 */
#define HELD_MAX 8
typedef struct {
  napi_ref refs[HELD_MAX];
  int n;
} held_arrays;

/* Holds `v` if it is a typed array of type `want`; its data and element count out. */
static inline int hold_typed(napi_env env, held_arrays *h, napi_value v, napi_typedarray_type want, void **data, size_t *len) {
  napi_typedarray_type type;
  napi_value ab;
  size_t offset;
  bool is_ta = false;
  if (h->n >= HELD_MAX || napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta || napi_get_typedarray_info(env, v, &type, len, data, &ab, &offset) != napi_ok || type != want)
    return 0;
  return napi_create_reference(env, v, 1, &h->refs[h->n++]) == napi_ok;
}

/* An optional stop flag: undefined or null (none), or an Int32Array of at least one element. */
static inline int hold_stop(napi_env env, held_arrays *h, napi_value v, const int32_t **stop) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return 0;
  if (t == napi_undefined || t == napi_null) return 1;
  void *p;
  size_t len;
  if (!hold_typed(env, h, v, napi_int32_array, &p, &len) || len < 1) return 0;
  *stop = p;
  return 1;
}

static inline int stop_asked(const int32_t *stop) {
  return stop != NULL && __atomic_load_n(stop, __ATOMIC_RELAXED) != 0;
}

static inline void release_held(napi_env env, held_arrays *h) {
  for (int i = 0; i < h->n; i++) napi_delete_reference(env, h->refs[i]);
  h->n = 0;
}

/* An addon's exports: one function per name. */
typedef struct {
  const char *name;
  napi_callback fn;
} export_fn;

static inline napi_value export_functions(napi_env env, napi_value exports, const export_fn *fns, size_t n) {
  for (size_t i = 0; i < n; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
  return exports;
}

#endif
