// distnat's BPF binding, an addon of its own: libbpf is linked here and
// nowhere else, so a machine without libbpf1 loses only the eBPF data path
// (src/io/bpf.ts turns the failed load into BpfUnavailableError) while the
// packet I/O of distnat_native.node, which every data path needs, loads.
#include <node_api.h>

#include "fds.h"
#include "modules.h"
#include "util.h"

namespace {

// Bumped whenever a function's contract changes (src/io/bpf.ts checks it).
constexpr int32_t kBpfBindingVersion = 1;

napi_value Version(napi_env env, napi_callback_info) { return distnat::Int(env, kBpfBindingVersion); }

napi_value Init(napi_env env, napi_value exports) {
  distnat::InitFds(env);
  distnat::SetMethod(env, exports, "version", Version);
  distnat::InitBpf(env, exports);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
