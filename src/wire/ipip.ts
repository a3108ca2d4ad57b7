/**
 * IP in IP encapsulation (RFC 2003): the "virtual tunnel" between a host and
 * the router. An outer IPv4 header with protocol 4 is prepended to a whole
 * inner IPv4 datagram, which travels unchanged.
 *
 *                                          +---------------------------+
 *                                          |      Outer IP Header      |
 *     +---------------------------+        +---------------------------+
 *     |         IP Header         |        |         IP Header         |
 *     +---------------------------+  ====> +---------------------------+
 *     |         IP Payload        |        |         IP Payload        |
 *     +---------------------------+        +---------------------------+
 *
 * The outer header written by `encapsulate` (RFC 2003 3.1):
 *
 * | offset | field           | value                                        |
 * |--------|-----------------|----------------------------------------------|
 * | 0      | version, IHL    | 4, 5: no options                             |
 * | 1      | type of service | copied from the inner header                 |
 * | 2      | total length    | inner total length + 20                      |
 * | 4      | identification  | fresh per datagram                           |
 * | 6      | flags, offset   | DF copied from the inner header, MF 0, 0     |
 * | 8      | time to live    | 64 unless given                              |
 * | 9      | protocol        | 4                                            |
 * | 10     | header checksum | computed                                     |
 * | 12     | source          | tunnel entry point                           |
 * | 16     | destination     | tunnel exit point                            |
 *
 * Both directions work in place: the inner datagram sits in a buffer with
 * headroom, and only 20 octets before it are written or skipped.
 */
import { internetChecksum } from './checksum.ts';
import { copyUnlessInPlace, put16, put32, u16, u32 } from './bytes.ts';
import {
  checkIpv4,
  emitIpv4,
  ipv4HeaderLength,
  IPV4_DEFAULT_TTL,
  IPV4_MAX_TOTAL_LENGTH,
  IPV4_MIN_HEADER_LENGTH,
  Ipv4Field,
  Ipv4FragmentWord,
  parseIpv4,
  type Ipv4Header,
} from './ipv4.ts';
import { IpProtocol, fail, ok, type Parsed, type WireError } from './result.ts';

/** Octets `encapsulate` writes before the inner datagram: the headroom a buffer must leave. */
export const IPIP_OUTER_LENGTH = IPV4_MIN_HEADER_LENGTH;

// The IPv4 header's offsets and the flag word's parts as module constants
// (see bytes.ts).
const IP_VERSION_IHL = Ipv4Field.VERSION_IHL;
const IP_TOS = Ipv4Field.TOS;
const IP_TOTAL_LENGTH = Ipv4Field.TOTAL_LENGTH;
const IP_IDENTIFICATION = Ipv4Field.IDENTIFICATION;
const IP_FLAGS_FRAGMENT = Ipv4Field.FLAGS_FRAGMENT;
const IP_TTL = Ipv4Field.TTL;
const IP_PROTOCOL = Ipv4Field.PROTOCOL;
const IP_CHECKSUM = Ipv4Field.CHECKSUM;
const IP_SRC = Ipv4Field.SRC;
const IP_DST = Ipv4Field.DST;
const DF_OCTET = Ipv4FragmentWord.DF >> 8;
const FRAGMENT = Ipv4FragmentWord.FRAGMENT;

let lastId = Math.floor(Math.random() * 0x10000);

/**
 * A fresh Identification. A counter from a random start: RFC 6864 asks only
 * that non-atomic datagrams between one pair of addresses do not repeat an
 * ID within the reassembly lifetime, and one tunnel pair sees well under
 * 65536 fragmented datagrams in that time.
 */
export function nextIpv4Id(): number {
  lastId = (lastId + 1) & 0xffff;
  return lastId;
}

export type EncapsulateError = Extract<WireError, 'truncated' | 'bad-version' | 'bad-total-length'>;

/**
 * Writes an outer header into the 20 octets before the inner datagram at
 * buf[innerOffset, innerOffset + innerLength) and returns the offset where
 * the encapsulated datagram now starts (innerOffset - 20). Nothing is copied.
 * Fails with 'truncated' when the inner datagram is shorter than an IPv4
 * header or runs past the buffer, 'bad-version' when it is not IPv4, and
 * 'bad-total-length' when the result would exceed 65535 octets. Too little
 * headroom is the caller's bug (buffers are laid out with headroom) and
 * throws RangeError.
 */
