// ESP AES-GCM (RFC 4106) with OpenSSL contexts kept per SA.
//
// Node's crypto API builds a cipher object per AES-GCM packet: the key
// schedule, the GHASH key and the JS object cost ~4 us, the bytes themselves
// a fraction of that. Here the key is expanded once, when the SA is built;
// per packet only the nonce is loaded (EVP_CipherInit_ex with a NULL cipher
// and key keeps the schedule) and the packet is sealed or opened where it
// lies in the caller's buffer: no copy, no allocation, no JS object.
//
//   esp        ivEnd                        end / icvAt
//   | SPI | Seq | IV | payload ... pad len nh | ICV (16) |
//               \___ encrypted, authenticated with AAD = SPI [ESN hi] Seq
//
// The nonce is the 4-byte salt that follows the key in the SA's keying
// material, then the 8-byte explicit IV at buf[ivEnd - 8] (RFC 4106 4).
//
// Per-packet calls never throw: they return a status.
//   seal: 1 sealed; -1 bounds or closed context; -2 OpenSSL failed.
//   open: 1 verified and decrypted; 0 ICV mismatch (the buffer is as it was);
//         -1 bounds or closed context; -2 OpenSSL failed (a drop all the same).
// Node's binary exports the OpenSSL it links, and node-gyp puts Node's copy
// of the headers first on the include path, so this links against exactly
// the library Node uses.
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cstring>

#include "esp-call.h"
#include "layout.h"
#include "modules.h"
#include "util.h"

namespace distnat {
namespace {

constexpr size_t kSaltLen = 4;
constexpr size_t kIvLen = 8;
constexpr size_t kIcvLen = 16;
using namespace layout::AeadResult;

struct Gcm {
  EVP_CIPHER_CTX* enc = nullptr;
  EVP_CIPHER_CTX* dec = nullptr;
  uint8_t nonce[kSaltLen + kIvLen] = {};
  napi_ref self = nullptr;
};

void Release(Gcm* g) {
  EVP_CIPHER_CTX_free(g->enc);  // frees clear the key schedule
  EVP_CIPHER_CTX_free(g->dec);
  g->enc = g->dec = nullptr;
  OPENSSL_cleanse(g->nonce, sizeof(g->nonce));
}

void Finalize(napi_env, void* data, void*) {
  Gcm* g = static_cast<Gcm*>(data);
  Release(g);
  delete g;
}

const EVP_CIPHER* CipherFor(size_t key_len) {
  switch (key_len) {
    case 16:
      return EVP_aes_128_gcm();
    case 24:
      return EVP_aes_192_gcm();
    case 32:
      return EVP_aes_256_gcm();
    default:
      return nullptr;
  }
}

// new AesGcmContext(keyAndSalt: Uint8Array): 20, 28 or 36 bytes.
napi_value New(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], self;
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, &self, nullptr));
  if (argc < 1) return ThrowType(env, "AesGcmContext needs the key followed by the 4-byte salt");
  uint8_t* key = nullptr;
  size_t len = 0;
  if (!ArgBytes(env, argv[0], "keyAndSalt", &key, &len)) return nullptr;
  const EVP_CIPHER* cipher = len > kSaltLen ? CipherFor(len - kSaltLen) : nullptr;
  if (cipher == nullptr) return ThrowRange(env, "aes-gcm-16 needs a 16, 24 or 32-byte key plus a 4-byte salt");
  Gcm* g = new Gcm();
  g->enc = EVP_CIPHER_CTX_new();
  g->dec = EVP_CIPHER_CTX_new();
  // The default GCM IV length is 12 bytes: salt + explicit IV, as RFC 4106 wants.
  if (g->enc == nullptr || g->dec == nullptr ||
      EVP_CipherInit_ex(g->enc, cipher, nullptr, key, nullptr, 1) != 1 ||
      EVP_CipherInit_ex(g->dec, cipher, nullptr, key, nullptr, 0) != 1) {
    Release(g);
    delete g;
    napi_throw_error(env, nullptr, "OpenSSL could not set up AES-GCM");
    return nullptr;
  }
  memcpy(g->nonce, key + len - kSaltLen, kSaltLen);
  if (napi_wrap(env, self, g, Finalize, nullptr, &g->self) != napi_ok) {
    Release(g);
    delete g;
    return ThrowType(env, "cannot wrap AesGcmContext");
  }
  return self;
}

// The packet call's arguments: (buf, esp, ivEnd, end, seqHigh). Checked
// without throwing; false means return kBadArgs.
struct Packet {
  Gcm* g;
  uint8_t* buf;
  size_t esp, iv_end, end;
  int64_t seq_high;
};

bool ReadPacket(napi_env env, napi_callback_info info, Packet* p) {
  EspCallArgs a;
  if (!ReadEspCallArgs(env, info, &a)) return false;
  p->g = static_cast<Gcm*>(a.context);
  if (p->g->enc == nullptr) return false;  // closed
  const int32_t esp = a.esp, iv_end = a.iv_end, end = a.end;
  p->seq_high = a.seq_high;
  // SPI + Seq + IV before ivEnd, the ICV after end, all inside the buffer.
  if (esp < 0 || static_cast<int64_t>(iv_end) < static_cast<int64_t>(esp) + 8 + static_cast<int64_t>(kIvLen) || end < iv_end ||
      static_cast<size_t>(end) + kIcvLen > a.length || p->seq_high > 0xffffffffLL)
    return false;
  p->buf = a.buf;
  p->esp = static_cast<size_t>(esp);
  p->iv_end = static_cast<size_t>(iv_end);
  p->end = static_cast<size_t>(end);
  return true;
}

