// The numbers JavaScript and the addon share: flags, modes, counter slots and
// result codes. Each list is written once, here; the enums below and the
// `layout()` export (layout.cc) are both generated from it, and
// src/io/native.ts refuses a binding whose layout differs from its own
// typed copy (checked again by test/unit/io/native-layout.test.ts).
#pragma once

#include <cstdint>

// X(name, value) per entry.
#define DISTNAT_OPEN_FLAG(X) X(MultiQueue, 1) X(VnetHdr, 2)
#define DISTNAT_POLL_MODE(X) X(Read, 0) X(Recvmmsg, 1)
#define DISTNAT_RX_COUNTER(X) \
  X(Wakeups, 0) X(Batches, 1) X(Packets, 2) X(Bytes, 3) X(Errors, 4) X(Truncated, 5) X(LastErrno, 6)
#define DISTNAT_WRITE_MODE(X)                                                                       \
  X(Write, 0)         /* one write() per packet (TUN without vnet header) */                        \
  X(WriteZeroHdr, 1)  /* writev(zero virtio_net_hdr, packet): plain packets into a vnet TUN */      \
  X(Sendmmsg, 2)      /* raw IPv4, destination from each packet's header */                         \
  X(WriteHdrInBuf, 3) /* write(packet - prefix): the caller put a virtio_net_hdr before the packet */
#define DISTNAT_TX_COUNTER(X) \
  X(Calls, 0) X(Packets, 1) X(Bytes, 2) X(Dropped, 3) X(Errors, 4) X(LastErrno, 5) X(Invalid, 6)
#define DISTNAT_COALESCE_COUNTER(X) X(SegmentsIn, 0) X(SuperPackets, 1) X(SegmentsMerged, 2) X(BadChecksum, 3)
#define DISTNAT_COALESCE_FLAG(X) X(Udp, 1) /* merge UDP datagrams into UDP_L4 super-packets too */
#define DISTNAT_GSO_ERROR(X) \
  X(NotIpv4, -1) X(NotTcp, -2) X(BadLength, -3) X(BadSize, -4) X(NoRoom, -5) X(BadCsumOffset, -6)
#define DISTNAT_AEAD_RESULT(X) X(Done, 1) X(AuthFailed, 0) X(BadArgs, -1) X(CryptoFailed, -2)

// G(group) per list; each group becomes namespace distnat::layout::<group>
// holding `enum Value` with k<name> enumerators, and kCount for counter groups.
#define DISTNAT_LAYOUT_GROUPS(G) \
  G(OpenFlag, DISTNAT_OPEN_FLAG)   \
  G(PollMode, DISTNAT_POLL_MODE)   \
  G(RxCounter, DISTNAT_RX_COUNTER) \
  G(WriteMode, DISTNAT_WRITE_MODE) \
  G(TxCounter, DISTNAT_TX_COUNTER) \
  G(CoalesceCounter, DISTNAT_COALESCE_COUNTER) \
  G(CoalesceFlag, DISTNAT_COALESCE_FLAG) \
  G(GsoError, DISTNAT_GSO_ERROR)   \
  G(AeadResult, DISTNAT_AEAD_RESULT)

namespace distnat {
namespace layout {

#define DISTNAT_ENUMERATOR(name, value) k##name = value,
#define DISTNAT_COUNT(name, value) +1
#define DISTNAT_GROUP(group, list)                           \
  namespace group {                                          \
  enum Value : int32_t { list(DISTNAT_ENUMERATOR) };         \
  constexpr int32_t kCount = 0 list(DISTNAT_COUNT);          \
  }
DISTNAT_LAYOUT_GROUPS(DISTNAT_GROUP)
#undef DISTNAT_GROUP
#undef DISTNAT_COUNT
#undef DISTNAT_ENUMERATOR

}  // namespace layout
}  // namespace distnat
