/**
 * IP Authentication Header (RFC 4302), for IPv4.
 *
 *     0                   1                   2                   3
 *     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *    +---------------+---------------+---------------+---------------+
 *    | Next Header   |  Payload Len  |          RESERVED             |
 *    +---------------+---------------+---------------+---------------+
 *    |                 Security Parameters Index (SPI)               |
 *    +---------------+---------------+---------------+---------------+
 *    |                    Sequence Number Field                      |
 *    +---------------+---------------+---------------+---------------+
 *    |                                                               |
 *    +                Integrity Check Value-ICV (variable)           |
 *    |                                                               |
 *    +---------------+---------------+---------------+---------------+
 *
 * | offset | size        | field                                           |
 * |--------|-------------|-------------------------------------------------|
 * | 0      | 1           | next header (IP protocol number of the payload) |
 * | 1      | 1           | payload len: AH length in 32-bit words minus 2  |
 * | 2      | 2           | reserved, sent as zero, covered by the ICV      |
 * | 4      | 4           | SPI                                             |
 * | 8      | 4           | sequence number (low 32 bits with ESN)          |
 * | 12     | len*4+8-12  | ICV, padded so the header is a multiple of 4    |
 *
 * The ICV itself is computed elsewhere; this module locates it and prepares
 * the bytes it covers (`ahIcvInput`).
 */
import { put16, put32, u16, u32 } from './bytes.ts';
import { IPV4_MIN_HEADER_LENGTH, Ipv4Field, Ipv4FragmentWord, Ipv4OptionType } from './ipv4.ts';
import { OPTION_EOL, OPTION_NOP } from './option-list.ts';
import { IpProtocol, fail, ok, type Parsed, type WireError } from './result.ts';
import { HeaderView } from './view.ts';

export const AH_FIXED_LENGTH = 12;
/** Payload Len is 8 bits: (255 + 2) * 4 bytes of header, 12 of them fixed. */
export const AH_MAX_ICV_LENGTH = (255 + 2) * 4 - AH_FIXED_LENGTH;

// Where each field starts, in octets from the start of the header (the table
// above): module constants, as bytes.ts explains; AhField gathers them for other
// modules.
const NEXT_HEADER = 0;
const PAYLOAD_LEN = 1;
const RESERVED = 2;
const SPI = 4;
const SEQUENCE = 8;
const ICV = 12;
export const AhField = { NEXT_HEADER, PAYLOAD_LEN, RESERVED, SPI, SEQUENCE, ICV } as const;

// What `ahIcvInput` reads of the IPv4 header, as module constants (see
// bytes.ts).
const IP_VERSION_IHL = Ipv4Field.VERSION_IHL;
const IP_TOTAL_LENGTH = Ipv4Field.TOTAL_LENGTH;
const IP_PROTOCOL = Ipv4Field.PROTOCOL;
const IP_FLAGS_FRAGMENT = Ipv4Field.FLAGS_FRAGMENT;
const IP_TOS = Ipv4Field.TOS;
const IP_TTL = Ipv4Field.TTL;
const IP_CHECKSUM = Ipv4Field.CHECKSUM;
const IP_OPTIONS = Ipv4Field.OPTIONS;
const IP_MIN_HEADER = IPV4_MIN_HEADER_LENGTH;
const IP_FRAGMENT = Ipv4FragmentWord.FRAGMENT;
const AH = IpProtocol.AH;
const EOL = OPTION_EOL;
const NOP = OPTION_NOP;
const Opt = Ipv4OptionType;

/** Validates an AH header at buf[offset] within `length` bytes; returns its length in bytes or the reason. */
function ahHeaderLength(buf: Uint8Array, offset: number, length: number): number | WireError {
  if (!(offset >= 0 && length >= AH_FIXED_LENGTH && offset + length <= buf.length)) return 'truncated';
  const payloadLen = buf[offset + PAYLOAD_LEN]!;
  // Payload Len 0 would make the header 8 bytes, too short for its own sequence number.
  if (payloadLen < 1) return 'bad-length';
  const headerLength = (payloadLen + 2) * 4;
  return headerLength > length ? 'truncated' : headerLength;
}

