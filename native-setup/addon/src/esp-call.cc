#include "esp-call.h"

namespace distnat {

bool ReadEspCallArgs(napi_env env, napi_callback_info info, EspCallArgs* a) {
  size_t argc = 5;
  napi_value argv[5], self;
  if (napi_get_cb_info(env, info, &argc, argv, &self, nullptr) != napi_ok || argc < 5) return false;
  a->context = nullptr;
  if (napi_unwrap(env, self, &a->context) != napi_ok || a->context == nullptr) return false;
  void* data = nullptr;
  a->length = 0;
  bool is_typed = false;
  napi_is_typedarray(env, argv[0], &is_typed);
  if (is_typed) {
    napi_typedarray_type type;
    if (napi_get_typedarray_info(env, argv[0], &type, &a->length, &data, nullptr, nullptr) != napi_ok ||
        type != napi_uint8_array)
      return false;
  } else if (napi_get_arraybuffer_info(env, argv[0], &data, &a->length) != napi_ok) {
    return false;
  }
  a->buf = static_cast<uint8_t*>(data);
  return napi_get_value_int32(env, argv[1], &a->esp) == napi_ok &&
         napi_get_value_int32(env, argv[2], &a->iv_end) == napi_ok &&
         napi_get_value_int32(env, argv[3], &a->end) == napi_ok &&
         napi_get_value_int64(env, argv[4], &a->seq_high) == napi_ok;
}

}  // namespace distnat
