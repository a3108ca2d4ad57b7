/**
 * The Internet checksum, in one place.
 *
 * - RFC 1071: the 16-bit one's complement of the one's complement sum of the
 *   data taken as big-endian 16-bit words, an odd last byte padded with zero.
 * - RFC 768 / RFC 793: TCP and UDP sums also cover a pseudo-header
 *
 *     +--------+--------+--------+--------+
 *     |           Source Address          |
 *     +--------+--------+--------+--------+
 *     |         Destination Address       |
 *     +--------+--------+--------+--------+
 *     |  zero  |  PTCL  |    TCP/UDP Length |
 *     +--------+--------+--------+--------+
 *
 * - RFC 1624: incremental update, HC' = ~(~HC + ~m + m'), which (unlike the
 *   RFC 1141 form) never produces 0x0000 from a non-zero input sum.
 * - RFC 768: a UDP checksum that computes to 0x0000 is sent as 0xFFFF; 0x0000
 *   on the wire means "no checksum" (IPv4 only).
 *
 * Sums are kept as unfolded 32-bit accumulators in the hot loop and folded
 * once; a JS number holds 2^53 so no intermediate folding is needed for any
 * packet that fits in memory.
 */

/** Adds the bytes of buf[start, end) to a running (unfolded) sum. */
export function sumBytes(buf: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial;
  let i = start;
  // Four bytes per step: two words; the unrolled form is ~2x faster in V8.
  const last4 = end - 3;
  for (; i < last4; i += 4) {
    sum += ((buf[i]! << 8) | buf[i + 1]!) + ((buf[i + 2]! << 8) | buf[i + 3]!);
  }
  for (; i + 1 < end; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if (i < end) sum += buf[i]! << 8;
  return sum;
}

/** Folds a running sum to 16 bits (one's complement addition of the carries). */
export function fold(sum: number): number {
  // Two folds suffice below 2^32; loop for larger accumulators.
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** RFC 1071 checksum of buf[start, end): the value to put in a checksum field. */
export function internetChecksum(buf: Uint8Array, start = 0, end = buf.length, initial = 0): number {
  return ~fold(sumBytes(buf, start, end, initial)) & 0xffff;
}

/** True when a region that includes its own checksum field verifies (sums to 0xFFFF). */
export function verifiesTo0(buf: Uint8Array, start: number, end: number, initial = 0): boolean {
  return fold(sumBytes(buf, start, end, initial)) === 0xffff;
}

/**
 * Unfolded sum of the IPv4 pseudo-header for TCP/UDP. Addresses are read from
 * an IPv4 header in place: src at ipOffset+12, dst at ipOffset+16.
 */
export function pseudoHeaderSumFromIp(
  buf: Uint8Array,
  ipOffset: number,
  protocol: number,
  length: number,
): number {
  return sumBytes(buf, ipOffset + 12, ipOffset + 20) + protocol + length;
}

/** Unfolded pseudo-header sum from addresses given as 32-bit unsigned integers. */
export function pseudoHeaderSum(src: number, dst: number, protocol: number, length: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + protocol + length;
}

/** RFC 1624 eqn. 3: a checksum after one 16-bit word changed from `oldWord` to `newWord`. */
export function updateChecksum16(checksum: number, oldWord: number, newWord: number): number {
  const sum = (~checksum & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff);
  return ~fold(sum) & 0xffff;
}

/** RFC 1624 for a changed 32-bit value (an IPv4 address): two 16-bit updates in one fold. */
export function updateChecksum32(checksum: number, oldValue: number, newValue: number): number {
  const sum =
    (~checksum & 0xffff) +
    (~(oldValue >>> 16) & 0xffff) +
    (~oldValue & 0xffff) +
    ((newValue >>> 16) & 0xffff) +
    (newValue & 0xffff);
  return ~fold(sum) & 0xffff;
}

/**
 * UDP over IPv4: a computed 0x0000 is transmitted as 0xFFFF (RFC 768), since
 * 0x0000 in the field means the sender computed no checksum.
 */
export function udpWireChecksum(computed: number): number {
  return computed === 0 ? 0xffff : computed;
}

/**
 * Incremental update of a UDP checksum field. A zero field means "no
 * checksum" and must stay zero; a result of zero is sent as 0xFFFF.
 */
export function updateUdpChecksum16(field: number, oldWord: number, newWord: number): number {
  if (field === 0) return 0;
  return udpWireChecksum(updateChecksum16(field, oldWord, newWord));
}
