/**
 * TCP header (RFC 9293 3.1; CWR and ECE from RFC 3168).
 *
 *     0                   1                   2                   3
 *     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *    |          Source Port          |       Destination Port        |
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *    |                        Sequence Number                        |
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *    |                    Acknowledgment Number                      |
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *    |  Data |       |C|E|U|A|P|R|S|F|                               |
 *    | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
 *    |       |       |R|E|G|K|H|T|N|N|                               |
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *    |           Checksum            |         Urgent Pointer        |
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *    |                           [Options]                           |
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *    |                             Data                              :
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * | offset | size   | field                                                  |
 * |--------|--------|--------------------------------------------------------|
 * | 0      | 2      | source port                                            |
 * | 2      | 2      | destination port                                       |
 * | 4      | 4      | sequence number                                        |
 * | 8      | 4      | acknowledgment number                                  |
 * | 12     | 4 bits | data offset: header length in 32-bit words, 5..15      |
 * | 12     | 4 bits | reserved (RFC 3540's NS bit is the lowest of them)     |
 * | 13     | 1      | flags CWR ECE URG ACK PSH RST SYN FIN                  |
 * | 14     | 2      | window                                                 |
 * | 16     | 2      | checksum: pseudo-header (checksum.ts), header, data    |
 * | 18     | 2      | urgent pointer                                         |
 * | 20     | 0..40  | options (tcp-options.ts), zero padding                 |
 */
import { fold, internetChecksum, pseudoHeaderSum, sumBytes, updateChecksum16 } from './checksum.ts';
import { copyUnlessInPlace, put16, put32, u16, u32 } from './bytes.ts';
import { checkOptionList, OPTION_EOL, OPTION_NOP, padTo4 } from './option-list.ts';
import { PortField } from './ports.ts';
import { IpProtocol, fail, ok, type Parsed, type WireError } from './result.ts';
import {
  decodeTcpOptions,
  encodeTcpOptions,
  TcpOptionKind,
  tcpOptionsLength,
  type TcpOption,
} from './tcp-options.ts';
import { HeaderView } from './view.ts';

export const TCP_MIN_HEADER_LENGTH = 20;
export const TCP_MAX_HEADER_LENGTH = 60;

// Where each field starts, in octets from the start of the header (the table
// above): module constants, as bytes.ts explains; TcpField gathers them for other
// modules.
const SRC_PORT = PortField.SRC_PORT;
const DST_PORT = PortField.DST_PORT;
const SEQ = 4;
const ACK = 8;
/** Data offset (high 4 bits) and reserved bits. */
const DATA_OFFSET = 12;
const FLAGS = 13;
const WINDOW = 14;
const CHECKSUM = 16;
const URGENT_POINTER = 18;
const OPTIONS = 20;
export const TcpField = {
  SRC_PORT,
  DST_PORT,
  SEQ,
  ACK,
  DATA_OFFSET,
  FLAGS,
  WINDOW,
  CHECKSUM,
  URGENT_POINTER,
  OPTIONS,
} as const;
/** The option kind `findTcpMss` looks for, as a module constant (see bytes.ts). */
const MSS_KIND = TcpOptionKind.MaximumSegmentSize;

export const TcpFlag = {
  FIN: 0x01,
  SYN: 0x02,
  RST: 0x04,
  PSH: 0x08,
  ACK: 0x10,
  URG: 0x20,
  ECE: 0x40,
  CWR: 0x80,
} as const;

/**
 * The segment as plain values. Data offset and checksum are derived by emit.
 * `payload` is a view into the parsed buffer, not a copy: copy it before the
 * buffer is reused.
 */
export interface TcpHeader {
  readonly srcPort: number;
  readonly dstPort: number;
  readonly seq: number;
  readonly ack: number;
  /** The four bits between data offset and CWR; zero unless someone uses NS (RFC 3540). */
  readonly reserved: number;
  /** TcpFlag bits. */
  readonly flags: number;
  readonly window: number;
  readonly urgentPointer: number;
  readonly options: readonly TcpOption[];
  readonly payload: Uint8Array;
}

/**
 * The checks every TCP entry point shares; `length` is the segment's length
 * (the IPv4 payload length). The checksum is verified only when both
 * addresses of the pseudo-header are given.
 */
