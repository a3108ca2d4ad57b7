// The arguments of an ESP context's per-packet call, shared by the AES-GCM
// and AES-CBC + HMAC contexts: `this` is the wrapped context and the
// arguments are (buf, esp, ivEnd, end, seqHigh). Read without throwing, since
// the call is on the per-packet path: false means the caller returns its
// bad-arguments code. Bounds that depend on the suite are the caller's.
#pragma once

#include <node_api.h>

#include <cstddef>
#include <cstdint>

namespace distnat {

struct EspCallArgs {
  void* context;  // what napi_wrap attached to `this`
  uint8_t* buf;
  size_t length;
  int32_t esp, iv_end, end;
  int64_t seq_high;
};

bool ReadEspCallArgs(napi_env env, napi_callback_info info, EspCallArgs* a);

}  // namespace distnat
