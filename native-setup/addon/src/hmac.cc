// A keyed IPsec HMAC (hmac-state.h) for JavaScript: AH's ICV and ESP with
// NULL encryption (src/ipsec/hmac.ts), which lay their message out
// themselves and need only the MAC of a region, in one call without an
// allocation.
//
// Per-packet calls never throw: mac returns 1 done, -1 bounds or closed
// context, -2 OpenSSL failed (layout.h AeadResult).
#include <cstring>

#include "hmac-state.h"
#include "layout.h"
#include "modules.h"
#include "util.h"

namespace distnat {
namespace {

using namespace layout::AeadResult;

struct Hmac {
  HmacState state;
  napi_ref self = nullptr;
};

void Finalize(napi_env, void* data, void*) { delete static_cast<Hmac*>(data); }

// new HmacContext(integrity, key)
napi_value New(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], self;
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, &self, nullptr));
  if (argc < 2) return ThrowType(env, "HmacContext needs (integrity, key)");
  char algorithm[32];
  uint8_t* key = nullptr;
  size_t key_len = 0;
  if (!ArgString(env, argv[0], "integrity", algorithm, sizeof(algorithm)) ||
      !ArgBytes(env, argv[1], "key", &key, &key_len))
    return nullptr;
  Hmac* h = new Hmac();
  if (const char* why = h->state.Init(algorithm, key, key_len)) {
    delete h;
    return ThrowRange(env, why);
  }
  if (napi_wrap(env, self, h, Finalize, nullptr, &h->self) != napi_ok) {
    delete h;
    return ThrowType(env, "cannot wrap HmacContext");
  }
  return self;
}

bool Bytes(napi_env env, napi_value v, uint8_t** data, size_t* len) {
  bool is_typed = false;
  napi_is_typedarray(env, v, &is_typed);
  void* d = nullptr;
  if (is_typed) {
    napi_typedarray_type type;
    if (napi_get_typedarray_info(env, v, &type, len, &d, nullptr, nullptr) != napi_ok || type != napi_uint8_array)
      return false;
  } else if (napi_get_arraybuffer_info(env, v, &d, len) != napi_ok) {
    return false;
  }
  *data = static_cast<uint8_t*>(d);
  return true;
}

// mac(buf, start, end, tail, out, at): the ICV of buf[start, end) followed
// by the 32-bit `tail` when it is not negative, written to out[at].
napi_value Mac(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6], self;
  if (napi_get_cb_info(env, info, &argc, argv, &self, nullptr) != napi_ok || argc < 6) return Int(env, kBadArgs);
  void* h = nullptr;
  if (napi_unwrap(env, self, &h) != napi_ok || h == nullptr) return Int(env, kBadArgs);
  HmacState& s = static_cast<Hmac*>(h)->state;
  if (!s.ready()) return Int(env, kBadArgs);  // closed
  uint8_t *buf = nullptr, *out = nullptr;
  size_t buf_len = 0, out_len = 0;
  int32_t start, end, at;
  int64_t tail;
  if (!Bytes(env, argv[0], &buf, &buf_len) || napi_get_value_int32(env, argv[1], &start) != napi_ok ||
      napi_get_value_int32(env, argv[2], &end) != napi_ok || napi_get_value_int64(env, argv[3], &tail) != napi_ok ||
      !Bytes(env, argv[4], &out, &out_len) || napi_get_value_int32(env, argv[5], &at) != napi_ok)
    return Int(env, kBadArgs);
  if (start < 0 || end < start || static_cast<size_t>(end) > buf_len || at < 0 ||
      static_cast<size_t>(at) + s.icv_len() > out_len || tail > 0xffffffffLL)
    return Int(env, kBadArgs);
  // The MAC is computed before out is written, so out may overlap buf.
  uint8_t icv[HmacState::kMaxDigest];
  if (!s.Mac(buf + start, static_cast<size_t>(end - start), tail, icv)) return Int(env, kCryptoFailed);
  memcpy(out + at, icv, s.icv_len());
  return Int(env, kDone);
}

napi_value Close(napi_env env, napi_callback_info info) {
  napi_value self;
  DN_CALL(env, napi_get_cb_info(env, info, nullptr, nullptr, &self, nullptr));
  void* h = nullptr;
  if (napi_unwrap(env, self, &h) != napi_ok || h == nullptr) return ThrowType(env, "not an HmacContext");
  static_cast<Hmac*>(h)->state.Release();
  return Undefined(env);
}

}  // namespace

void InitHmac(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"mac", nullptr, Mac, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"close", nullptr, Close, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_value cls;
  if (napi_define_class(env, "HmacContext", NAPI_AUTO_LENGTH, New, nullptr, sizeof(methods) / sizeof(methods[0]),
                        methods, &cls) == napi_ok)
    napi_set_named_property(env, exports, "HmacContext", cls);
}

}  // namespace distnat
