/**
 * TCP options (RFC 9293 3.2, 3.7.1; RFC 7323 window scale and timestamps;
 * RFC 2018 SACK). The list layout is the one IPv4 shares, see option-list.ts.
 *
 * | kind | length   | option          | value                                 |
 * |------|----------|-----------------|---------------------------------------|
 * | 0    | -        | End of Option List                                      |
 * | 1    | -        | No-Operation                                            |
 * | 2    | 4        | Maximum Segment Size | 16-bit MSS                       |
 * | 3    | 3        | Window Scale    | 8-bit shift count                     |
 * | 4    | 2        | SACK Permitted  | none                                  |
 * | 5    | 2 + 8n   | SACK            | n (1..4) pairs of 32-bit left, right  |
 * | 8    | 10       | Timestamps      | 32-bit TSval, 32-bit TSecr            |
 *
 * Any other kind, and a known kind with a length other than its own, is
 * kept as raw bytes: receivers ignore such options (RFC 9293 3.7.1 and Linux
 * tcp_parse_options), so a forwarder must carry them, and keeping the bytes
 * makes emit reproduce the segment exactly.
 */
import { put16, put32, u16, u32 } from './bytes.ts';
import { decodeOptionList, encodeOptionList, OPTION_EOL, OPTION_NOP, type RawOption } from './option-list.ts';

export const TcpOptionKind = {
  EndOfOptionList: 0,
  NoOperation: 1,
  MaximumSegmentSize: 2,
  WindowScale: 3,
  SackPermitted: 4,
  Sack: 5,
  Timestamps: 8,
} as const;

export interface TcpSackBlock {
  readonly left: number;
  readonly right: number;
}

export type TcpOption =
  | { readonly kind: 'eol' }
  | { readonly kind: 'nop' }
  | { readonly kind: 'mss'; readonly mss: number }
  | { readonly kind: 'window-scale'; readonly shift: number }
  | { readonly kind: 'sack-permitted' }
  | { readonly kind: 'sack'; readonly blocks: readonly TcpSackBlock[] }
  | { readonly kind: 'timestamps'; readonly tsVal: number; readonly tsEcr: number }
  /** `type` is the kind octet; `data` excludes the kind and length octets. */
  | { readonly kind: 'raw'; readonly type: number; readonly data: Uint8Array };

function typed(o: RawOption): TcpOption {
  const d = o.data;
  switch (o.type) {
    case TcpOptionKind.EndOfOptionList:
      return { kind: 'eol' };
    case TcpOptionKind.NoOperation:
      return { kind: 'nop' };
    case TcpOptionKind.MaximumSegmentSize:
      if (d.length === 2) return { kind: 'mss', mss: u16(d, 0) };
      break;
    case TcpOptionKind.WindowScale:
      if (d.length === 1) return { kind: 'window-scale', shift: d[0]! };
      break;
    case TcpOptionKind.SackPermitted:
      if (d.length === 0) return { kind: 'sack-permitted' };
      break;
    case TcpOptionKind.Sack:
      if (d.length >= 8 && d.length % 8 === 0) {
        const blocks: TcpSackBlock[] = [];
        for (let i = 0; i < d.length; i += 8) blocks.push({ left: u32(d, i), right: u32(d, i + 4) });
        return { kind: 'sack', blocks };
      }
      break;
    case TcpOptionKind.Timestamps:
      if (d.length === 8) return { kind: 'timestamps', tsVal: u32(d, 0), tsEcr: u32(d, 4) };
      break;
  }
  return { kind: 'raw', type: o.type, data: d };
}

/** Decodes an option area; null when the list is malformed ('bad-option'). */
export function decodeTcpOptions(buf: Uint8Array, start: number, end: number): TcpOption[] | null {
  const raw = decodeOptionList(buf, start, end);
  return raw === null ? null : raw.map(typed);
}

const EMPTY = new Uint8Array(0);

function toRaw(o: TcpOption): RawOption {
  let d: Uint8Array;
  switch (o.kind) {
    case 'eol':
      return { type: OPTION_EOL, data: EMPTY };
    case 'nop':
      return { type: OPTION_NOP, data: EMPTY };
    case 'mss':
      d = new Uint8Array(2);
      put16(d, 0, o.mss);
      return { type: TcpOptionKind.MaximumSegmentSize, data: d };
    case 'window-scale':
      return { type: TcpOptionKind.WindowScale, data: Uint8Array.of(o.shift) };
    case 'sack-permitted':
      return { type: TcpOptionKind.SackPermitted, data: EMPTY };
    case 'sack':
      d = new Uint8Array(8 * o.blocks.length);
      o.blocks.forEach((b, i) => {
        put32(d, 8 * i, b.left);
        put32(d, 8 * i + 4, b.right);
      });
      return { type: TcpOptionKind.Sack, data: d };
    case 'timestamps':
      d = new Uint8Array(8);
      put32(d, 0, o.tsVal);
      put32(d, 4, o.tsEcr);
      return { type: TcpOptionKind.Timestamps, data: d };
    case 'raw':
      return { type: o.type, data: o.data };
  }
}

/** Encoded size of a list before padding. */
export function tcpOptionsLength(opts: readonly TcpOption[]): number {
  let n = 0;
  for (const o of opts) {
    switch (o.kind) {
      case 'eol':
      case 'nop':
        n += 1;
        break;
      case 'mss':
        n += 4;
        break;
      case 'window-scale':
        n += 3;
        break;
      case 'sack-permitted':
        n += 2;
        break;
      case 'sack':
        n += 2 + 8 * o.blocks.length;
        break;
      case 'timestamps':
        n += 10;
        break;
      case 'raw':
        n += 2 + o.data.length;
        break;
    }
  }
  return n;
}

/** Writes the list at buf[at], zero-padded to 32 bits; returns the padded length. */
export function encodeTcpOptions(opts: readonly TcpOption[], buf: Uint8Array, at: number): number {
  return encodeOptionList(opts.map(toRaw), buf, at);
}
