// HMAC (RFC 2104) with the key absorbed once, for IPsec's truncated ICVs
// (RFC 4868 SHA-2, RFC 2404 SHA-1).
//
// A keyed HMAC is two hashes whose first block is fixed per key: K ^ ipad
// and K ^ opad. Both are hashed once, when the SA is built, and kept as two
// digest states; per packet each is copied into a work state
// (EVP_MD_CTX_copy_ex) and carries on from there, so a packet pays for
// its own bytes and two final blocks, never for the key set-up.
//
// Of OpenSSL 3.0's ways to keep a key, this one measured fastest on the
// reference box (docs/ipsec.md, "Native AES-CBC + HMAC"):
// EVP_MAC_CTX_dup of a keyed context builds a whole MAC context per packet,
// and EVP_MAC_init with a NULL key re-derives the pads each time.
#pragma once

#include <openssl/evp.h>

#include <cstddef>
#include <cstdint>

namespace distnat {

class HmacState {
 public:
  static constexpr size_t kMaxDigest = 64;

  HmacState() = default;
  HmacState(const HmacState&) = delete;
  HmacState& operator=(const HmacState&) = delete;
  ~HmacState() { Release(); }

  // `algorithm` is an IntegrityAlgorithm name of src/ipsec/types.ts; the key
  // must be the hash's output length (RFC 4868 2.1.1, RFC 2404 3). Null on
  // success, else why not (a configuration error for the caller to throw).
  const char* Init(const char* algorithm, const uint8_t* key, size_t key_len);

  // The ICV of data[0, n) followed by the 32-bit big-endian `tail` when it
  // is not negative (the ESN high half, RFC 4303 2.2.1), written to
  // icv[0, icv_len()). False only if OpenSSL fails.
  bool Mac(const uint8_t* data, size_t n, int64_t tail, uint8_t* icv);

  // True when the ICV of data[0, n) (+ tail) equals icv, compared in time
  // that does not depend on where they differ. `ok` is false if OpenSSL
  // failed (the caller drops the packet all the same).
  bool Verify(const uint8_t* data, size_t n, int64_t tail, const uint8_t* icv, bool* ok);

  size_t icv_len() const { return icv_len_; }
  bool ready() const { return work_ != nullptr; }
  // Frees the states; the key's traces go with them.
  void Release();

 private:
  EVP_MD_CTX* inner_ = nullptr;  // after K ^ ipad
  EVP_MD_CTX* outer_ = nullptr;  // after K ^ opad
  EVP_MD_CTX* work_ = nullptr;
  size_t icv_len_ = 0;
};

}  // namespace distnat
