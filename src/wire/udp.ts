/**
 * UDP header (RFC 768).
 *
 *      0      7 8     15 16    23 24    31
 *     +--------+--------+--------+--------+
 *     |     Source      |   Destination   |
 *     |      Port       |      Port       |
 *     +--------+--------+--------+--------+
 *     |                 |                 |
 *     |     Length      |    Checksum     |
 *     +--------+--------+--------+--------+
 *     |
 *     |          data octets ...
 *     +---------------- ...
 *
 * | offset | size | field                                                   |
 * |--------|------|---------------------------------------------------------|
 * | 0      | 2    | source port                                             |
 * | 2      | 2    | destination port                                        |
 * | 4      | 2    | length of header and data in octets, at least 8         |
 * | 6      | 2    | checksum: pseudo-header, header, data; 0 = none (IPv4)  |
 *
 * Zero-checksum rule (RFC 768): 0x0000 in the field means the sender
 * computed no checksum, and it must not be verified or updated; a computed
 * 0x0000 is sent as 0xFFFF. The helpers in checksum.ts apply both.
 *
 * The IPv4 payload may be longer than the UDP length (link padding); the
 * octets past it are not part of the datagram, as in Linux's udp_rcv.
 */
import {
  fold,
  internetChecksum,
  pseudoHeaderSum,
  sumBytes,
  udpWireChecksum,
  updateUdpChecksum16,
} from './checksum.ts';
import { copyUnlessInPlace, put16, u16 } from './bytes.ts';
import { PortField } from './ports.ts';
import { IpProtocol, fail, ok, type Parsed, type WireError } from './result.ts';
import { HeaderView } from './view.ts';

export const UDP_HEADER_LENGTH = 8;

// Where each field starts, in octets from the start of the header (the table
// above): module constants, as bytes.ts explains; UdpField gathers them for other
// modules.
const SRC_PORT = PortField.SRC_PORT;
const DST_PORT = PortField.DST_PORT;
const LENGTH = 4;
const CHECKSUM = 6;
export const UdpField = { SRC_PORT, DST_PORT, LENGTH, CHECKSUM } as const;

/**
 * The datagram as plain values; the length and checksum are derived by emit.
 * `payload` is a view into the parsed buffer, not a copy.
 */
export interface UdpHeader {
  readonly srcPort: number;
  readonly dstPort: number;
  /** False for a datagram sent with checksum 0x0000. */
  readonly hasChecksum: boolean;
  readonly payload: Uint8Array;
}

/**
 * The checks every UDP entry point shares; `length` is the octets present
 * (the IPv4 payload length). A non-zero checksum is verified when both
 * addresses of the pseudo-header are given.
 */
export function checkUdp(
  buf: Uint8Array,
  offset: number,
  length: number,
  src?: number,
  dst?: number,
): WireError | null {
  if (!(offset >= 0 && length >= UDP_HEADER_LENGTH && offset + length <= buf.length)) return 'truncated';
  const ulen = u16(buf, offset + LENGTH);
  if (ulen < UDP_HEADER_LENGTH) return 'bad-length';
  if (ulen > length) return 'truncated';
  if (src !== undefined && dst !== undefined && u16(buf, offset + CHECKSUM) !== 0) {
    const pseudo = pseudoHeaderSum(src, dst, IpProtocol.UDP, ulen);
    if (fold(sumBytes(buf, offset, offset + ulen, pseudo)) !== 0xffff) return 'bad-checksum';
  }
  return null;
}

function fillDatagramChecksum(buf: Uint8Array, offset: number, ulen: number, src: number, dst: number): void {
  put16(buf, offset + CHECKSUM, 0);
  const pseudo = pseudoHeaderSum(src, dst, IpProtocol.UDP, ulen);
  put16(buf, offset + CHECKSUM, udpWireChecksum(internetChecksum(buf, offset, offset + ulen, pseudo)));
}

