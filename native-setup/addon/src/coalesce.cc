// Receive-side coalescing of TCP/IPv4 segments and UDP/IPv4 datagrams (what
// GRO does in the kernel) before they are written into an IFF_VNET_HDR TUN:
// consecutive packets of one flow become one super-packet with a
// virtio_net_hdr, so the stack behind the TUN runs IP input once per
// super-packet and the writer makes one system call for it.
//
// TCP (GSO type TCPV4): the stack runs TCP once per super-packet instead of
// once per segment, and acknowledges less often. A segment joins the open
// group of its flow when, like tcp_gro_receive:
// - IPv4 without options or fragmentation, TCP with payload and only ACK
//   (and PSH) set, and its TCP checksum verifies;
// - TTL, TOS and DF equal the group's; ack, window, header length and
//   options are byte-identical;
// - its seq continues the group and its payload is no larger than the
//   group's first (gso_size); the total stays under 64 KiB.
// PSH, or a short segment, closes the group.
//
// UDP (GSO type UDP_L4, only when the caller says the kernel takes it:
// Linux 6.2 and later): the kernel splits the super-packet back into the
// same datagrams at the receiving socket (udp_rcv_segment), each with the
// super-packet's addresses, ports, TOS, TTL and DF, gso_size bytes of
// payload (the last one fewer) and IP IDs counting up from the first's. So
// a datagram joins only what would come back out byte for byte:
// - IPv4 without options or fragmentation, UDP with payload, a non-zero
//   checksum that verifies, and a UDP length that fills the packet;
// - TTL, TOS and DF equal the group's, and its IP ID is the group's last
//   plus one;
// - its payload is the group's first's size (gso_size), or smaller, which
//   closes the group; at most kMaxUdpSegments, the total under 64 KiB.
//
// Anything else is passed through unchanged (a zero header), closing its
// flow's group so order within a flow is kept. Every packet is copied into
// an output slot, in input order of the slot where its group starts; the
// virtio_net_hdr goes in the 10 bytes before the packet.
//
// The super-packet's TCP or UDP checksum is left CHECKSUM_PARTIAL
// (pseudo-header sum; NEEDS_CSUM): every segment was verified, so the
// kernel need not and, delivering locally, does not sum the payload again.
#include <cstring>

#include "checksum.h"
#include "layout.h"
#include "modules.h"
#include "util.h"