// AAD = SPI, [ESN high,] Seq (RFC 4106 5); nonce = salt, explicit IV.
size_t Prepare(const Packet& p, uint8_t aad[12]) {
  memcpy(p.g->nonce + kSaltLen, p.buf + p.iv_end - kIvLen, kIvLen);
  memcpy(aad, p.buf + p.esp, 4);
  if (p.seq_high < 0) {
    memcpy(aad + 4, p.buf + p.esp + 4, 4);
    return 8;
  }
  const uint32_t hi = static_cast<uint32_t>(p.seq_high);
  aad[4] = static_cast<uint8_t>(hi >> 24);
  aad[5] = static_cast<uint8_t>(hi >> 16);
  aad[6] = static_cast<uint8_t>(hi >> 8);
  aad[7] = static_cast<uint8_t>(hi);
  memcpy(aad + 8, p.buf + p.esp + 4, 4);
  return 12;
}

// seal(buf, esp, ivEnd, end, seqHigh): encrypts buf[ivEnd, end) in place, ICV at buf[end].
napi_value Seal(napi_env env, napi_callback_info info) {
  Packet p;
  if (!ReadPacket(env, info, &p)) return Int(env, kBadArgs);
  uint8_t aad[12];
  const int aad_len = static_cast<int>(Prepare(p, aad));
  EVP_CIPHER_CTX* c = p.g->enc;
  uint8_t* text = p.buf + p.iv_end;
  const int n = static_cast<int>(p.end - p.iv_end);
  int out = 0;
  if (EVP_CipherInit_ex(c, nullptr, nullptr, nullptr, p.g->nonce, 1) != 1 ||
      EVP_CipherUpdate(c, nullptr, &out, aad, aad_len) != 1 || EVP_CipherUpdate(c, text, &out, text, n) != 1 ||
      EVP_CipherFinal_ex(c, text + n, &out) != 1 ||
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, kIcvLen, p.buf + p.end) != 1)
    return Int(env, kCryptoFailed);
  return Int(env, kDone);
}

// open(buf, esp, ivEnd, icvAt, seqHigh): verifies the ICV at buf[icvAt] and
// decrypts buf[ivEnd, icvAt) in place.
napi_value Open(napi_env env, napi_callback_info info) {
  Packet p;
  if (!ReadPacket(env, info, &p)) return Int(env, kBadArgs);
  uint8_t aad[12];
  const int aad_len = static_cast<int>(Prepare(p, aad));
  EVP_CIPHER_CTX* c = p.g->dec;
  uint8_t* text = p.buf + p.iv_end;
  const int n = static_cast<int>(p.end - p.iv_end);
  int out = 0;
  if (EVP_CipherInit_ex(c, nullptr, nullptr, nullptr, p.g->nonce, 0) != 1 ||
      EVP_CipherUpdate(c, nullptr, &out, aad, aad_len) != 1 ||
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, kIcvLen, p.buf + p.end) != 1)
    return Int(env, kCryptoFailed);
  const bool decrypted = EVP_CipherUpdate(c, text, &out, text, n) == 1;
  if (decrypted && EVP_CipherFinal_ex(c, text + n, &out) == 1) return Int(env, kDone);
  // OpenSSL decrypts before it can compare tags. Forged bytes must not be
  // left behind (the engine promises an untouched packet on auth-failed),
  // and CTR is its own inverse: encrypting with the same nonce restores the
  // cipher text. Only forged or corrupted packets pay for this.
  EVP_CIPHER_CTX* e = p.g->enc;
  if (EVP_CipherInit_ex(e, nullptr, nullptr, nullptr, p.g->nonce, 1) != 1 ||
      EVP_CipherUpdate(e, text, &out, text, n) != 1)
    return Int(env, kCryptoFailed);
  return Int(env, kAuthFailed);
}

// close(): frees the OpenSSL state now instead of at garbage collection.
napi_value Close(napi_env env, napi_callback_info info) {
  napi_value self;
  DN_CALL(env, napi_get_cb_info(env, info, nullptr, nullptr, &self, nullptr));
  void* g = nullptr;
  if (napi_unwrap(env, self, &g) != napi_ok || g == nullptr) return ThrowType(env, "not an AesGcmContext");
  Release(static_cast<Gcm*>(g));
  return Undefined(env);
}

}  // namespace

void InitAead(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"seal", nullptr, Seal, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"open", nullptr, Open, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"close", nullptr, Close, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_value cls;
  if (napi_define_class(env, "AesGcmContext", NAPI_AUTO_LENGTH, New, nullptr,
                        sizeof(methods) / sizeof(methods[0]), methods, &cls) == napi_ok)
    napi_set_named_property(env, exports, "AesGcmContext", cls);
}

}  // namespace distnat
