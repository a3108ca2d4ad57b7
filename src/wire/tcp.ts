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
import { checkOptionList, padTo4 } from './option-list.ts';
import { IpProtocol, fail, ok, type Parsed, type WireError } from './result.ts';
import {
  clampTcpMss,
  decodeTcpOptions,
  encodeTcpOptions,
  readTcpMss,
  tcpOptionsLength,
  type TcpOption,
} from './tcp-options.ts';
import { HeaderView } from './view.ts';

export const TCP_MIN_HEADER_LENGTH = 20;
export const TCP_MAX_HEADER_LENGTH = 60;

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
  const hl = (buf[offset + 12]! >> 4) << 2;
  if (hl < TCP_MIN_HEADER_LENGTH || hl > length) return 'bad-data-offset';
  if (src !== undefined && dst !== undefined) {
    const pseudo = pseudoHeaderSum(src, dst, IpProtocol.TCP, length);
    if (fold(sumBytes(buf, offset, offset + length, pseudo)) !== 0xffff) return 'bad-checksum';
  }
  if (hl > TCP_MIN_HEADER_LENGTH) return checkOptionList(buf, offset + TCP_MIN_HEADER_LENGTH, offset + hl);
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
  put16(buf, offset + 16, 0);
  const pseudo = pseudoHeaderSum(src, dst, IpProtocol.TCP, length);
  put16(buf, offset + 16, internetChecksum(buf, offset, offset + length, pseudo));
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
    return u16(this.buf, this.offset);
  }
  get dstPort(): number {
    return u16(this.buf, this.offset + 2);
  }
  get seq(): number {
    return u32(this.buf, this.offset + 4);
  }
  get ack(): number {
    return u32(this.buf, this.offset + 8);
  }
  /** Header length in octets. */
  get headerLength(): number {
    return (this.buf[this.offset + 12]! >> 4) << 2;
  }
  get reserved(): number {
    return this.buf[this.offset + 12]! & 0xf;
  }
  get flags(): number {
    return this.buf[this.offset + 13]!;
  }
  get window(): number {
    return u16(this.buf, this.offset + 14);
  }
  get checksum(): number {
    return u16(this.buf, this.offset + 16);
  }
  get urgentPointer(): number {
    return u16(this.buf, this.offset + 18);
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
    return (this.buf[this.offset + 13]! & mask) === mask;
  }
  setSrcPort(port: number): void {
    this.setChecksum(updateChecksum16(this.checksum, this.srcPort, port));
    put16(this.buf, this.offset, port);
  }
  setDstPort(port: number): void {
    this.setChecksum(updateChecksum16(this.checksum, this.dstPort, port));
    put16(this.buf, this.offset + 2, port);
  }
  setChecksum(checksum: number): void {
    put16(this.buf, this.offset + 16, checksum);
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
  const hl = (buf[offset + 12]! >> 4) << 2;
  const options = decodeTcpOptions(buf, offset + TCP_MIN_HEADER_LENGTH, offset + hl);
  if (options === null) return fail('bad-option');
  return ok({
    srcPort: u16(buf, offset),
    dstPort: u16(buf, offset + 2),
    seq: u32(buf, offset + 4),
    ack: u32(buf, offset + 8),
    reserved: buf[offset + 12]! & 0xf,
    flags: buf[offset + 13]!,
    window: u16(buf, offset + 14),
    urgentPointer: u16(buf, offset + 18),
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
  put16(buf, offset, h.srcPort);
  put16(buf, offset + 2, h.dstPort);
  put32(buf, offset + 4, h.seq);
  put32(buf, offset + 8, h.ack);
  buf[offset + 12] = ((hl >> 2) << 4) | (h.reserved & 0xf);
  buf[offset + 13] = h.flags;
  put16(buf, offset + 14, h.window);
  put16(buf, offset + 18, h.urgentPointer);
  encodeTcpOptions(h.options, buf, offset + TCP_MIN_HEADER_LENGTH);
  copyUnlessInPlace(h.payload, buf, offset + hl);
  fillSegmentChecksum(buf, offset, length, src, dst);
  return length;
}
