/* Shared by the addons: rejects a promise with an Error whose `code` is set (as node:fs errors are). */
#ifndef VERITREE_NAPI_REJECT_H
#define VERITREE_NAPI_REJECT_H
#include <node_api.h>

static inline void reject_with_code(napi_env env, napi_deferred deferred, const char *code_str, const char *msg) {
  napi_value code, message, error;
  napi_create_string_utf8(env, code_str, NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_reject_deferred(env, deferred, error);
}

#endif
