// TCP/IPv4 segmentation of TSO super-packets, and completion of partial
// checksums, for packets read from an IFF_VNET_HDR TUN. Same contract as
// src/io/gso.ts (the reference, with the field table); here the copy and the
// checksum are one pass over cache-hot bytes, which is what makes carrying
// offloaded TCP through the tunnel affordable.
#include <arpa/inet.h>

#include <cstring>

#include "checksum.h"
#include "layout.h"
#include "modules.h"
#include "util.h"

namespace distnat {
namespace {

using namespace layout::GsoError;

int32_t Segment(const uint8_t* src, size_t length, int32_t mss, uint8_t* out, size_t out_len, size_t slot_size,
                size_t headroom, int32_t first, int32_t max_slots, int32_t* lengths) {
  if (length < 20 || (src[0] >> 4) != 4) return kNotIpv4;
  const size_t ihl = static_cast<size_t>(src[0] & 0x0f) * 4;
  if (ihl < 20 || ihl > length) return kNotIpv4;
  if (src[9] != 6) return kNotTcp;
  const size_t total = Be16(src + 2);
  if (total > length || total < ihl + 20) return kBadLength;
  const uint8_t* tcp = src + ihl;
  const size_t thl = static_cast<size_t>(tcp[12] >> 4) * 4;
  if (thl < 20 || ihl + thl > total) return kBadLength;
  const size_t hdrs = ihl + thl;
  const size_t payload = total - hdrs;
  if (payload > 0 && mss < 1) return kBadSize;
  const size_t seg_max = mss < 1 ? 0 : static_cast<size_t>(mss);
  const int32_t n = payload == 0 ? 1 : static_cast<int32_t>((payload + seg_max - 1) / seg_max);
  if (first < 0 || first + n > max_slots) return kNoRoom;
  if (headroom + hdrs + (payload < seg_max ? payload : seg_max) > slot_size) return kNoRoom;
  if (static_cast<size_t>(first + n) * slot_size > out_len) return kNoRoom;

  const uint32_t id0 = Be16(src + 4);
  uint32_t seq0;
  memcpy(&seq0, tcp + 4, 4);
  seq0 = ntohl(seq0);
  const uint8_t flags = tcp[13];
  for (int32_t k = 0; k < n; k++) {
    uint8_t* at = out + static_cast<size_t>(first + k) * slot_size + headroom;
    const size_t start = static_cast<size_t>(k) * seg_max;
    const size_t seg_len = payload == 0 ? 0 : (payload - start < seg_max ? payload - start : seg_max);
    memcpy(at, src, hdrs);
    memcpy(at + hdrs, tcp + thl + start, seg_len);
    PutBe16(at + 2, static_cast<uint32_t>(hdrs + seg_len));
    PutBe16(at + 4, (id0 + static_cast<uint32_t>(k)) & 0xffff);
    at[10] = at[11] = 0;
    uint16_t ip_sum = Checksum(at, ihl, 0);
    memcpy(at + 10, &ip_sum, 2);
    uint8_t* t = at + ihl;
    uint32_t seq = htonl(seq0 + static_cast<uint32_t>(start));
    memcpy(t + 4, &seq, 4);
    uint8_t f = flags;
    if (k < n - 1) f &= static_cast<uint8_t>(~0x09);  // FIN, PSH on the last only
    if (k > 0) f &= static_cast<uint8_t>(~0x80);      // CWR on the first only
    t[13] = f;
    t[16] = t[17] = 0;
    const size_t tcp_len = thl + seg_len;
    uint16_t tcp_sum = Checksum(t, tcp_len, PseudoSum(at, 6, tcp_len));
    memcpy(t + 16, &tcp_sum, 2);
    lengths[first + k] = static_cast<int32_t>(hdrs + seg_len);
  }
  return n;
}

// tcp4Segment(src: Uint8Array, offset, length, mss, out: Uint8Array, slotSize, headroom,
//             firstSlot, maxSlots, lengths: Int32Array): segments, or a negative GsoError
napi_value Tcp4Segment(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc < 10) return ThrowType(env, "tcp4Segment needs 10 arguments");
  uint8_t *src, *out;
  size_t src_len, out_len, lengths_len;
  void* lengths;
  int32_t offset, length, mss, slot_size, headroom, first, max_slots;
  if (!ArgBytes(env, argv[0], "src", &src, &src_len) || !ArgInt32(env, argv[1], "offset", &offset) ||
      !ArgInt32(env, argv[2], "length", &length) || !ArgInt32(env, argv[3], "mss", &mss) ||
      !ArgBytes(env, argv[4], "out", &out, &out_len) || !ArgInt32(env, argv[5], "slotSize", &slot_size) ||
      !ArgInt32(env, argv[6], "headroom", &headroom) || !ArgInt32(env, argv[7], "firstSlot", &first) ||
      !ArgInt32(env, argv[8], "maxSlots", &max_slots) ||
      !ArgTyped(env, argv[9], napi_int32_array, "lengths", &lengths, &lengths_len))
    return nullptr;
  if (offset < 0 || length < 0 || static_cast<size_t>(offset) + static_cast<size_t>(length) > src_len)
    return Int(env, kBadLength);
  if (slot_size <= 0 || headroom < 0 || max_slots < 0 || static_cast<size_t>(max_slots) > lengths_len)
    return ThrowRange(env, "bad slot geometry");
  return Int(env, Segment(src + offset, static_cast<size_t>(length), mss, out, out_len,
                          static_cast<size_t>(slot_size), static_cast<size_t>(headroom), first, max_slots,
                          static_cast<int32_t*>(lengths)));
}

// completeChecksum(bytes, offset, length, csumStart, csumOffset): 0, or kBadCsumOffset
napi_value CompleteChecksum(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  uint8_t* bytes;
  size_t len;
  int32_t offset, length, start, field;
  if (argc < 5 || !ArgBytes(env, argv[0], "bytes", &bytes, &len) || !ArgInt32(env, argv[1], "offset", &offset) ||
      !ArgInt32(env, argv[2], "length", &length) || !ArgInt32(env, argv[3], "csumStart", &start) ||
      !ArgInt32(env, argv[4], "csumOffset", &field))
    return nullptr;
  if (offset < 0 || length < 0 || static_cast<size_t>(offset) + static_cast<size_t>(length) > len || start < 0 ||
      field < 0 || static_cast<int64_t>(start) + field + 2 > length)
    return Int(env, kBadCsumOffset);
  uint8_t* p = bytes + offset;
  uint16_t sum = Checksum(p + start, static_cast<size_t>(length - start), 0);
  if (sum == 0 && length >= 20 && p[9] == 17) sum = 0xffff;
  memcpy(p + start + field, &sum, 2);
  return Int(env, 0);
}

}  // namespace

void InitGso(napi_env env, napi_value exports) {
  SetMethod(env, exports, "tcp4Segment", Tcp4Segment);
  SetMethod(env, exports, "completeChecksum", CompleteChecksum);
}

}  // namespace distnat
