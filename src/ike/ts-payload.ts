/**
 * Traffic Selector payload body (RFC 7296 3.13).
 *
 *                      1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * | Number of TSs |                 RESERVED                      |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * ~                       <Traffic Selectors>                     ~
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Each selector (3.13.1), 16 bytes for IPv4:
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |   TS Type     |IP Protocol ID |       Selector Length         |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |           Start Port          |           End Port            |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * ~                         Starting Address                      ~
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * ~                         Ending Address                        ~
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * | offset | size | field                                              |
 * |--------|------|----------------------------------------------------|
 * | 0      | 1    | type: 7 IPv4 range, 8 IPv6 range                   |
 * | 1      | 1    | IP protocol, 0 = any                               |
 * | 2      | 2    | length of this selector: 16 (IPv4), 40 (IPv6)      |
 * | 4      | 2    | start port (0 with end 65535 = any)                |
 * | 6      | 2    | end port                                           |
 * | 8      | 4/16 | starting address                                   |
 * | 12/24  | 4/16 | ending address                                     |
 *
 * IPv4 selectors become numbers (addresses as unsigned 32-bit integers, as
 * src/ipsec's selectors hold them); IPv6 ones are carried as their bytes.
 */
import { fail, ok, type Parsed } from '../wire/result.ts';
import { TsType } from './constants.ts';

export type TrafficSelectorPayloadEntry =
  | {
      readonly kind: 'ipv4';
      readonly protocol: number;
      readonly startPort: number;
      readonly endPort: number;
      readonly startAddress: number;
      readonly endAddress: number;
    }
  | { readonly kind: 'other'; readonly tsType: number; readonly body: Buffer };

/** More selectors than any sane policy has; the field allows 255. */
export const MAX_SELECTORS = 64;
const IPV4_LENGTH = 16;
const IPV6_LENGTH = 40;

export function parseTsBody(b: Buffer): Parsed<TrafficSelectorPayloadEntry[]> {
  if (b.length < 4) return fail('truncated');
  const count = b[0]!;
  if (count === 0 || count > MAX_SELECTORS) return fail('bad-value');
  const out: TrafficSelectorPayloadEntry[] = [];
  let i = 4;
  for (let n = 0; n < count; n++) {
    if (i + 4 > b.length) return fail('truncated');
    const type = b[i]!;
    const len = b.readUInt16BE(i + 2);
    if (len < 8) return fail('bad-length');
    if (i + len > b.length) return fail('truncated');
    if (type === TsType.IPV4_ADDR_RANGE) {
      if (len !== IPV4_LENGTH) return fail('bad-length');
      out.push({
        kind: 'ipv4',
        protocol: b[i + 1]!,
        startPort: b.readUInt16BE(i + 4),
        endPort: b.readUInt16BE(i + 6),
        startAddress: b.readUInt32BE(i + 8),
        endAddress: b.readUInt32BE(i + 12),
      });
    } else {
      if (type === TsType.IPV6_ADDR_RANGE && len !== IPV6_LENGTH) return fail('bad-length');
      out.push({ kind: 'other', tsType: type, body: Buffer.from(b.subarray(i, i + len)) });
    }
    i += len;
  }
  if (i !== b.length) return fail('bad-length');
  return ok(out);
}

export function emitTsBody(selectors: readonly TrafficSelectorPayloadEntry[]): Buffer {
  const parts: Buffer[] = [Buffer.from([selectors.length, 0, 0, 0])];
  for (const s of selectors) {
    if (s.kind === 'other') {
      parts.push(s.body);
      continue;
    }
    const x = Buffer.alloc(IPV4_LENGTH);
    x[0] = TsType.IPV4_ADDR_RANGE;
    x[1] = s.protocol;
    x.writeUInt16BE(IPV4_LENGTH, 2);
    x.writeUInt16BE(s.startPort, 4);
    x.writeUInt16BE(s.endPort, 6);
    x.writeUInt32BE(s.startAddress >>> 0, 8);
    x.writeUInt32BE(s.endAddress >>> 0, 12);
    parts.push(x);
  }
  return Buffer.concat(parts);
}
