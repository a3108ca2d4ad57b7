// RFC 1071 sums over memory-order words, shared by segmentation and coalescing.
#pragma once

#include <arpa/inet.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace distnat {

// One's complement sum of memory-order 16-bit words, accumulated as 32-bit
// loads in 64 bits (RFC 1071 section 2: byte order and word width do not
// change the folded result when used consistently).
inline uint64_t Sum(const uint8_t* p, size_t n, uint64_t acc) {
  while (n >= 16) {
    uint32_t w[4];
    memcpy(w, p, 16);
    acc += static_cast<uint64_t>(w[0]) + w[1] + w[2] + w[3];
    p += 16;
    n -= 16;
  }
  while (n >= 4) {
    uint32_t w;
    memcpy(&w, p, 4);
    acc += w;
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    uint16_t w;
    memcpy(&w, p, 2);
    acc += w;
    p += 2;
    n -= 2;
  }
  if (n == 1) {
    uint16_t w = 0;
    memcpy(&w, p, 1);  // the odd byte, padded with zero after it
    acc += w;
  }
  return acc;
}

inline uint16_t Fold(uint64_t acc) {
  acc = (acc & 0xffffffffu) + (acc >> 32);
  acc = (acc & 0xffffffffu) + (acc >> 32);
  uint32_t a = static_cast<uint32_t>(acc);
  a = (a & 0xffff) + (a >> 16);
  a = (a & 0xffff) + (a >> 16);
  return static_cast<uint16_t>(a);
}

// The checksum field value, in memory order.
inline uint16_t Checksum(const uint8_t* p, size_t n, uint64_t initial) {
  return static_cast<uint16_t>(~Fold(Sum(p, n, initial)));
}

// Unfolded TCP/UDP pseudo-header sum for the IPv4 header at ip.
inline uint64_t PseudoSum(const uint8_t* ip, uint8_t protocol, size_t l4_length) {
  uint32_t a, b;
  memcpy(&a, ip + 12, 4);
  memcpy(&b, ip + 16, 4);
  return static_cast<uint64_t>(a) + b + htons(protocol) + htons(static_cast<uint16_t>(l4_length));
}

inline uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline void PutBe16(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

}  // namespace distnat
