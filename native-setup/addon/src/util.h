// Small helpers over node_api.h shared by every module of the binding.
//
// Failures while setting something up surface as JS exceptions that carry the
// errno name (`code`) and number (`errno`), so callers can tell EPERM from
// EBUSY. Nothing on the per-packet path throws: it counts instead.
#pragma once

#include <node_api.h>

#include <cstddef>
#include <cstdint>

namespace distnat {

// Returns from the calling function with nullptr once an N-API call failed;
// N-API has then already set a pending exception (or we set one here).
#define DN_CALL(env, call)                                                  \
  do {                                                                      \
    if ((call) != napi_ok) {                                                \
      distnat::ThrowPendingOr((env), "internal N-API failure: " #call);     \
      return nullptr;                                                       \
    }                                                                       \
  } while (0)

void ThrowPendingOr(napi_env env, const char* message);

// Throws Error("<what>: <strerror> (<ENAME>)") with code/errno/syscall fields.
napi_value ThrowErrno(napi_env env, const char* what, int err);
napi_value ThrowType(napi_env env, const char* message);
napi_value ThrowRange(napi_env env, const char* message);

// Argument readers: false means a TypeError is pending.
bool ArgInt32(napi_env env, napi_value v, const char* name, int32_t* out);
bool ArgBool(napi_env env, napi_value v, const char* name, bool* out);
// Copies at most cap-1 bytes and NUL-terminates; false if longer.
bool ArgString(napi_env env, napi_value v, const char* name, char* buf, size_t cap);

// A typed array's data pointer and element count; type checked.
bool ArgTyped(napi_env env, napi_value v, napi_typedarray_type type, const char* name, void** data,
              size_t* length);
// Bytes of a Uint8Array (any offset into its ArrayBuffer) or of an ArrayBuffer.
bool ArgBytes(napi_env env, napi_value v, const char* name, uint8_t** data, size_t* length);

napi_value Undefined(napi_env env);
napi_value Int(napi_env env, int32_t value);

void SetMethod(napi_env env, napi_value target, const char* name, napi_callback cb);

}  // namespace distnat
