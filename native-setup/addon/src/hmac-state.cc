#include "hmac-state.h"

#include <openssl/crypto.h>

#include <cstring>

namespace distnat {
namespace {

struct Shape {
  const char* name;
  const EVP_MD* (*md)();
  size_t block, digest, icv;
};

const Shape kShapes[] = {
    {"hmac-sha256-128", EVP_sha256, 64, 32, 16},
    {"hmac-sha384-192", EVP_sha384, 128, 48, 24},
    {"hmac-sha512-256", EVP_sha512, 128, 64, 32},
    {"hmac-sha1-96", EVP_sha1, 64, 20, 12},
};

}  // namespace

const char* HmacState::Init(const char* algorithm, const uint8_t* key, size_t key_len) {
  Release();
  const Shape* s = nullptr;
  for (const Shape& c : kShapes)
    if (strcmp(c.name, algorithm) == 0) s = &c;
  if (s == nullptr) return "unknown integrity algorithm";
  if (key_len != s->digest) return "the integrity key must be as long as the hash's output";
  uint8_t pad[128];
  inner_ = EVP_MD_CTX_new();
  outer_ = EVP_MD_CTX_new();
  work_ = EVP_MD_CTX_new();
  bool ok = inner_ != nullptr && outer_ != nullptr && work_ != nullptr;
  for (int round = 0; ok && round < 2; round++) {
    const uint8_t fill = round == 0 ? 0x36 : 0x5c;
    for (size_t i = 0; i < s->block; i++) pad[i] = static_cast<uint8_t>((i < key_len ? key[i] : 0) ^ fill);
    EVP_MD_CTX* c = round == 0 ? inner_ : outer_;
    ok = EVP_DigestInit_ex(c, s->md(), nullptr) == 1 && EVP_DigestUpdate(c, pad, s->block) == 1;
  }
  OPENSSL_cleanse(pad, sizeof(pad));
  if (!ok) {
    Release();
    return "OpenSSL could not set up the HMAC";
  }
  icv_len_ = s->icv;
  return nullptr;
}

bool HmacState::Mac(const uint8_t* data, size_t n, int64_t tail, uint8_t* icv) {
  uint8_t digest[kMaxDigest];
  unsigned int len = 0;
  bool ok = EVP_MD_CTX_copy_ex(work_, inner_) == 1 && EVP_DigestUpdate(work_, data, n) == 1;
  if (ok && tail >= 0) {
    const uint32_t t = static_cast<uint32_t>(tail);
    const uint8_t be[4] = {static_cast<uint8_t>(t >> 24), static_cast<uint8_t>(t >> 16),
                           static_cast<uint8_t>(t >> 8), static_cast<uint8_t>(t)};
    ok = EVP_DigestUpdate(work_, be, 4) == 1;
  }
  ok = ok && EVP_DigestFinal_ex(work_, digest, &len) == 1 && EVP_MD_CTX_copy_ex(work_, outer_) == 1 &&
       EVP_DigestUpdate(work_, digest, len) == 1 && EVP_DigestFinal_ex(work_, digest, &len) == 1;
  if (ok) memcpy(icv, digest, icv_len_);
  return ok;
}

bool HmacState::Verify(const uint8_t* data, size_t n, int64_t tail, const uint8_t* icv, bool* ok) {
  uint8_t mine[kMaxDigest];
  *ok = Mac(data, n, tail, mine);
  return *ok && CRYPTO_memcmp(mine, icv, icv_len_) == 0;
}

void HmacState::Release() {
  EVP_MD_CTX_free(inner_);  // frees clear the states
  EVP_MD_CTX_free(outer_);
  EVP_MD_CTX_free(work_);
  inner_ = outer_ = work_ = nullptr;
  icv_len_ = 0;
}

}  // namespace distnat
