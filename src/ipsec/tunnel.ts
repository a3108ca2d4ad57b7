/**
 * Tunnel-mode headers (RFC 4301 5.1.2.1): the outer IPv4 header built in
 * front of a protected inner datagram, and the ECN rule applied when an
 * inner datagram comes out (RFC 6040, normal mode).
 *
 * Outer header fields, and where each comes from:
 *
 * | offset | field          | value                                               |
 * |--------|----------------|-----------------------------------------------------|
 * | 0      | version, IHL   | 4, 5 (no options)                                   |
 * | 1      | DSCP, ECN      | copied from the inner header (RFC 4301, RFC 6040)   |
 * | 2      | total length   | set by the caller once the packet is complete       |
 * | 4      | identification | a per-engine counter (RFC 6864)                     |
 * | 6      | flags          | DF copied from the inner header (RFC 4301 8.1)      |
 * | 8      | TTL            | 64                                                  |
 * | 9      | protocol       | 50 (ESP), 51 (AH) or 17 (ESP-in-UDP)                |
 * | 12, 16 | addresses      | the SA's tunnel endpoints                           |
 */
import { put16, put32, u16 } from '../wire/bytes.ts';
import { internetChecksum, updateChecksum16 } from '../wire/checksum.ts';
import { IPV4_DEFAULT_TTL, IPV4_MIN_HEADER_LENGTH, Ipv4Field, Ipv4FragmentWord } from '../wire/ipv4.ts';

export const OUTER_HEADER_LENGTH = IPV4_MIN_HEADER_LENGTH;
const OUTER_TTL = IPV4_DEFAULT_TTL;

// The IPv4 header's offsets as module constants (see wire/bytes.ts).
const IP_VERSION_IHL = Ipv4Field.VERSION_IHL;
const IP_TOS = Ipv4Field.TOS;
const IP_IDENTIFICATION = Ipv4Field.IDENTIFICATION;
const IP_FLAGS_FRAGMENT = Ipv4Field.FLAGS_FRAGMENT;
const IP_TTL = Ipv4Field.TTL;
const IP_SRC = Ipv4Field.SRC;
const IP_DST = Ipv4Field.DST;
const IP_TOTAL_LENGTH = Ipv4Field.TOTAL_LENGTH;
const IP_PROTOCOL = Ipv4Field.PROTOCOL;
const IP_CHECKSUM = Ipv4Field.CHECKSUM;
const DF = Ipv4FragmentWord.DF;
const DF_OCTET = DF >> 8;

/** Identification values for the outer headers an engine builds. */
export class IdentificationCounter {
  constructor(public value = Math.floor(Math.random() * 0x10000)) {}

  next(): number {
    const v = this.value;
    this.value = (v + 1) & 0xffff;
    return v;
  }
}

/**
 * Writes a 20-byte outer header at buf[at] for the inner datagram at
 * buf[inner]. Total length, protocol and checksum are left for
 * `finishHeader`, once the packet is complete.
 */
export function writeOuterHeader(
  buf: Uint8Array,
  at: number,
  inner: number,
  src: number,
  dst: number,
  identification: number,
): void {
  buf[at + IP_VERSION_IHL] = 0x45;
  buf[at + IP_TOS] = buf[inner + IP_TOS]!;
  put16(buf, at + IP_IDENTIFICATION, identification);
  put16(buf, at + IP_FLAGS_FRAGMENT, buf[inner + IP_FLAGS_FRAGMENT]! & DF_OCTET ? DF : 0);
  buf[at + IP_TTL] = OUTER_TTL;
  put32(buf, at + IP_SRC, src);
  put32(buf, at + IP_DST, dst);
}

/** Sets total length and protocol of the IPv4 header at buf[ip] and recomputes its checksum. */
export function finishHeader(buf: Uint8Array, ip: number, totalLength: number, protocol: number): void {
  put16(buf, ip + IP_TOTAL_LENGTH, totalLength);
  buf[ip + IP_PROTOCOL] = protocol;
  put16(buf, ip + IP_CHECKSUM, 0);
  put16(buf, ip + IP_CHECKSUM, internetChecksum(buf, ip, ip + (buf[ip + IP_VERSION_IHL]! & 0x0f) * 4));
}

const NOT_ECT = 0;
const ECT_1 = 1;
const ECT_0 = 2;
const CE = 3;

/**
 * RFC 6040 4.2 at decapsulation: congestion marked on the outer header is
 * carried into the inner one. Updates the inner header (and its checksum)
 * in place; false when the combination must be dropped (outer CE over a
 * not-ECT inner datagram, whose sender cannot react to the mark).
 */
export function ecnDecapsulate(outerTos: number, buf: Uint8Array, inner: number): boolean {
  const outer = outerTos & 3;
  const tos = buf[inner + IP_TOS]!;
  const ecn = tos & 3;
  let next = ecn;
  if (outer === CE) {
    if (ecn === NOT_ECT) return false;
    next = CE;
  } else if (outer === ECT_1 && ecn === ECT_0) {
    next = ECT_1;
  }
  if (next !== ecn) {
    // The TOS octet shares its checksum word with version and IHL.
    const oldWord = u16(buf, inner + IP_VERSION_IHL);
    buf[inner + IP_TOS] = (tos & 0xfc) | next;
    put16(
      buf,
      inner + IP_CHECKSUM,
      updateChecksum16(u16(buf, inner + IP_CHECKSUM), oldWord, u16(buf, inner + IP_VERSION_IHL)),
    );
  }
  return true;
}