/** The checks every AH entry point shares: the fixed part, a Payload Len of at least 1, the whole header present. */
export function checkAh(buf: Uint8Array, offset: number, length: number): WireError | null {
  const r = ahHeaderLength(buf, offset, length);
  return typeof r === 'number' ? null : r;
}

/**
 * A view over an AH header in place. Re-point one instance per packet with
 * `wrap`, call `check` once; after a null from `check` every accessor reads
 * inside the header.
 */
export class AhView extends HeaderView {
  // `length`: Bytes from the AH header to the end of the IP payload.
  constructor(buf: Uint8Array = new Uint8Array(AH_FIXED_LENGTH), offset = 0, length = buf.length - offset) {
    super(buf, offset, length);
  }

  check(): WireError | null {
    return checkAh(this.buf, this.offset, this.length);
  }

  get nextHeader(): number {
    return this.buf[this.offset + NEXT_HEADER]!;
  }
  /** The raw Payload Len field: header length in 32-bit words minus 2. */
  get payloadLen(): number {
    return this.buf[this.offset + PAYLOAD_LEN]!;
  }
  get headerLength(): number {
    return (this.payloadLen + 2) * 4;
  }
  get reserved(): number {
    return u16(this.buf, this.offset + RESERVED);
  }
  get spi(): number {
    return u32(this.buf, this.offset + SPI);
  }
  get sequence(): number {
    return u32(this.buf, this.offset + SEQUENCE);
  }
  get icvOffset(): number {
    return this.offset + ICV;
  }
  /** Includes any padding the sender added for alignment (RFC 4302 3.3.3.2.1). */
  get icvLength(): number {
    return this.headerLength - AH_FIXED_LENGTH;
  }
  /** The ICV region as a subarray (no copy). */
  get icv(): Uint8Array {
    return this.buf.subarray(this.icvOffset, this.icvOffset + this.icvLength);
  }
  /** Start of the protected payload (the next header's bytes). */
  get dataOffset(): number {
    return this.offset + this.headerLength;
  }
  get dataLength(): number {
    return this.length - this.headerLength;
  }
}

/** The plain representation of an AH header. */
export interface AhHeader {
  readonly nextHeader: number;
  readonly reserved: number;
  readonly spi: number;
  readonly sequence: number;
  /** ICV plus alignment padding; its length is a multiple of 4. */
  readonly icv: Uint8Array;
}

/** Parses the AH header at buf[offset]; `length` bounds the IP payload. `icv` is a subarray of `buf`. */
export function parseAh(buf: Uint8Array, offset = 0, length = buf.length - offset): Parsed<AhHeader> {
  const r = ahHeaderLength(buf, offset, length);
  if (typeof r !== 'number') return fail(r);
  return ok({
    nextHeader: buf[offset + NEXT_HEADER]!,
    reserved: u16(buf, offset + RESERVED),
    spi: u32(buf, offset + SPI),
    sequence: u32(buf, offset + SEQUENCE),
    icv: buf.subarray(offset + ICV, offset + r),
  });
}

export function ahLength(h: AhHeader): number {
  return AH_FIXED_LENGTH + h.icv.length;
}

/**
 * Writes the AH header at buf[offset] and returns its length. Throws
 * RangeError for an ICV that is not a multiple of 4 bytes or too long, or a
 * buffer too small: caller bugs, not input.
 */
export function emitAh(h: AhHeader, buf: Uint8Array, offset = 0): number {
  const icvLength = h.icv.length;
  if (icvLength % 4 !== 0 || icvLength > AH_MAX_ICV_LENGTH)
    throw new RangeError('AH ICV length not encodable');
  const length = AH_FIXED_LENGTH + icvLength;
  if (!(offset >= 0 && offset + length <= buf.length))
    throw new RangeError('AH header does not fit the buffer');
  buf[offset + NEXT_HEADER] = h.nextHeader;
  buf[offset + PAYLOAD_LEN] = length / 4 - 2;
  put16(buf, offset + RESERVED, h.reserved);
  put32(buf, offset + SPI, h.spi);
  put32(buf, offset + SEQUENCE, h.sequence);
  buf.set(h.icv, offset + ICV);
  return length;
}