namespace distnat {
namespace {

constexpr size_t kVnetHdrLen = 10;
constexpr int kMaxOpenGroups = 8;
constexpr size_t kMaxIpTotal = 65535;
// UDP_MAX_SEGMENTS of the kernels that first took UDP_L4 from a TUN (later ones allow more).
constexpr int kMaxUdpSegments = 64;
using namespace layout::CoalesceCounter;

struct Group {
  uint8_t* at;  // the packet in its output slot
  int32_t out_index;
  uint8_t proto;    // 6 or 17
  uint8_t key[12];  // saddr, daddr, sport, dport
  uint32_t next_seq;  // TCP: the next segment's seq; UDP: the next datagram's IP ID
  size_t thl;         // TCP header length; 8 for UDP
  size_t mss;
  size_t payload;  // bytes of payload so far
  int segments;
};

struct Out {
  uint8_t* base;
  size_t slot_size, headroom, slot_count;
  int32_t* pairs;
  int32_t n = 0;
};

uint8_t* Place(Out& o, const uint8_t* p, size_t len) {
  uint8_t* at = o.base + static_cast<size_t>(o.n) * o.slot_size + o.headroom;
  memcpy(at, p, len);
  memset(at - kVnetHdrLen, 0, kVnetHdrLen);
  o.pairs[2 * o.n] = static_cast<int32_t>(at - o.base);
  o.pairs[2 * o.n + 1] = static_cast<int32_t>(len);
  o.n++;
  return at;
}

void Finish(Out& o, Group& g, double* c) {
  if (g.segments < 2) return;  // a lone segment keeps its own full checksum
  uint8_t* ip = g.at;
  const bool udp = g.proto == 17;
  const size_t l4_len = g.thl + g.payload;
  const size_t total = 20 + l4_len;
  PutBe16(ip + 2, static_cast<uint32_t>(total));
  ip[10] = ip[11] = 0;
  uint16_t ip_sum = Checksum(ip, 20, 0);
  memcpy(ip + 10, &ip_sum, 2);
  if (udp) PutBe16(ip + 20 + 4, static_cast<uint32_t>(l4_len));
  uint16_t partial = Fold(PseudoSum(ip, g.proto, l4_len));
  const uint16_t csum_start = 20, csum_offset = udp ? 6 : 16;
  memcpy(ip + csum_start + csum_offset, &partial, 2);
  o.pairs[2 * g.out_index + 1] = static_cast<int32_t>(total);
  uint8_t* h = ip - kVnetHdrLen;
  h[0] = 1;             // VIRTIO_NET_HDR_F_NEEDS_CSUM
  h[1] = udp ? 5 : 1;   // VIRTIO_NET_HDR_GSO_UDP_L4 or _TCPV4
  const uint16_t hdr_len = static_cast<uint16_t>(20 + g.thl), gso_size = static_cast<uint16_t>(g.mss);
  memcpy(h + 2, &hdr_len, 2);  // little-endian fields: host order on the machines we run on
  memcpy(h + 4, &gso_size, 2);
  memcpy(h + 6, &csum_start, 2);
  memcpy(h + 8, &csum_offset, 2);
  c[kSuperPackets] += 1;
  c[kSegmentsMerged] += g.segments;
}

// Parses a segment that may be coalesced; false for anything else.
bool Eligible(const uint8_t* p, size_t len, size_t* thl, size_t* payload, bool* bad_sum) {
  *bad_sum = false;
  if (len < 40 || p[0] != 0x45 || p[9] != 6) return false;
  if (Be16(p + 2) != len) return false;
  if ((Be16(p + 6) & 0x3fff) != 0) return false;  // MF or a fragment offset
  const uint8_t* t = p + 20;
  *thl = static_cast<size_t>(t[12] >> 4) * 4;
  if (*thl < 20 || 20 + *thl >= len) return false;  // no payload
  if ((t[13] & ~0x18) != 0 || !(t[13] & 0x10)) return false;  // ACK, optionally PSH, nothing else
  *payload = len - 20 - *thl;
  if (Fold(Sum(t, len - 20, PseudoSum(p, 6, len - 20))) != 0xffff) {
    *bad_sum = true;
    return false;
  }
  return true;
}

bool CanAppend(const Group& g, const uint8_t* p, size_t thl, size_t payload) {
  const uint8_t* q = g.at;
  if (thl != g.thl || payload > g.mss) return false;
  if (p[1] != q[1] || p[8] != q[8] || ((p[6] ^ q[6]) & 0x40)) return false;  // TOS, TTL, DF
  uint32_t seq;
  memcpy(&seq, p + 24, 4);
  if (ntohl(seq) != g.next_seq) return false;
  // ack (28..31), header length (32), window (34..35), urgent pointer (38..39) and options equal.
  if (memcmp(p + 28, q + 28, 5) != 0 || memcmp(p + 34, q + 34, 2) != 0 || memcmp(p + 38, q + 38, 2) != 0) return false;
  if (thl > 20 && memcmp(p + 40, q + 40, thl - 20) != 0) return false;
  return 20 + thl + g.payload + payload <= kMaxIpTotal;
}

// Parses a datagram that may be coalesced; false for anything else.
bool UdpEligible(const uint8_t* p, size_t len, size_t* payload, bool* bad_sum) {
  *bad_sum = false;
  if (len <= 28 || p[0] != 0x45 || p[9] != 17) return false;
  if (Be16(p + 2) != len || Be16(p + 24) != len - 20) return false;
  if ((Be16(p + 6) & 0x3fff) != 0) return false;  // MF or a fragment offset
  // No checksum: the super-packet would get one the datagrams did not have.
  if (p[26] == 0 && p[27] == 0) return false;
  *payload = len - 28;
  if (Fold(Sum(p + 20, len - 20, PseudoSum(p, 17, len - 20))) != 0xffff) {
    *bad_sum = true;
    return false;
  }
  return true;
}

bool CanAppendUdp(const Group& g, const uint8_t* p, size_t payload) {
  const uint8_t* q = g.at;
  if (payload > g.mss || g.segments >= kMaxUdpSegments) return false;
  if (p[1] != q[1] || p[8] != q[8] || ((p[6] ^ q[6]) & 0x40)) return false;  // TOS, TTL, DF
  if (Be16(p + 4) != (g.next_seq & 0xffff)) return false;                     // the IP ID the split gives it
  return 28 + g.payload + payload <= kMaxIpTotal;
}

// ipv4Coalesce(src, pairs, count, out, slotSize, headroom, slotCount, outPairs, counters, flags):
// packets out. flags: CoalesceFlag bits (layout.h).
napi_value Ipv4Coalesce(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10];
  DN_CALL(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc < 10) return ThrowType(env, "ipv4Coalesce needs 10 arguments");
  uint8_t *src, *out;
  size_t src_len, out_len, pairs_len, out_pairs_len, counters_len;
  void *pairs_v, *out_pairs_v, *counters_v;
  int32_t count, slot_size, headroom, slot_count, flags;
  if (!ArgBytes(env, argv[0], "src", &src, &src_len) ||
      !ArgTyped(env, argv[1], napi_int32_array, "pairs", &pairs_v, &pairs_len) ||
      !ArgInt32(env, argv[2], "count", &count) || !ArgBytes(env, argv[3], "out", &out, &out_len) ||
      !ArgInt32(env, argv[4], "slotSize", &slot_size) || !ArgInt32(env, argv[5], "headroom", &headroom) ||
      !ArgInt32(env, argv[6], "slotCount", &slot_count) ||
      !ArgTyped(env, argv[7], napi_int32_array, "outPairs", &out_pairs_v, &out_pairs_len) ||
      !ArgTyped(env, argv[8], napi_float64_array, "counters", &counters_v, &counters_len) ||
      !ArgInt32(env, argv[9], "flags", &flags))
    return nullptr;
  if (count < 0 || static_cast<size_t>(count) * 2 > pairs_len) return ThrowRange(env, "count exceeds pairs");
  if (count > slot_count || static_cast<size_t>(slot_count) * 2 > out_pairs_len)
    return ThrowRange(env, "need a slot and an out pair per input packet");
  if (headroom < static_cast<int32_t>(kVnetHdrLen) || slot_size < headroom + static_cast<int32_t>(kMaxIpTotal) ||
      static_cast<size_t>(slot_size) * static_cast<size_t>(slot_count) > out_len)
    return ThrowRange(env, "out slots must hold a virtio_net_hdr and a 64 KiB packet each");
  if (counters_len < kCount) return ThrowRange(env, "counters is too short");

