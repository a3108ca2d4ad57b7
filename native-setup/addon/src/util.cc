#include "util.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace distnat {

void ThrowPendingOr(napi_env env, const char* message) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_error(env, nullptr, message);
}

napi_value ThrowErrno(napi_env env, const char* what, int err) {
  const char* name = strerrorname_np(err);
  if (name == nullptr) name = "EUNKNOWN";
  char text[256];
  snprintf(text, sizeof(text), "%s: %s (%s)", what, strerror(err), name);
  napi_value msg, code, num, error, syscall;
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, msg, &error);
  napi_create_int32(env, -err, &num);
  napi_set_named_property(env, error, "errno", num);
  napi_create_string_utf8(env, what, NAPI_AUTO_LENGTH, &syscall);
  napi_set_named_property(env, error, "syscall", syscall);
  napi_throw(env, error);
  return nullptr;
}

napi_value ThrowType(napi_env env, const char* message) {
  napi_throw_type_error(env, nullptr, message);
  return nullptr;
}

napi_value ThrowRange(napi_env env, const char* message) {
  napi_throw_range_error(env, nullptr, message);
  return nullptr;
}

static bool TypeFail(napi_env env, const char* name, const char* expected) {
  char text[160];
  snprintf(text, sizeof(text), "%s must be %s", name, expected);
  napi_throw_type_error(env, nullptr, text);
  return false;
}

bool ArgInt32(napi_env env, napi_value v, const char* name, int32_t* out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) return TypeFail(env, name, "a number");
  return napi_get_value_int32(env, v, out) == napi_ok;
}

bool ArgBool(napi_env env, napi_value v, const char* name, bool* out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_boolean) return TypeFail(env, name, "a boolean");
  return napi_get_value_bool(env, v, out) == napi_ok;
}

bool ArgString(napi_env env, napi_value v, const char* name, char* buf, size_t cap) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) return TypeFail(env, name, "a string");
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, nullptr, 0, &len) != napi_ok) return false;
  if (len + 1 > cap) {
    char text[160];
    snprintf(text, sizeof(text), "%s is longer than %zu bytes", name, cap - 1);
    napi_throw_range_error(env, nullptr, text);
    return false;
  }
  return napi_get_value_string_utf8(env, v, buf, cap, &len) == napi_ok;
}

bool ArgTyped(napi_env env, napi_value v, napi_typedarray_type type, const char* name, void** data,
              size_t* length) {
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return TypeFail(env, name, "a typed array");
  napi_typedarray_type actual;
  napi_value ab;
  size_t offset;
  if (napi_get_typedarray_info(env, v, &actual, length, data, &ab, &offset) != napi_ok) return false;
  if (actual != type) {
    const char* expected = type == napi_int32_array     ? "an Int32Array"
                           : type == napi_float64_array ? "a Float64Array"
                           : type == napi_uint8_array   ? "a Uint8Array"
                                                        : "a typed array of another type";
    return TypeFail(env, name, expected);
  }
  return true;
}

bool ArgBytes(napi_env env, napi_value v, const char* name, uint8_t** data, size_t* length) {
  bool is = false;
  napi_is_arraybuffer(env, v, &is);
  if (is) {
    void* p = nullptr;
    if (napi_get_arraybuffer_info(env, v, &p, length) != napi_ok) return false;
    *data = static_cast<uint8_t*>(p);
    return true;
  }
  void* p = nullptr;
  if (!ArgTyped(env, v, napi_uint8_array, name, &p, length)) return false;
  *data = static_cast<uint8_t*>(p);
  return true;
}

napi_value Undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

napi_value Int(napi_env env, int32_t value) {
  napi_value v;
  napi_create_int32(env, value, &v);
  return v;
}

void SetMethod(napi_env env, napi_value target, const char* name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, nullptr, &fn);
  napi_set_named_property(env, target, name, fn);
}

}  // namespace distnat
