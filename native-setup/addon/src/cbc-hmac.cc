// ESP AES-CBC (RFC 3602) with HMAC integrity (RFC 4868, RFC 2404), with
// OpenSSL state kept per SA.
//
// On node:crypto the suite costs a Cipher.update and two hash calls per
// packet, each allocating its output, plus the copies between them. Here
// the AES key schedule and the keyed HMAC states (hmac-state.h) are built
// once, when the SA is; per packet the IV is loaded (EVP_CipherInit_ex with
// a NULL cipher and key keeps the schedule) and the packet is sealed or
// opened where it lies in the caller's buffer, in one call.
//
//   esp        ivEnd                        end / icvAt
//   | SPI | Seq | IV (16) | payload ... pad len nh | ICV |
//                         \___ encrypted ___________/
//   \___ authenticated (+ ESN high half, RFC 4303 2.2.1) _/
//
// Encrypt-then-MAC on seal; on open the ICV is verified in constant time
// first and nothing is decrypted for a packet that fails it (no padding
// oracle, and the buffer stays as it was).
//
// IVs (RFC 3602 2.1: random and unpredictable to an attacker). With
// randomIv set, seal writes the IV itself from a per-SA pool filled by
// RAND_bytes 1 KiB at a time: the bytes come from OpenSSL's DRBG, each is
// used once, and none leaves the process before the packet that carries it,
// so an attacker who chooses plain text cannot know the IV it will meet
// (the flaw of chained IVs, RFC 3602 2.1's warning). Without it the caller
// has written the IV (known-answer tests).
//
// Per-packet calls never throw: they return a status (layout.h AeadResult).
//   seal: 1 sealed; -1 bounds or closed context; -2 OpenSSL failed.
//   open: 1 verified and decrypted; 0 ICV mismatch (the buffer is as it was);
//         -1 bounds or closed context; -2 OpenSSL failed (a drop all the same).
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstring>

#include "esp-call.h"
#include "hmac-state.h"
#include "layout.h"
#include "modules.h"
#include "util.h"

namespace distnat {
namespace {

constexpr size_t kIvLen = 16;
constexpr size_t kPool = 1024;
using namespace layout::AeadResult;

struct CbcHmac {
  EVP_CIPHER_CTX* enc = nullptr;
  EVP_CIPHER_CTX* dec = nullptr;
  HmacState mac;
  bool random_iv = false;
  size_t pool_used = kPool;
  uint8_t pool[kPool];
  napi_ref self = nullptr;
};

void Release(CbcHmac* c) {
  EVP_CIPHER_CTX_free(c->enc);  // frees clear the key schedule
  EVP_CIPHER_CTX_free(c->dec);
  c->enc = c->dec = nullptr;
  c->mac.Release();
  OPENSSL_cleanse(c->pool, sizeof(c->pool));
  c->pool_used = kPool;
}

void Finalize(napi_env, void* data, void*) {
  CbcHmac* c = static_cast<CbcHmac*>(data);
  Release(c);
  delete c;
}

const EVP_CIPHER* CipherFor(size_t key_len) {
  switch (key_len) {
    case 16:
      return EVP_aes_128_cbc();
    case 24:
      return EVP_aes_192_cbc();
    case 32:
      return EVP_aes_256_cbc();
    default:
      return nullptr;
  }
}

// new AesCbcHmacContext(key, integrity, integrityKey, randomIv)
napi_value New(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], self;
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, &self, nullptr));
  if (argc < 4) return ThrowType(env, "AesCbcHmacContext needs (key, integrity, integrityKey, randomIv)");
  uint8_t *key = nullptr, *ikey = nullptr;
  size_t key_len = 0, ikey_len = 0;
  char algorithm[32];
  bool random_iv = false;
  if (!ArgBytes(env, argv[0], "key", &key, &key_len) ||
      !ArgString(env, argv[1], "integrity", algorithm, sizeof(algorithm)) ||
      !ArgBytes(env, argv[2], "integrityKey", &ikey, &ikey_len) || !ArgBool(env, argv[3], "randomIv", &random_iv))
    return nullptr;
  const EVP_CIPHER* cipher = CipherFor(key_len);
  if (cipher == nullptr) return ThrowRange(env, "aes-cbc needs a 16, 24 or 32-byte key");
  CbcHmac* c = new CbcHmac();
  c->random_iv = random_iv;
  if (const char* why = c->mac.Init(algorithm, ikey, ikey_len)) {
    delete c;
    return ThrowRange(env, why);
  }
  c->enc = EVP_CIPHER_CTX_new();
  c->dec = EVP_CIPHER_CTX_new();
  // ESP pads by itself (RFC 4303 2.4): OpenSSL must not add or strip any.
  if (c->enc == nullptr || c->dec == nullptr || EVP_CipherInit_ex(c->enc, cipher, nullptr, key, nullptr, 1) != 1 ||
      EVP_CipherInit_ex(c->dec, cipher, nullptr, key, nullptr, 0) != 1 ||
      EVP_CIPHER_CTX_set_padding(c->enc, 0) != 1 || EVP_CIPHER_CTX_set_padding(c->dec, 0) != 1) {
    Release(c);
    delete c;
    napi_throw_error(env, nullptr, "OpenSSL could not set up AES-CBC");
    return nullptr;
  }
  if (napi_wrap(env, self, c, Finalize, nullptr, &c->self) != napi_ok) {
    Release(c);
    delete c;
    return ThrowType(env, "cannot wrap AesCbcHmacContext");
  }
  return self;
}

