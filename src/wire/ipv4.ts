/**
 * IPv4 header (RFC 791 3.1; TOS octet as DSCP + ECN per RFC 2474 / RFC 3168).
 *
 *     0                   1                   2                   3
 *     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *    |Version|  IHL  |Type of Service|          Total Length         |
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *    |         Identification        |Flags|      Fragment Offset    |
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *    |  Time to Live |    Protocol   |         Header Checksum       |
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *    |                       Source Address                          |
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *    |                    Destination Address                        |
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *    |                    Options                    |    Padding    |
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * | offset | size   | field                                                  |
 * |--------|--------|--------------------------------------------------------|
 * | 0      | 4 bits | version, always 4                                      |
 * | 0      | 4 bits | IHL: header length in 32-bit words, 5..15              |
 * | 1      | 1      | type of service (DSCP: high 6 bits, ECN: low 2 bits)   |
 * | 2      | 2      | total length of the datagram in octets, header included|
 * | 4      | 2      | identification                                         |
 * | 6      | 3 bits | flags: reserved (0x4), DF (0x2), MF (0x1)              |
 * | 6      | 13 bits| fragment offset, in units of 8 octets                  |
 * | 8      | 1      | time to live                                           |
 * | 9      | 1      | protocol (IANA number)                                 |
 * | 10     | 2      | header checksum, RFC 1071 over the header only         |
 * | 12     | 4      | source address                                         |
 * | 16     | 4      | destination address                                    |
 * | 20     | 0..40  | options (see option-list.ts), zero padding             |
 *
 * Addresses are unsigned 32-bit numbers (198.51.100.30 is 0xc633641e).
 */
import { fold, internetChecksum, sumBytes, updateChecksum16, updateChecksum32 } from './checksum.ts';
import { put16, put32, u16, u32 } from './bytes.ts';
import {
  checkOptionList,
  decodeOptionList,
  encodeOptionList,
  optionListLength,
  padTo4,
  type RawOption,
} from './option-list.ts';
import { fail, ok, type Parsed, type WireError } from './result.ts';
import { HeaderView } from './view.ts';

export const IPV4_MIN_HEADER_LENGTH = 20;
export const IPV4_MAX_HEADER_LENGTH = 60;
export const IPV4_MAX_TOTAL_LENGTH = 0xffff;
/** The TTL distnat gives the headers it writes: IANA's default (RFC 1700), Linux's too. */
export const IPV4_DEFAULT_TTL = 64;

// Where each field starts, in octets from the start of the header (the table
// above): module constants, as bytes.ts explains; Ipv4Field gathers them for other
// modules.
/** Version (high 4 bits) and IHL (low 4 bits). */
const VERSION_IHL = 0;
const TOS = 1;
const TOTAL_LENGTH = 2;
const IDENTIFICATION = 4;
/** Flags (high 3 bits) and fragment offset (low 13 bits), one 16-bit word. */
const FLAGS_FRAGMENT = 6;
const TTL = 8;
const PROTOCOL = 9;
const CHECKSUM = 10;
const SRC = 12;
const DST = 16;
const OPTIONS = 20;
export const Ipv4Field = {
  VERSION_IHL,
  TOS,
  TOTAL_LENGTH,
  IDENTIFICATION,
  FLAGS_FRAGMENT,
  TTL,
  PROTOCOL,
  CHECKSUM,
  SRC,
  DST,
  OPTIONS,
} as const;

// The flags-and-fragment-offset word (FLAGS_FRAGMENT) in its parts;
// Ipv4FragmentWord gathers them for other modules.
const DF = 0x4000;
const MF = 0x2000;
/** The fragment offset, in units of 8 octets. */
const FRAGMENT_OFFSET = 0x1fff;
/** MF or a non-zero offset: the datagram is a fragment. */
const FRAGMENT = 0x3fff;
export const Ipv4FragmentWord = { DF, MF, OFFSET: FRAGMENT_OFFSET, FRAGMENT } as const;
/** DF and MF as they sit in the word's first octet, for a one-octet read. */
const DF_OCTET = DF >> 8;
const MF_OCTET = MF >> 8;

