/**
 * The datagram an ICMP error quotes (RFC 792: the original IPv4 header and at
 * least 64 bits of its data), read on its own terms: the router demultiplexes
 * errors by it and must trust nothing beyond what the quote actually holds.
 */
import { AhField } from './ah.ts';
import { u16, u32 } from './bytes.ts';
import { EspField } from './esp.ts';
import { IcmpField, type IcmpView } from './icmp.ts';
import { IPV4_MIN_HEADER_LENGTH, Ipv4Field, Ipv4FragmentWord } from './ipv4.ts';
import { PortField } from './ports.ts';
import type { WireError } from './result.ts';
import { HeaderView } from './view.ts';

// The headers' offsets as module constants (see bytes.ts).
const IP_VERSION_IHL = Ipv4Field.VERSION_IHL;
const IP_TOTAL_LENGTH = Ipv4Field.TOTAL_LENGTH;
const IP_IDENTIFICATION = Ipv4Field.IDENTIFICATION;
const IP_FLAGS_FRAGMENT = Ipv4Field.FLAGS_FRAGMENT;
const IP_TTL = Ipv4Field.TTL;
const IP_PROTOCOL = Ipv4Field.PROTOCOL;
const IP_SRC = Ipv4Field.SRC;
const IP_DST = Ipv4Field.DST;
const SRC_PORT = PortField.SRC_PORT;
const DST_PORT = PortField.DST_PORT;
const ICMP_TYPE = IcmpField.TYPE;
const ICMP_CODE = IcmpField.CODE;
const ICMP_IDENTIFIER = IcmpField.IDENTIFIER;
const ICMP_SEQUENCE = IcmpField.SEQUENCE;
const ESP_SPI = EspField.SPI;
const ESP_SEQUENCE = EspField.SEQUENCE;
const AH_SPI = AhField.SPI;
const DF_OCTET = Ipv4FragmentWord.DF >> 8;
const MF_OCTET = Ipv4FragmentWord.MF >> 8;
const FRAGMENT_OFFSET = Ipv4FragmentWord.OFFSET;

export const QUOTED_IPV4_MIN_HEADER = IPV4_MIN_HEADER_LENGTH;
/** RFC 792: an error quotes the original header plus at least 64 bits of its data. */
export const QUOTED_TRANSPORT_BYTES = 8;

/**
 * Checks a quoted datagram: version 4, IHL at least 5 words and inside the
 * quote, and the header plus the 8 transport bytes RFC 792 promises.
 */
export function checkQuotedIpv4(buf: Uint8Array, offset: number, length: number): WireError | null {
  if (!(offset >= 0 && length >= QUOTED_IPV4_MIN_HEADER && offset + length <= buf.length)) return 'truncated';
  const vihl = buf[offset + IP_VERSION_IHL]!;
  if (vihl >>> 4 !== 4) return 'bad-version';
  const ihl = (vihl & 0x0f) * 4;
  if (ihl < QUOTED_IPV4_MIN_HEADER || ihl > length) return 'bad-ihl';
  // The quoted total length may exceed the quote (that is normal); it only
  // must not be smaller than the header it describes.
  if (u16(buf, offset + IP_TOTAL_LENGTH) < ihl) return 'bad-total-length';
  if (length < ihl + QUOTED_TRANSPORT_BYTES) return 'truncated';
  return null;
}

/**
 * The IPv4 header (and first 8 transport bytes) quoted inside an ICMP error,
 * checked on its own terms rather than checkIpv4's (a quote is cut short and
 * its checksum is not ours to verify): the router demultiplexes errors by
 * these fields and must not trust anything beyond what the quote holds.
 *
 *     quoted IPv4 header:  [0] version/IHL  [2] total length  [4] identification
 *                          [6] flags/fragment offset  [9] protocol
 *                          [12] source address  [16] destination address
 *     first 8 transport bytes (at IHL*4):
 *       TCP/UDP  [0] source port u16      [2] destination port u16
 *       ICMP     [0] type [1] code        [4] identifier u16 [6] sequence u16
 *       ESP      [0] SPI u32              [4] sequence u32
 *       AH       [0] next header [1] len  [4] SPI u32
 */
export class QuotedIpv4View extends HeaderView {
  constructor(
    buf: Uint8Array = new Uint8Array(QUOTED_IPV4_MIN_HEADER + QUOTED_TRANSPORT_BYTES),
    offset = 0,
    length = buf.length - offset,
  ) {
    super(buf, offset, length);
  }

  /** Points the view at the datagram quoted by a checked ICMP error. */
  wrapQuoted(icmp: IcmpView): this {
    return this.wrap(icmp.buf, icmp.quotedOffset, icmp.quotedLength);
  }

  check(): WireError | null {
    return checkQuotedIpv4(this.buf, this.offset, this.length);
  }

  get headerLength(): number {
    return (this.buf[this.offset + IP_VERSION_IHL]! & 0x0f) * 4;
  }
  get totalLength(): number {
    return u16(this.buf, this.offset + IP_TOTAL_LENGTH);
  }
  get identification(): number {
    return u16(this.buf, this.offset + IP_IDENTIFICATION);
  }
  get dontFragment(): boolean {
    return (this.buf[this.offset + IP_FLAGS_FRAGMENT]! & DF_OCTET) !== 0;
  }
  get moreFragments(): boolean {
    return (this.buf[this.offset + IP_FLAGS_FRAGMENT]! & MF_OCTET) !== 0;
  }
  /** In 8-byte units, as on the wire. */
  get fragmentOffset(): number {
    return u16(this.buf, this.offset + IP_FLAGS_FRAGMENT) & FRAGMENT_OFFSET;
  }
  /** Only the first fragment's quote starts with a transport header. */
  get isFirstFragment(): boolean {
    return this.fragmentOffset === 0;
  }
  get ttl(): number {
    return this.buf[this.offset + IP_TTL]!;
  }
  get protocol(): number {
    return this.buf[this.offset + IP_PROTOCOL]!;
  }
  get src(): number {
    return u32(this.buf, this.offset + IP_SRC);
  }
  get dst(): number {
    return u32(this.buf, this.offset + IP_DST);
  }
  get transportOffset(): number {
    return this.offset + this.headerLength;
  }
  /** Quoted transport bytes available, at least 8. */
  get transportLength(): number {
    return this.length - this.headerLength;
  }
  get sourcePort(): number {
    return u16(this.buf, this.transportOffset + SRC_PORT);
  }
  get destinationPort(): number {
    return u16(this.buf, this.transportOffset + DST_PORT);
  }
  get icmpType(): number {
    return this.buf[this.transportOffset + ICMP_TYPE]!;
  }
  get icmpCode(): number {
    return this.buf[this.transportOffset + ICMP_CODE]!;
  }
  get icmpIdentifier(): number {
    return u16(this.buf, this.transportOffset + ICMP_IDENTIFIER);
  }
  get icmpSequence(): number {
    return u16(this.buf, this.transportOffset + ICMP_SEQUENCE);
  }
  get espSpi(): number {
    return u32(this.buf, this.transportOffset + ESP_SPI);
  }
  get espSequence(): number {
    return u32(this.buf, this.transportOffset + ESP_SEQUENCE);
  }
  get ahSpi(): number {
    return u32(this.buf, this.transportOffset + AH_SPI);
  }
}