  const int32_t* pairs = static_cast<const int32_t*>(pairs_v);
  double* c = static_cast<double*>(counters_v);
  const bool with_udp = (flags & layout::CoalesceFlag::kUdp) != 0;
  Out o{out, static_cast<size_t>(slot_size), static_cast<size_t>(headroom), static_cast<size_t>(slot_count),
        static_cast<int32_t*>(out_pairs_v)};
  Group groups[kMaxOpenGroups];
  int open = 0;

  auto close_at = [&](int i) {
    Finish(o, groups[i], c);
    groups[i] = groups[--open];
  };

  for (int32_t i = 0; i < count; i++) {
    const int64_t off = pairs[2 * i], len64 = pairs[2 * i + 1];
    if (len64 <= 0 || off < 0 || off + len64 > static_cast<int64_t>(src_len)) continue;
    const uint8_t* p = src + off;
    const size_t len = static_cast<size_t>(len64);
    // TCP or (when asked) UDP over plain IPv4 have flows; their open group, if any.
    const uint8_t proto = len >= 28 && p[0] == 0x45 ? p[9] : 0;
    const bool flowing = (proto == 6 && len >= 40) || (proto == 17 && with_udp);
    int gi = -1;
    if (flowing) {
      for (int k = 0; k < open; k++)
        if (groups[k].proto == proto && memcmp(groups[k].key, p + 12, 12) == 0) gi = k;
    }
    size_t thl = 0, payload = 0;
    bool bad_sum = false;
    const bool ok = flowing && (proto == 6 ? Eligible(p, len, &thl, &payload, &bad_sum)
                                           : UdpEligible(p, len, &payload, &bad_sum));
    if (bad_sum) c[kBadChecksum] += 1;
    if (!ok) {
      if (gi >= 0) close_at(gi);
      Place(o, p, len);
      continue;
    }
    c[kSegmentsIn] += 1;
    if (proto == 17) thl = 8;
    if (gi >= 0 && (proto == 6 ? CanAppend(groups[gi], p, thl, payload) : CanAppendUdp(groups[gi], p, payload))) {
      Group& g = groups[gi];
      memcpy(g.at + 20 + g.thl + g.payload, p + 20 + thl, payload);
      g.payload += payload;
      g.segments++;
      if (proto == 17) {
        g.next_seq++;
        if (payload < g.mss) close_at(gi);
        continue;
      }
      g.next_seq += static_cast<uint32_t>(payload);
      g.at[20 + 13] |= p[20 + 13];  // PSH of the last segment
      if ((p[20 + 13] & 0x08) || payload < g.mss) close_at(gi);
      continue;
    }
    if (gi >= 0) close_at(gi);
    if (open == kMaxOpenGroups) close_at(0);
    Group& g = groups[open++];
    g.out_index = o.n;
    g.at = Place(o, p, len);
    g.proto = proto;
    memcpy(g.key, p + 12, 12);
    g.thl = thl;
    g.mss = payload;
    g.payload = payload;
    g.segments = 1;
    if (proto == 17) {
      g.next_seq = Be16(p + 4) + 1u;
      continue;
    }
    uint32_t seq;
    memcpy(&seq, p + 24, 4);
    g.next_seq = ntohl(seq) + static_cast<uint32_t>(payload);
    if (p[20 + 13] & 0x08) close_at(open - 1);
  }
  while (open > 0) close_at(open - 1);
  return Int(env, o.n);
}

}  // namespace

void InitCoalesce(napi_env env, napi_value exports) { SetMethod(env, exports, "ipv4Coalesce", Ipv4Coalesce); }

}  // namespace distnat