// The packet call's arguments: (buf, esp, ivEnd, end, seqHigh). Checked
// without throwing; false means return kBadArgs.
struct Packet {
  CbcHmac* c;
  uint8_t* buf;
  size_t esp, iv_end, end;
  int64_t seq_high;
};

bool ReadPacket(napi_env env, napi_callback_info info, Packet* p) {
  EspCallArgs a;
  if (!ReadEspCallArgs(env, info, &a)) return false;
  p->c = static_cast<CbcHmac*>(a.context);
  if (p->c->enc == nullptr) return false;  // closed
  const int32_t esp = a.esp, iv_end = a.iv_end, end = a.end;
  p->seq_high = a.seq_high;
  // SPI + Seq + IV before ivEnd, whole blocks after it, the ICV after end,
  // all inside the buffer.
  if (esp < 0 || static_cast<int64_t>(iv_end) < static_cast<int64_t>(esp) + 8 + static_cast<int64_t>(kIvLen) ||
      end <= iv_end || (end - iv_end) % kIvLen != 0 || static_cast<size_t>(end) + p->c->mac.icv_len() > a.length ||
      p->seq_high > 0xffffffffLL)
    return false;
  p->buf = a.buf;
  p->esp = static_cast<size_t>(esp);
  p->iv_end = static_cast<size_t>(iv_end);
  p->end = static_cast<size_t>(end);
  return true;
}

bool WriteRandomIv(CbcHmac* c, uint8_t* iv) {
  if (c->pool_used + kIvLen > kPool) {
    if (RAND_bytes(c->pool, kPool) != 1) return false;
    c->pool_used = 0;
  }
  memcpy(iv, c->pool + c->pool_used, kIvLen);
  // Bytes handed out once are not handed out again, nor kept.
  OPENSSL_cleanse(c->pool + c->pool_used, kIvLen);
  c->pool_used += kIvLen;
  return true;
}

// seal(buf, esp, ivEnd, end, seqHigh): [writes the IV at buf[ivEnd - 16],]
// encrypts buf[ivEnd, end) in place, then writes the ICV of buf[esp, end)
// at buf[end].
napi_value Seal(napi_env env, napi_callback_info info) {
  Packet p;
  if (!ReadPacket(env, info, &p)) return Int(env, kBadArgs);
  CbcHmac* c = p.c;
  uint8_t* iv = p.buf + p.iv_end - kIvLen;
  if (c->random_iv && !WriteRandomIv(c, iv)) return Int(env, kCryptoFailed);
  uint8_t* text = p.buf + p.iv_end;
  int out = 0;
  if (EVP_CipherInit_ex(c->enc, nullptr, nullptr, nullptr, iv, 1) != 1 ||
      EVP_CipherUpdate(c->enc, text, &out, text, static_cast<int>(p.end - p.iv_end)) != 1 ||
      !c->mac.Mac(p.buf + p.esp, p.end - p.esp, p.seq_high, p.buf + p.end))
    return Int(env, kCryptoFailed);
  return Int(env, kDone);
}

// open(buf, esp, ivEnd, icvAt, seqHigh): verifies the ICV at buf[icvAt],
// then decrypts buf[ivEnd, icvAt) in place.
napi_value Open(napi_env env, napi_callback_info info) {
  Packet p;
  if (!ReadPacket(env, info, &p)) return Int(env, kBadArgs);
  CbcHmac* c = p.c;
  bool ok = false;
  if (!c->mac.Verify(p.buf + p.esp, p.end - p.esp, p.seq_high, p.buf + p.end, &ok))
    return Int(env, ok ? kAuthFailed : kCryptoFailed);
  uint8_t* text = p.buf + p.iv_end;
  int out = 0;
  if (EVP_CipherInit_ex(c->dec, nullptr, nullptr, nullptr, text - kIvLen, 0) != 1 ||
      EVP_CipherUpdate(c->dec, text, &out, text, static_cast<int>(p.end - p.iv_end)) != 1)
    return Int(env, kCryptoFailed);
  return Int(env, kDone);
}

// close(): frees the OpenSSL state now instead of at garbage collection.
napi_value Close(napi_env env, napi_callback_info info) {
  napi_value self;
  DN_CALL(env, napi_get_cb_info(env, info, nullptr, nullptr, &self, nullptr));
  void* c = nullptr;
  if (napi_unwrap(env, self, &c) != napi_ok || c == nullptr) return ThrowType(env, "not an AesCbcHmacContext");
  Release(static_cast<CbcHmac*>(c));
  return Undefined(env);
}

}  // namespace

void InitCbcHmac(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"seal", nullptr, Seal, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"open", nullptr, Open, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"close", nullptr, Close, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_value cls;
  if (napi_define_class(env, "AesCbcHmacContext", NAPI_AUTO_LENGTH, New, nullptr,
                        sizeof(methods) / sizeof(methods[0]), methods, &cls) == napi_ok)
    napi_set_named_property(env, exports, "AesCbcHmacContext", cls);
}

}  // namespace distnat