/**
 * IPv4 option types whose bytes do not change in transit and so stay in the
 * ICV (RFC 4302 Appendix A.1): EOOL, NOP, Security, Extended Security,
 * Commercial Security, Router Alert, SDMDD. Every other option, including
 * ones unknown to us, is mutable and zeroed whole (type, length and data).
 */
function isImmutableIpv4Option(type: number): boolean {
  return (
    type === EOL ||
    type === NOP ||
    type === Opt.Security ||
    type === Opt.ExtendedSecurity ||
    type === Opt.CommercialSecurity ||
    type === Opt.RouterAlert ||
    type === Opt.Sdmdd
  );
}

/** Zeroes the mutable options in scratch[start, end); they were validated to lie in it. */
function zeroMutableOptions(scratch: Uint8Array, start: number, end: number): WireError | undefined {
  let i = start;
  while (i < end) {
    const type = scratch[i]!;
    if (type === EOL) return undefined; // the rest is padding
    if (type === NOP) {
      i += 1;
      continue;
    }
    if (i + 1 >= end) return 'bad-option';
    const len = scratch[i + 1]!;
    if (len < 2 || i + len > end) return 'bad-option';
    if (!isImmutableIpv4Option(type)) scratch.fill(0, i, i + len);
    i += len;
  }
  return undefined;
}

/**
 * Copies the IPv4 datagram at packet[ipOffset, ipOffset + ipLength), which
 * carries AH right after its header, into scratch[scratchOffset] with the
 * fields the ICV does not cover set to zero (RFC 4302 3.3.3.1.1): TOS, flags
 * and fragment offset, TTL, header checksum, mutable options, and the ICV
 * itself. Returns the number of bytes written (the IPv4 total length): the
 * exact input to the integrity algorithm, before any ESN high-order bits
 * (which RFC 4302 3.3.3.2.2 appends after the packet).
 *
 * The destination address is taken as found: this is right for a received
 * packet. A sender using loose/strict source routing would have to put the
 * final destination there first; distnat never sends source-routed packets.
 *
 * A protocol other than AH is 'bad-protocol'. Fragments are refused
 * ('fragmented'): AH covers whole datagrams only, so they must be
 * reassembled first. `scratch` must hold the datagram (65535
 * bytes always suffice); a shorter one throws RangeError.
 */
export function ahIcvInput(
  packet: Uint8Array,
  ipOffset: number,
  ipLength: number,
  scratch: Uint8Array,
  scratchOffset = 0,
): Parsed<number> {
  if (!(ipOffset >= 0 && ipLength >= IP_MIN_HEADER && ipOffset + ipLength <= packet.length))
    return fail('truncated');
  const vihl = packet[ipOffset + IP_VERSION_IHL]!;
  if (vihl >>> 4 !== 4) return fail('bad-version');
  const ihl = (vihl & 0x0f) * 4;
  if (ihl < IP_MIN_HEADER || ihl > ipLength) return fail('bad-ihl');
  const totalLength = u16(packet, ipOffset + IP_TOTAL_LENGTH);
  if (totalLength < ihl || totalLength > ipLength) return fail('bad-total-length');
  if (packet[ipOffset + IP_PROTOCOL] !== AH) return fail('bad-protocol');
  if ((u16(packet, ipOffset + IP_FLAGS_FRAGMENT) & IP_FRAGMENT) !== 0) return fail('fragmented');
  const ah = ahHeaderLength(packet, ipOffset + ihl, totalLength - ihl);
  if (typeof ah !== 'number') return fail(ah);
  if (!(scratchOffset >= 0 && scratchOffset + totalLength <= scratch.length)) {
    throw new RangeError('scratch buffer smaller than the datagram');
  }
  scratch.set(packet.subarray(ipOffset, ipOffset + totalLength), scratchOffset);
  const s = scratchOffset;
  scratch[s + IP_TOS] = 0;
  put16(scratch, s + IP_FLAGS_FRAGMENT, 0);
  scratch[s + IP_TTL] = 0;
  put16(scratch, s + IP_CHECKSUM, 0);
  const optErr = zeroMutableOptions(scratch, s + IP_OPTIONS, s + ihl);
  if (optErr !== undefined) return fail(optErr);
  scratch.fill(0, s + ihl + ICV, s + ihl + ah);
  return ok(totalLength);
}
