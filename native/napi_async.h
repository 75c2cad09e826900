/* Shared by the addons: their exports, and promises settled by work on libuv's thread pool. */
#ifndef VERITREE_NAPI_ASYNC_H
#define VERITREE_NAPI_ASYNC_H
#include <node_api.h>

/* Rejects with an Error whose `code` is set, as node:fs errors are. */
static inline void reject_with_code(napi_env env, napi_deferred deferred, const char *code_str, const char *msg) {
  napi_value code, message, error;
  napi_create_string_utf8(env, code_str, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_reject_deferred(env, deferred, error);
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
