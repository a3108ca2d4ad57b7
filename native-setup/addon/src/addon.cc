// distnat native binding: entry point. Packet I/O is added module by module.
#include <node_api.h>

static napi_value Version(napi_env env, napi_callback_info) {
  napi_value out;
  napi_create_uint32(env, 1, &out);
  return out;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor desc[] = {{"version", nullptr, Version, nullptr, nullptr, nullptr, napi_default, nullptr}};
  napi_define_properties(env, exports, sizeof(desc) / sizeof(desc[0]), desc);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