/** The 3-bit flags field as a number, as it sits above the fragment offset. */
export const Ipv4Flag = { Reserved: 0x4, DF: 0x2, MF: 0x1 } as const;

/** Option types (IANA "IP Option Numbers"); copied flag, class and number folded into the one octet. */
export const Ipv4OptionType = {
  EndOfOptionList: 0,
  NoOperation: 1,
  RecordRoute: 7,
  Security: 130,
  LooseSourceRoute: 131,
  ExtendedSecurity: 133,
  CommercialSecurity: 134,
  StreamId: 136,
  StrictSourceRoute: 137,
  Timestamp: 68,
  RouterAlert: 148,
  /** Sender Directed Multi-Destination Delivery (RFC 1770). */
  Sdmdd: 149,
} as const;

/** The copied flag of an option type: the option goes into every fragment (RFC 791 3.1). */
export const IPV4_OPTION_COPIED = 0x80;

/** An IPv4 option; for End of Option List and No-Operation `data` is empty. */
export type Ipv4Option = RawOption;

/**
 * The header as plain values. The header length and checksum are not fields:
 * emit derives them (length from the options, padded), so a value of this
 * type cannot be inconsistent with itself.
 */
export interface Ipv4Header {
  readonly tos: number;
  readonly identification: number;
  /** Ipv4Flag bits. */
  readonly flags: number;
  /** In units of 8 octets, as on the wire. */
  readonly fragmentOffset: number;
  readonly ttl: number;
  readonly protocol: number;
  readonly src: number;
  readonly dst: number;
  readonly options: readonly Ipv4Option[];
  /** Octets after the header: total length minus header length. */
  readonly payloadLength: number;
}

/**
 * The checks every IPv4 entry point shares. `length` is the number of octets
 * present from `offset`; link-layer padding past the total length is allowed.
 */
export function checkIpv4(
  buf: Uint8Array,
  offset: number,
  length: number,
  verifyChecksum = true,
): WireError | null {
  if (!(offset >= 0 && length >= IPV4_MIN_HEADER_LENGTH && offset + length <= buf.length)) return 'truncated';
  const vihl = buf[offset + VERSION_IHL]!;
  if (vihl >> 4 !== 4) return 'bad-version';
  const hl = (vihl & 0xf) << 2;
  if (hl < IPV4_MIN_HEADER_LENGTH || hl > length) return 'bad-ihl';
  const total = u16(buf, offset + TOTAL_LENGTH);
  if (total < hl || total > length) return 'bad-total-length';
  // Corruption is likelier than a malformed option list, so name it first.
  if (verifyChecksum && fold(sumBytes(buf, offset, offset + hl)) !== 0xffff) return 'bad-checksum';
  if (hl > IPV4_MIN_HEADER_LENGTH) return checkOptionList(buf, offset + OPTIONS, offset + hl);
  return null;
}

// Single fields of a checked header (checkIpv4) at buf[off], for code that
// reads a field or two and keeps no view. V8 inlines them, but each draws on
// the caller's inlining budget: the forwarders' loops read through
// Ipv4Field instead (see bytes.ts).

/** Header length in octets, from the IHL field (`ipv4HeaderLength` is what emit will write). */
export function ipv4HeaderLengthAt(buf: Uint8Array, off: number): number {
  return (buf[off + VERSION_IHL]! & 0xf) << 2;
}
export function ipv4TotalLength(buf: Uint8Array, off: number): number {
  return u16(buf, off + TOTAL_LENGTH);
}
export function ipv4MoreFragments(buf: Uint8Array, off: number): boolean {
  return (buf[off + FLAGS_FRAGMENT]! & MF_OCTET) !== 0;
}
/** In units of 8 octets. */
export function ipv4FragmentOffset(buf: Uint8Array, off: number): number {
  return u16(buf, off + FLAGS_FRAGMENT) & FRAGMENT_OFFSET;
}
export function ipv4Protocol(buf: Uint8Array, off: number): number {
  return buf[off + PROTOCOL]!;
}
export function ipv4Src(buf: Uint8Array, off: number): number {
  return u32(buf, off + SRC);
}
export function ipv4Dst(buf: Uint8Array, off: number): number {
  return u32(buf, off + DST);
}