/**
 * A view over a UDP datagram in place; re-point with `wrap`, `check` once,
 * then read. Port setters update the checksum by RFC 1624 and leave a zero
 * (absent) checksum at zero.
 */
export class UdpView extends HeaderView {
  // `length`: Octets present from `offset`; the datagram's own length is `datagramLength`.
  constructor(buf: Uint8Array = new Uint8Array(UDP_HEADER_LENGTH), offset = 0, length = buf.length - offset) {
    super(buf, offset, length);
  }

  /** Structure, and a non-zero checksum when the pseudo-header's addresses are given. */
  check(src?: number, dst?: number): WireError | null {
    return checkUdp(this.buf, this.offset, this.length, src, dst);
  }

  get srcPort(): number {
    return u16(this.buf, this.offset + SRC_PORT);
  }
  get dstPort(): number {
    return u16(this.buf, this.offset + DST_PORT);
  }
  /** The Length field: header plus data. */
  get datagramLength(): number {
    return u16(this.buf, this.offset + LENGTH);
  }
  get checksum(): number {
    return u16(this.buf, this.offset + CHECKSUM);
  }
  get hasChecksum(): boolean {
    return this.checksum !== 0;
  }
  get payloadOffset(): number {
    return this.offset + UDP_HEADER_LENGTH;
  }
  get payloadLength(): number {
    return this.datagramLength - UDP_HEADER_LENGTH;
  }

  setSrcPort(port: number): void {
    this.setChecksum(updateUdpChecksum16(this.checksum, this.srcPort, port));
    put16(this.buf, this.offset + SRC_PORT, port);
  }
  setDstPort(port: number): void {
    this.setChecksum(updateUdpChecksum16(this.checksum, this.dstPort, port));
    put16(this.buf, this.offset + DST_PORT, port);
  }
  setChecksum(checksum: number): void {
    put16(this.buf, this.offset + CHECKSUM, checksum);
  }
  /** Computes the checksum from scratch (never leaves 0x0000, which would mean "none"). */
  fillChecksum(src: number, dst: number): void {
    fillDatagramChecksum(this.buf, this.offset, this.datagramLength, src, dst);
  }
}

/** Parses a datagram within `length` octets; verifies a non-zero checksum when both addresses are given. */
export function parseUdp(
  buf: Uint8Array,
  offset: number,
  length: number,
  src?: number,
  dst?: number,
): Parsed<UdpHeader> {
  const err = checkUdp(buf, offset, length, src, dst);
  if (err !== null) return fail(err);
  return ok({
    srcPort: u16(buf, offset + SRC_PORT),
    dstPort: u16(buf, offset + DST_PORT),
    hasChecksum: u16(buf, offset + CHECKSUM) !== 0,
    payload: buf.subarray(offset + UDP_HEADER_LENGTH, offset + u16(buf, offset + LENGTH)),
  });
}

/**
 * Writes header and payload at buf[offset]; the checksum for the given
 * addresses, or 0x0000 when `hasChecksum` is false. Returns the datagram
 * length. A payload too long for the Length field or a short buffer is a
 * caller's bug and throws RangeError.
 */
export function emitUdp(h: UdpHeader, buf: Uint8Array, offset: number, src: number, dst: number): number {
  const ulen = UDP_HEADER_LENGTH + h.payload.length;
  if (ulen > 0xffff) throw new RangeError('UDP datagram exceeds 65535 octets');
  if (offset < 0 || offset + ulen > buf.length) throw new RangeError('buffer too short for the UDP datagram');
  put16(buf, offset + SRC_PORT, h.srcPort);
  put16(buf, offset + DST_PORT, h.dstPort);
  put16(buf, offset + LENGTH, ulen);
  copyUnlessInPlace(h.payload, buf, offset + UDP_HEADER_LENGTH);
  if (h.hasChecksum) fillDatagramChecksum(buf, offset, ulen, src, dst);
  else put16(buf, offset + CHECKSUM, 0);
  return ulen;
}
