/**
 * Synthetic IPv4 packets for the I/O benchmarks and tests: just enough
 * header writing to make valid UDP, ICMP echo and IP-in-IP packets, with
 * checksums from src/wire/checksum.ts.
 */
import { internetChecksum, pseudoHeaderSumFromIp, udpWireChecksum } from '../../src/wire/checksum.ts';

export function ipv4ToInt(text: string): number {
  const parts = text.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`not an IPv4 address: ${text}`);
  }
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

export function intToIpv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff].join('.');
}

export interface Ipv4Fields {
  src: string;
  dst: string;
  protocol: number;
  id?: number;
  ttl?: number;
  dontFragment?: boolean;
}

const put16 = (b: Uint8Array, o: number, v: number): void => {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
};
const put32 = (b: Uint8Array, o: number, v: number): void => {
  put16(b, o, v >>> 16);
  put16(b, o + 2, v & 0xffff);
};

/** Writes a 20-byte IPv4 header with its checksum at buf[off]. */
export function writeIpv4Header(buf: Uint8Array, off: number, f: Ipv4Fields, totalLength: number): void {
  buf[off] = 0x45;
  buf[off + 1] = 0;
  put16(buf, off + 2, totalLength);
  put16(buf, off + 4, f.id ?? 0);
  put16(buf, off + 6, f.dontFragment === false ? 0 : 0x4000);
  buf[off + 8] = f.ttl ?? 64;
  buf[off + 9] = f.protocol;
  put16(buf, off + 10, 0);
  put32(buf, off + 12, ipv4ToInt(f.src));
  put32(buf, off + 16, ipv4ToInt(f.dst));
  put16(buf, off + 10, internetChecksum(buf, off, off + 20));
}

/** IPv4/UDP with a payload of `payloadLength` bytes (pattern: byte i = i & 0xff). */
export function buildUdp4(
  src: string,
  dst: string,
  srcPort: number,
  dstPort: number,
  payloadLength: number,
  id = 0,
): Uint8Array {
  const total = 28 + payloadLength;
  const b = new Uint8Array(total);
  writeIpv4Header(b, 0, { src, dst, protocol: 17, id }, total);
  put16(b, 20, srcPort);
  put16(b, 22, dstPort);
  put16(b, 24, 8 + payloadLength);
  for (let i = 0; i < payloadLength; i++) b[28 + i] = i & 0xff;
  const sum = internetChecksum(b, 20, total, pseudoHeaderSumFromIp(b, 0, 17, 8 + payloadLength));
  put16(b, 26, udpWireChecksum(sum));
  return b;
}

/** IPv4/ICMP echo request (type 8) or reply (type 0). */
export function buildIcmpEcho(
  src: string,
  dst: string,
  ident: number,
  seq: number,
  payloadLength = 56,
  type = 8,
) {
  const total = 28 + payloadLength;
  const b = new Uint8Array(total);
  writeIpv4Header(b, 0, { src, dst, protocol: 1 }, total);
  b[20] = type;
  put16(b, 24, ident);
  put16(b, 26, seq);
  for (let i = 0; i < payloadLength; i++) b[28 + i] = (i + seq) & 0xff;
  put16(b, 22, internetChecksum(b, 20, total));
  return b;
}

/** Wraps `inner` in an outer IPv4 header of protocol 4 (RFC 2003). */
export function buildIpip(outerSrc: string, outerDst: string, inner: Uint8Array, id = 0): Uint8Array {
  const b = new Uint8Array(20 + inner.length);
  writeIpv4Header(b, 0, { src: outerSrc, dst: outerDst, protocol: 4, id }, b.length);
  b.set(inner, 20);
  return b;
}

export interface Tcp4Fields {
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  seq: number;
  ack?: number;
  /** TCP flag bits: FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE 0x40, CWR 0x80. */
  flags: number;
  window?: number;
  /** TCP options, padded by the caller to a multiple of 4 bytes. */
  options?: Uint8Array;
  id?: number;
  /** Leave the TCP checksum as CHECKSUM_PARTIAL does: the folded pseudo-header sum, not inverted. */
  partialChecksum?: boolean;
}

/** IPv4/TCP with the given payload; complete checksums unless partialChecksum. */
export function buildTcp4(f: Tcp4Fields, payload: Uint8Array): Uint8Array {
  const opts = f.options ?? new Uint8Array(0);
  const thl = 20 + opts.length;
  const total = 20 + thl + payload.length;
  const b = new Uint8Array(total);
  writeIpv4Header(b, 0, { src: f.src, dst: f.dst, protocol: 6, id: f.id ?? 0 }, total);
  put16(b, 20, f.srcPort);
  put16(b, 22, f.dstPort);
  put32(b, 24, f.seq >>> 0);
  put32(b, 28, (f.ack ?? 0) >>> 0);
  b[32] = (thl / 4) << 4;
  b[33] = f.flags;
  put16(b, 34, f.window ?? 65535);
  b.set(opts, 40);
  b.set(payload, 20 + thl);
  const pseudo = pseudoHeaderSumFromIp(b, 0, 6, thl + payload.length);
  if (f.partialChecksum) {
    let s = pseudo;
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    put16(b, 36, s);
  } else {
    put16(b, 36, internetChecksum(b, 20, total, pseudo));
  }
  return b;
}
