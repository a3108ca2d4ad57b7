/**
 * Test packets built and checked the slow way: every checksum computed over
 * the whole message, so incremental updates are judged against a full
 * recomputation.
 */
import {
  internetChecksum,
  pseudoHeaderSumFromIp,
  udpWireChecksum,
  verifiesTo0,
} from '../../../src/wire/checksum.ts';
import type { LeasedPortSource } from '../../../src/host/data-path/translation/leased-port-source.ts';

export const TCP = 6;
export const UDP = 17;
export const ICMP = 1;
export const ESP = 50;

export const SHARED = addr('198.51.100.30');
export const SERVER = addr('203.0.113.3');
export const HOP = addr('192.0.2.1');

export function addr(text: string): number {
  return text.split('.').reduce((a, b) => a * 256 + Number(b), 0);
}

const put16 = (b: Uint8Array, i: number, v: number) => {
  b[i] = v >>> 8;
  b[i + 1] = v & 0xff;
};
const put32 = (b: Uint8Array, i: number, v: number) => {
  put16(b, i, v >>> 16);
  put16(b, i + 2, v & 0xffff);
};
export const get16 = (b: Uint8Array, i: number) => (b[i]! << 8) | b[i + 1]!;

export interface IpOptions {
  id?: number;
  /** Fragment offset in 8-byte units. */
  fragmentOffset?: number;
  moreFragments?: boolean;
  ttl?: number;
}

/** IPv4 header (20 bytes, no options) + payload, header checksum filled. */
export function ipv4(
  src: number,
  dst: number,
  protocol: number,
  payload: Uint8Array,
  o: IpOptions = {},
): Uint8Array {
  const b = new Uint8Array(20 + payload.length);
  b[0] = 0x45;
  put16(b, 2, b.length);
  put16(b, 4, o.id ?? 0x4242);
  put16(b, 6, (o.moreFragments ? 0x2000 : 0) | (o.fragmentOffset ?? 0));
  b[8] = o.ttl ?? 64;
  b[9] = protocol;
  put32(b, 12, src);
  put32(b, 16, dst);
  put16(b, 10, internetChecksum(b, 0, 20));
  b.set(payload, 20);
  return b;
}

/** Recomputes the transport checksum of a one-header IPv4 packet from scratch (UDP: unless it is 0). */
export function fillTransportChecksum(p: Uint8Array): Uint8Array {
  const protocol = p[9]!;
  const len = p.length - 20;
  if (protocol === TCP) {
    put16(p, 36, 0);
    put16(p, 36, internetChecksum(p, 20, p.length, pseudoHeaderSumFromIp(p, 0, TCP, len)));
  } else if (protocol === UDP) {
    if (get16(p, 26) === 0) return p;
    put16(p, 26, 0);
    put16(p, 26, udpWireChecksum(internetChecksum(p, 20, p.length, pseudoHeaderSumFromIp(p, 0, UDP, len))));
  } else if (protocol === ICMP) {
    put16(p, 22, 0);
    put16(p, 22, internetChecksum(p, 20, p.length));
  }
  return p;
}

export function tcp(
  src: number,
  sport: number,
  dst: number,
  dport: number,
  flags: number,
  payload: Uint8Array = new Uint8Array(0),
  o: IpOptions = {},
): Uint8Array {
  const t = new Uint8Array(20 + payload.length);
  put16(t, 0, sport);
  put16(t, 2, dport);
  put32(t, 4, 0x01020304);
  put32(t, 8, flags & 0x10 ? 0x0a0b0c0d : 0);
  t[12] = 5 << 4;
  t[13] = flags;
  put16(t, 14, 64240);
  t.set(payload, 20);
  return fillTransportChecksum(ipv4(src, dst, TCP, t, o));
}

export function udp(
  src: number,
  sport: number,
  dst: number,
  dport: number,
  payload: Uint8Array = new Uint8Array(0),
  o: IpOptions & { noChecksum?: boolean } = {},
): Uint8Array {
  const u = new Uint8Array(8 + payload.length);
  put16(u, 0, sport);
  put16(u, 2, dport);
  put16(u, 4, u.length);
  put16(u, 6, o.noChecksum ? 0 : 1); // any non-zero marks "has a checksum" for fillTransportChecksum
  u.set(payload, 8);
  return fillTransportChecksum(ipv4(src, dst, UDP, u, o));
}

/** ICMP query (echo 8/0, timestamp 13/14) with identifier and sequence. */
export function icmpQuery(
  src: number,
  dst: number,
  type: number,
  id: number,
  seq: number,
  payload: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const m = new Uint8Array(8 + payload.length);
  m[0] = type;
  put16(m, 4, id);
  put16(m, 6, seq);
  m.set(payload, 8);
  return fillTransportChecksum(ipv4(src, dst, ICMP, m));
}

/** ICMP error from `src` to `dst` quoting the first `quoteBytes` bytes of `original`. */
export function icmpError(
  src: number,
  dst: number,
  type: number,
  code: number,
  original: Uint8Array,
  quoteBytes = original.length,
): Uint8Array {
  const quote = original.subarray(0, Math.min(quoteBytes, original.length));
  const m = new Uint8Array(8 + quote.length);
  m[0] = type;
  m[1] = code;
  m.set(quote, 8);
  return fillTransportChecksum(ipv4(src, dst, ICMP, m));
}

/** True when the IPv4 header checksum and the transport (or ICMP) checksum verify over the whole packet. */
export function checksumsVerify(p: Uint8Array): boolean {
  if (!verifiesTo0(p, 0, 20)) return false;
  const protocol = p[9]!;
  const len = p.length - 20;
  if (protocol === TCP) return verifiesTo0(p, 20, p.length, pseudoHeaderSumFromIp(p, 0, TCP, len));
  if (protocol === UDP)
    return get16(p, 26) === 0 || verifiesTo0(p, 20, p.length, pseudoHeaderSumFromIp(p, 0, UDP, len));
  if (protocol === ICMP) return verifiesTo0(p, 20, p.length);
  return true;
}

/** An in-memory lease: one block of ports, taken lowest first. */
export class BlockPortSource implements LeasedPortSource {
  readonly taken = new Set<number>();
  private readonly free: number[];

  constructor(
    readonly first: number,
    readonly count: number,
  ) {
    this.free = Array.from({ length: count }, (_, i) => first + count - 1 - i);
  }

  takePort(): number {
    const p = this.free.pop();
    if (p === undefined) return -1;
    this.taken.add(p);
    return p;
  }

  returnPort(port: number): void {
    if (!this.taken.delete(port)) throw new Error(`port ${port} returned but not taken`);
    this.free.push(port);
  }
}
