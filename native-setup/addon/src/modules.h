// Each source file registers its functions on the exports object.
#pragma once

#include <node_api.h>

namespace distnat {

void InitTun(napi_env env, napi_value exports);
void InitRaw(napi_env env, napi_value exports);
void InitPoller(napi_env env, napi_value exports);
void InitBatch(napi_env env, napi_value exports);
void InitGso(napi_env env, napi_value exports);
void InitCoalesce(napi_env env, napi_value exports);
void InitAead(napi_env env, napi_value exports);
void InitCbcHmac(napi_env env, napi_value exports);
void InitHmac(napi_env env, napi_value exports);
void InitLayout(napi_env env, napi_value exports);
// In distnat_bpf.node only (bpf-addon.cc), which links libbpf.
void InitBpf(napi_env env, napi_value exports);
void InitNotify(napi_env env, napi_value exports);

}  // namespace distnat
