// distnat native binding: packet I/O that JavaScript cannot do cheaply.
// Each concern lives in its own file and registers itself here.
#include <node_api.h>

#include "fds.h"
#include "modules.h"
#include "util.h"

namespace {

// Bumped whenever a function's contract changes, so src/io/native.ts can
// refuse a stale build instead of misbehaving.
constexpr int32_t kBindingVersion = 11;

napi_value Version(napi_env env, napi_callback_info) { return distnat::Int(env, kBindingVersion); }

napi_value Init(napi_env env, napi_value exports) {
  distnat::InitFds(env);
  distnat::SetMethod(env, exports, "version", Version);
  distnat::InitTun(env, exports);
  distnat::InitRaw(env, exports);
  distnat::InitPoller(env, exports);
  distnat::InitBatch(env, exports);
  distnat::InitGso(env, exports);
  distnat::InitCoalesce(env, exports);
  distnat::InitAead(env, exports);
  distnat::InitCbcHmac(env, exports);
  distnat::InitHmac(env, exports);
  distnat::InitLayout(env, exports);
  distnat::InitNotify(env, exports);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