export function checkTcp(
  buf: Uint8Array,
  offset: number,
  length: number,
  src?: number,
  dst?: number,
): WireError | null {
  if (!(offset >= 0 && length >= TCP_MIN_HEADER_LENGTH && offset + length <= buf.length)) return 'truncated';
  const hl = (buf[offset + DATA_OFFSET]! >> 4) << 2;
  if (hl < TCP_MIN_HEADER_LENGTH || hl > length) return 'bad-data-offset';
  if (src !== undefined && dst !== undefined) {
    const pseudo = pseudoHeaderSum(src, dst, IpProtocol.TCP, length);
    if (fold(sumBytes(buf, offset, offset + length, pseudo)) !== 0xffff) return 'bad-checksum';
  }
  if (hl > TCP_MIN_HEADER_LENGTH) return checkOptionList(buf, offset + OPTIONS, offset + hl);
  return null;
}

/** TCP checksum of buf[offset, offset + length), computed with the checksum field zeroed. */
function fillSegmentChecksum(
  buf: Uint8Array,
  offset: number,
  length: number,
  src: number,
  dst: number,
): void {
  put16(buf, offset + CHECKSUM, 0);
  const pseudo = pseudoHeaderSum(src, dst, IpProtocol.TCP, length);
  put16(buf, offset + CHECKSUM, internetChecksum(buf, offset, offset + length, pseudo));
}

/**
 * A view over a TCP segment in place; re-point with `wrap`, `check` once,
 * then read. Port setters keep the checksum valid by RFC 1624, which is how
 * a host translates a source port without touching the data.
 */
export class TcpView extends HeaderView {
  constructor(
    buf: Uint8Array = new Uint8Array(TCP_MIN_HEADER_LENGTH),
    offset = 0,
    length = buf.length - offset,
  ) {
    super(buf, offset, length);
  }

  /** Structure, and the checksum when the pseudo-header's addresses are given. */
  check(src?: number, dst?: number): WireError | null {
    return checkTcp(this.buf, this.offset, this.length, src, dst);
  }

  get srcPort(): number {
    return u16(this.buf, this.offset + SRC_PORT);
  }
  get dstPort(): number {
    return u16(this.buf, this.offset + DST_PORT);
  }
  get seq(): number {
    return u32(this.buf, this.offset + SEQ);
  }
  get ack(): number {
    return u32(this.buf, this.offset + ACK);
  }
  /** Header length in octets. */
  get headerLength(): number {
    return (this.buf[this.offset + DATA_OFFSET]! >> 4) << 2;
  }
  get reserved(): number {
    return this.buf[this.offset + DATA_OFFSET]! & 0xf;
  }
  get flags(): number {
    return this.buf[this.offset + FLAGS]!;
  }
  get window(): number {
    return u16(this.buf, this.offset + WINDOW);
  }
  get checksum(): number {
    return u16(this.buf, this.offset + CHECKSUM);
  }
  get urgentPointer(): number {
    return u16(this.buf, this.offset + URGENT_POINTER);
  }
  get payloadOffset(): number {
    return this.offset + this.headerLength;
  }
  get payloadLength(): number {
    return this.length - this.headerLength;
  }
  /** The announced MSS, or -1 without an MSS option. */
  get mss(): number {
    return readTcpMss(this.buf, this.offset);
  }

  hasFlags(mask: number): boolean {
    return (this.buf[this.offset + FLAGS]! & mask) === mask;
  }
  setSrcPort(port: number): void {
    this.setChecksum(updateChecksum16(this.checksum, this.srcPort, port));
    put16(this.buf, this.offset + SRC_PORT, port);
  }
  setDstPort(port: number): void {
    this.setChecksum(updateChecksum16(this.checksum, this.dstPort, port));
    put16(this.buf, this.offset + DST_PORT, port);
  }
  setChecksum(checksum: number): void {
    put16(this.buf, this.offset + CHECKSUM, checksum);
  }
  /** Recomputes the checksum over pseudo-header, header and data. */
  fillChecksum(src: number, dst: number): void {
    fillSegmentChecksum(this.buf, this.offset, this.length, src, dst);
  }
  /** Lowers an announced MSS above `max`; true when the segment changed. */
  clampMss(max: number): boolean {
    return clampTcpMss(this.buf, this.offset, max);
  }
}

/** Parses a segment of `length` octets; verifies the checksum when both addresses are given. */
export function parseTcp(
  buf: Uint8Array,
  offset: number,
  length: number,
  src?: number,
  dst?: number,
): Parsed<TcpHeader> {
  const err = checkTcp(buf, offset, length, src, dst);
  if (err !== null) return fail(err);
  const hl = (buf[offset + DATA_OFFSET]! >> 4) << 2;
  const options = decodeTcpOptions(buf, offset + OPTIONS, offset + hl);
  if (options === null) return fail('bad-option');
  return ok({
    srcPort: u16(buf, offset + SRC_PORT),
    dstPort: u16(buf, offset + DST_PORT),
    seq: u32(buf, offset + SEQ),
    ack: u32(buf, offset + ACK),
    reserved: buf[offset + DATA_OFFSET]! & 0xf,
    flags: buf[offset + FLAGS]!,
    window: u16(buf, offset + WINDOW),
    urgentPointer: u16(buf, offset + URGENT_POINTER),
    options,
    payload: buf.subarray(offset + hl, offset + length),
  });
}