/**
 * A view over an IPv4 header in place. Re-point one instance per packet with
 * `wrap`, call `check` once; after a null from `check`, every accessor reads
 * inside the header and the total length. Setters keep the header checksum
 * valid by RFC 1624 incremental update, so they cost a few operations.
 * Changing an address also changes the TCP/UDP pseudo-header: fixing the
 * transport checksum is the caller's job.
 */
export class Ipv4View extends HeaderView {
  constructor(
    buf: Uint8Array = new Uint8Array(IPV4_MIN_HEADER_LENGTH),
    offset = 0,
    length = buf.length - offset,
  ) {
    super(buf, offset, length);
  }

  check(verifyChecksum = true): WireError | null {
    return checkIpv4(this.buf, this.offset, this.length, verifyChecksum);
  }

  get version(): number {
    return this.buf[this.offset + VERSION_IHL]! >> 4;
  }
  /** Header length in octets. */
  get headerLength(): number {
    return (this.buf[this.offset + VERSION_IHL]! & 0xf) << 2;
  }
  get tos(): number {
    return this.buf[this.offset + TOS]!;
  }
  get dscp(): number {
    return this.buf[this.offset + TOS]! >> 2;
  }
  get ecn(): number {
    return this.buf[this.offset + TOS]! & 3;
  }
  get totalLength(): number {
    return u16(this.buf, this.offset + TOTAL_LENGTH);
  }
  get identification(): number {
    return u16(this.buf, this.offset + IDENTIFICATION);
  }
  get flags(): number {
    return this.buf[this.offset + FLAGS_FRAGMENT]! >> 5;
  }
  get dontFragment(): boolean {
    return (this.buf[this.offset + FLAGS_FRAGMENT]! & DF_OCTET) !== 0;
  }
  get moreFragments(): boolean {
    return (this.buf[this.offset + FLAGS_FRAGMENT]! & MF_OCTET) !== 0;
  }
  /** In units of 8 octets. */
  get fragmentOffset(): number {
    return u16(this.buf, this.offset + FLAGS_FRAGMENT) & FRAGMENT_OFFSET;
  }
  /** True for every fragment but an unfragmented datagram: MF set or a non-zero offset. */
  get isFragment(): boolean {
    return (u16(this.buf, this.offset + FLAGS_FRAGMENT) & FRAGMENT) !== 0;
  }
  get ttl(): number {
    return this.buf[this.offset + TTL]!;
  }
  get protocol(): number {
    return this.buf[this.offset + PROTOCOL]!;
  }
  get checksum(): number {
    return u16(this.buf, this.offset + CHECKSUM);
  }
  get src(): number {
    return u32(this.buf, this.offset + SRC);
  }
  get dst(): number {
    return u32(this.buf, this.offset + DST);
  }
  /** Absolute offset in `buf` of the first octet after the header. */
  get payloadOffset(): number {
    return this.offset + this.headerLength;
  }
  get payloadLength(): number {
    return this.totalLength - this.headerLength;
  }

  setTtl(ttl: number): void {
    // TTL and protocol share a 16-bit checksum word.
    const at = this.offset + TTL;
    const old = u16(this.buf, at);
    this.buf[at] = ttl;
    this.setChecksum(updateChecksum16(this.checksum, old, u16(this.buf, at)));
  }
  setSrc(addr: number): void {
    this.setChecksum(updateChecksum32(this.checksum, this.src, addr));
    put32(this.buf, this.offset + SRC, addr);
  }
  setDst(addr: number): void {
    this.setChecksum(updateChecksum32(this.checksum, this.dst, addr));
    put32(this.buf, this.offset + DST, addr);
  }
  setChecksum(checksum: number): void {
    put16(this.buf, this.offset + CHECKSUM, checksum);
  }
  /** Recomputes the header checksum from scratch. */
  fillChecksum(): void {
    put16(this.buf, this.offset + CHECKSUM, 0);
    put16(this.buf, this.offset + CHECKSUM, internetChecksum(this.buf, this.offset, this.payloadOffset));
  }
}