export function encapsulate(
  buf: Uint8Array,
  innerOffset: number,
  innerLength: number,
  src: number,
  dst: number,
  id: number = nextIpv4Id(),
  ttl: number = IPV4_DEFAULT_TTL,
): number | EncapsulateError {
  if (innerOffset < IPIP_OUTER_LENGTH)
    throw new RangeError(`IP-in-IP needs 20 octets of headroom, got ${innerOffset}`);
  if (innerLength < IPV4_MIN_HEADER_LENGTH || innerOffset + innerLength > buf.length) return 'truncated';
  if (buf[innerOffset + IP_VERSION_IHL]! >> 4 !== 4) return 'bad-version';
  const total = innerLength + IPIP_OUTER_LENGTH;
  if (total > IPV4_MAX_TOTAL_LENGTH) return 'bad-total-length';
  const o = innerOffset - IPIP_OUTER_LENGTH;
  buf[o + IP_VERSION_IHL] = 0x45;
  buf[o + IP_TOS] = buf[innerOffset + IP_TOS]!;
  put16(buf, o + IP_TOTAL_LENGTH, total);
  put16(buf, o + IP_IDENTIFICATION, id);
  // RFC 2003 3.1: DF is copied so that path MTU discovery keeps working through the tunnel.
  buf[o + IP_FLAGS_FRAGMENT] = buf[innerOffset + IP_FLAGS_FRAGMENT]! & DF_OCTET;
  buf[o + IP_FLAGS_FRAGMENT + 1] = 0;
  buf[o + IP_TTL] = ttl;
  buf[o + IP_PROTOCOL] = IpProtocol.IPIP;
  put16(buf, o + IP_CHECKSUM, 0);
  put32(buf, o + IP_SRC, src);
  put32(buf, o + IP_DST, dst);
  put16(buf, o + IP_CHECKSUM, internetChecksum(buf, o, innerOffset));
  return o;
}

/** Where `decapsulate` found the inner datagram; reuse one instance per loop. */
export class IpipInner {
  /** Absolute offset of the inner IPv4 header in the buffer. */
  offset = 0;
  /** The inner datagram's total length. */
  length = 0;
  outerSrc = 0;
  outerDst = 0;
}

/**
 * Validates the outer header of buf[offset, offset + length) and fills `out`
 * with the inner datagram's place; returns null, or why the packet is not a
 * usable IP-in-IP datagram: the outer header's own reasons (checkIpv4),
 * 'bad-protocol' when it is not protocol 4, 'fragmented' when the outer
 * datagram is a fragment (only whole inner datagrams are forwarded), and for
 * the inner datagram 'truncated', 'bad-version', or 'bad-total-length' when
 * its Total Length is not the outer payload length. The inner header is
 * otherwise unchecked: wrap an Ipv4View on it before trusting it.
 */
export function decapsulate(
  buf: Uint8Array,
  offset: number,
  length: number,
  out: IpipInner,
  verifyChecksum = true,
): WireError | null {
  const err = checkIpv4(buf, offset, length, verifyChecksum);
  if (err !== null) return err;
  if (buf[offset + IP_PROTOCOL] !== IpProtocol.IPIP) return 'bad-protocol';
  if ((u16(buf, offset + IP_FLAGS_FRAGMENT) & FRAGMENT) !== 0) return 'fragmented';
  const hl = (buf[offset + IP_VERSION_IHL]! & 0xf) << 2;
  const inner = offset + hl;
  const available = u16(buf, offset + IP_TOTAL_LENGTH) - hl;
  if (available < IPV4_MIN_HEADER_LENGTH) return 'truncated';
  if (buf[inner + IP_VERSION_IHL]! >> 4 !== 4) return 'bad-version';
  const innerTotal = u16(buf, inner + IP_TOTAL_LENGTH);
  // RFC 2003 3.1 defines the outer Total Length as outer header plus inner datagram, exactly.
  if (innerTotal !== available) return 'bad-total-length';
  out.offset = inner;
  out.length = innerTotal;
  out.outerSrc = u32(buf, offset + IP_SRC);
  out.outerDst = u32(buf, offset + IP_DST);
  return null;
}

/** An IP-in-IP datagram as plain values; `inner` is a view into the parsed buffer. */
export interface IpipPacket {
  readonly outer: Ipv4Header;
  readonly inner: Uint8Array;
}

const scratch = new IpipInner();

/** Parses with the checks of `decapsulate`; the outer header is copied, the inner datagram is not. */
export function parseIpip(
  buf: Uint8Array,
  offset: number,
  length: number,
  verifyChecksum = true,
): Parsed<IpipPacket> {
  const err = decapsulate(buf, offset, length, scratch, verifyChecksum);
  if (err !== null) return fail(err);
  const outer = parseIpv4(buf, offset, length, false);
  if (!outer.ok) return outer;
  return ok({ outer: outer.value, inner: buf.subarray(scratch.offset, scratch.offset + scratch.length) });
}

/**
 * Writes outer header and inner datagram at buf[offset]; returns the total
 * length. The outer header must say protocol 4 and carry exactly the inner
 * datagram; anything else is a caller's bug and throws RangeError.
 */
export function emitIpip(p: IpipPacket, buf: Uint8Array, offset: number): number {
  if (p.outer.protocol !== IpProtocol.IPIP)
    throw new RangeError('IP-in-IP outer header must have protocol 4');
  if (p.outer.payloadLength !== p.inner.length)
    throw new RangeError('IP-in-IP outer payload length is not the inner length');
  const total = ipv4HeaderLength(p.outer) + p.inner.length;
  if (offset < 0 || offset + total > buf.length)
    throw new RangeError('buffer too short for the IP-in-IP datagram');
  const hl = emitIpv4(p.outer, buf, offset);
  copyUnlessInPlace(p.inner, buf, offset + hl);
  return total;
}