/** Header length in octets that `emitTcp` will write for `h`. */
export function tcpHeaderLength(h: TcpHeader): number {
  return TCP_MIN_HEADER_LENGTH + padTo4(tcpOptionsLength(h.options));
}

/**
 * Writes header and payload at buf[offset] with the checksum for the given
 * addresses; returns the segment length. The payload is not copied when it
 * already sits where it belongs. Options past 40 octets or a short buffer
 * are a caller's bug and throw RangeError.
 */
export function emitTcp(h: TcpHeader, buf: Uint8Array, offset: number, src: number, dst: number): number {
  const hl = tcpHeaderLength(h);
  if (hl > TCP_MAX_HEADER_LENGTH) throw new RangeError(`TCP options of ${hl - 20} octets exceed 40`);
  const length = hl + h.payload.length;
  if (offset < 0 || offset + length > buf.length)
    throw new RangeError('buffer too short for the TCP segment');
  put16(buf, offset + SRC_PORT, h.srcPort);
  put16(buf, offset + DST_PORT, h.dstPort);
  put32(buf, offset + SEQ, h.seq);
  put32(buf, offset + ACK, h.ack);
  buf[offset + DATA_OFFSET] = ((hl >> 2) << 4) | (h.reserved & 0xf);
  buf[offset + FLAGS] = h.flags;
  put16(buf, offset + WINDOW, h.window);
  put16(buf, offset + URGENT_POINTER, h.urgentPointer);
  encodeTcpOptions(h.options, buf, offset + OPTIONS);
  copyUnlessInPlace(h.payload, buf, offset + hl);
  fillSegmentChecksum(buf, offset, length, src, dst);
  return length;
}

// The MSS option in place, as the hosts clamp it: these read the header's
// data offset and write its checksum, so they live with the header rather
// than with the option list codec.

/**
 * Absolute offset in `buf` of the 16-bit value of the segment's MSS option,
 * or -1 when there is none. Walks the option area in place and stops at
 * anything malformed, so it is safe on unchecked bytes.
 */
export function findTcpMss(buf: Uint8Array, tcpOffset: number): number {
  if (tcpOffset < 0 || tcpOffset + OPTIONS > buf.length) return -1;
  const end = Math.min(tcpOffset + ((buf[tcpOffset + DATA_OFFSET]! >> 4) << 2), buf.length);
  let i = tcpOffset + OPTIONS;
  while (i < end) {
    const kind = buf[i]!;
    if (kind === OPTION_EOL) return -1;
    if (kind === OPTION_NOP) {
      i++;
      continue;
    }
    if (i + 1 >= end) return -1;
    const len = buf[i + 1]!;
    if (len < 2 || i + len > end) return -1;
    if (kind === MSS_KIND && len === 4) return i + 2;
    i += len;
  }
  return -1;
}

/** The MSS the segment announces, or -1 when it carries no MSS option. */
export function readTcpMss(buf: Uint8Array, tcpOffset: number): number {
  const at = findTcpMss(buf, tcpOffset);
  return at < 0 ? -1 : u16(buf, at);
}

/**
 * Rewrites the MSS option in place and updates the TCP checksum by RFC 1624.
 * Options need no alignment, so the value may straddle two checksum words;
 * one's complement sums commute with a byte swap, so an odd-placed value is
 * accounted for byte-swapped. Returns false when there is no MSS option.
 */
export function rewriteTcpMss(buf: Uint8Array, tcpOffset: number, mss: number): boolean {
  const at = findTcpMss(buf, tcpOffset);
  if (at < 0) return false;
  const old = u16(buf, at);
  put16(buf, at, mss);
  const odd = ((at - tcpOffset) & 1) === 1;
  const cs = tcpOffset + CHECKSUM;
  put16(buf, cs, updateChecksum16(u16(buf, cs), odd ? swap16(old) : old, odd ? swap16(mss) : mss));
  return true;
}

/** Lowers an announced MSS above `max` to `max` (MSS clamping); true when it changed the segment. */
export function clampTcpMss(buf: Uint8Array, tcpOffset: number, max: number): boolean {
  const at = findTcpMss(buf, tcpOffset);
  if (at < 0 || u16(buf, at) <= max) return false;
  return rewriteTcpMss(buf, tcpOffset, max);
}

const swap16 = (v: number): number => ((v & 0xff) << 8) | ((v >>> 8) & 0xff);