/** Parses and copies the header into plain values; options are copied, nothing else is referenced. */
export function parseIpv4(
  buf: Uint8Array,
  offset: number,
  length: number,
  verifyChecksum = true,
): Parsed<Ipv4Header> {
  const err = checkIpv4(buf, offset, length, verifyChecksum);
  if (err !== null) return fail(err);
  const hl = (buf[offset + VERSION_IHL]! & 0xf) << 2;
  const options = decodeOptionList(buf, offset + OPTIONS, offset + hl);
  if (options === null) return fail('bad-option');
  const flagsFrag = u16(buf, offset + FLAGS_FRAGMENT);
  return ok({
    tos: buf[offset + TOS]!,
    identification: u16(buf, offset + IDENTIFICATION),
    flags: flagsFrag >> 13,
    fragmentOffset: flagsFrag & FRAGMENT_OFFSET,
    ttl: buf[offset + TTL]!,
    protocol: buf[offset + PROTOCOL]!,
    src: u32(buf, offset + SRC),
    dst: u32(buf, offset + DST),
    options,
    payloadLength: u16(buf, offset + TOTAL_LENGTH) - hl,
  });
}

/** Header length in octets that `emitIpv4` will write for `h`. */
export function ipv4HeaderLength(h: Ipv4Header): number {
  return IPV4_MIN_HEADER_LENGTH + padTo4(optionListLength(h.options));
}

/**
 * Writes the header (checksum computed) at buf[offset]; returns its length.
 * Does not touch the payload. A header that cannot be expressed (options past
 * 40 octets, total length past 65535) or a buffer too short is a caller's
 * bug, not bad input, and throws RangeError.
 */
export function emitIpv4(h: Ipv4Header, buf: Uint8Array, offset: number): number {
  const hl = ipv4HeaderLength(h);
  if (hl > IPV4_MAX_HEADER_LENGTH) throw new RangeError(`IPv4 options of ${hl - 20} octets exceed 40`);
  if (hl + h.payloadLength > IPV4_MAX_TOTAL_LENGTH) throw new RangeError('IPv4 total length exceeds 65535');
  if (offset < 0 || offset + hl > buf.length) throw new RangeError('buffer too short for the IPv4 header');
  buf[offset + VERSION_IHL] = 0x40 | (hl >> 2);
  buf[offset + TOS] = h.tos;
  put16(buf, offset + TOTAL_LENGTH, hl + h.payloadLength);
  put16(buf, offset + IDENTIFICATION, h.identification);
  put16(buf, offset + FLAGS_FRAGMENT, ((h.flags & 7) << 13) | (h.fragmentOffset & FRAGMENT_OFFSET));
  buf[offset + TTL] = h.ttl;
  buf[offset + PROTOCOL] = h.protocol;
  put16(buf, offset + CHECKSUM, 0);
  put32(buf, offset + SRC, h.src);
  put32(buf, offset + DST, h.dst);
  encodeOptionList(h.options, buf, offset + OPTIONS);
  put16(buf, offset + CHECKSUM, internetChecksum(buf, offset, offset + hl));
  return hl;
}

/** Dotted-quad text of an address. */
export function ipv4ToString(addr: number): string {
  return `${addr >>> 24}.${(addr >>> 16) & 0xff}.${(addr >>> 8) & 0xff}.${addr & 0xff}`;
}

const DOTTED = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/;

/**
 * The address of a dotted quad, or undefined. Only the strict four-decimal
 * form: inet_aton's octal ("010") and short forms ("10.1") are refused
 * because they read differently in different tools.
 */
export function ipv4FromString(text: string): number | undefined {
  const m = DOTTED.exec(text);
  if (m === null) return undefined;
  let addr = 0;
  for (let i = 1; i <= 4; i++) {
    const octet = Number(m[i]);
    if (octet > 255) return undefined;
    addr = addr * 256 + octet;
  }
  return addr;
}
