/**
 * Generators shared by the IPv4, TCP, UDP and IP-in-IP tests: fast-check
 * arbitraries for valid headers in the canonical form parse produces, a
 * seeded PRNG, and a mutator that breaks packets in the ways links and
 * attackers do.
 */
import fc from 'fast-check';
import { emitIpv4, ipv4HeaderLength, type Ipv4Header, type Ipv4Option } from '../../../src/wire/ipv4.ts';
import { optionListLength } from '../../../src/wire/option-list.ts';
import { TcpOptionKind, tcpOptionsLength, type TcpOption } from '../../../src/wire/tcp-options.ts';
import type { TcpHeader } from '../../../src/wire/tcp.ts';
import type { UdpHeader } from '../../../src/wire/udp.ts';

export const SEED = 0x2003;

const EMPTY = new Uint8Array(0);
export const u32 = fc.integer({ min: 0, max: 0xffffffff });
export const u16 = fc.integer({ min: 0, max: 0xffff });
export const u8 = fc.integer({ min: 0, max: 0xff });

/** An option list of at most 40 octets in the form parse returns: at most one EOL, at the end. */
function optionList<T>(
  item: fc.Arbitrary<T>,
  eol: T,
  length: (l: readonly T[]) => number,
): fc.Arbitrary<T[]> {
  return fc.tuple(fc.array(item, { maxLength: 8 }), fc.boolean()).map(([opts, close]) => {
    const out: T[] = [];
    for (const o of opts) if (length([...out, o]) <= 40) out.push(o);
    // Padding zeros read back as EOL, so a list that needs padding ends in one.
    if ((close && length(out) < 40) || length(out) % 4 !== 0) out.push(eol);
    return out;
  });
}

const NOP: Ipv4Option = { type: 1, data: EMPTY };
const EOL: Ipv4Option = { type: 0, data: EMPTY };

export const arbIpv4Option: fc.Arbitrary<Ipv4Option> = fc.oneof(
  fc.constant(NOP),
  fc.record({ type: fc.integer({ min: 2, max: 255 }), data: fc.uint8Array({ maxLength: 12 }) }),
);

export const arbIpv4Options = optionList(arbIpv4Option, EOL, optionListLength);

export const arbIpv4Header = (over: Partial<Record<keyof Ipv4Header, fc.Arbitrary<unknown>>> = {}) =>
  fc.record({
    tos: u8,
    identification: u16,
    flags: fc.integer({ min: 0, max: 7 }),
    fragmentOffset: fc.integer({ min: 0, max: 0x1fff }),
    ttl: u8,
    protocol: u8,
    src: u32,
    dst: u32,
    options: arbIpv4Options,
    payloadLength: fc.oneof(fc.integer({ min: 0, max: 1500 }), fc.constant(0xffff - 60)),
    ...over,
  }) as fc.Arbitrary<Ipv4Header>;

const knownTcpLength: Record<number, (n: number) => boolean> = {
  [TcpOptionKind.MaximumSegmentSize]: (n) => n === 2,
  [TcpOptionKind.WindowScale]: (n) => n === 1,
  [TcpOptionKind.SackPermitted]: (n) => n === 0,
  [TcpOptionKind.Sack]: (n) => n >= 8 && n % 8 === 0,
  [TcpOptionKind.Timestamps]: (n) => n === 8,
};

export const arbTcpOption: fc.Arbitrary<TcpOption> = fc.oneof(
  fc.constant<TcpOption>({ kind: 'nop' }),
  u16.map((mss): TcpOption => ({ kind: 'mss', mss })),
  u8.map((shift): TcpOption => ({ kind: 'window-scale', shift })),
  fc.constant<TcpOption>({ kind: 'sack-permitted' }),
  fc
    .array(fc.record({ left: u32, right: u32 }), { minLength: 1, maxLength: 4 })
    .map((blocks): TcpOption => ({ kind: 'sack', blocks })),
  fc.record({ tsVal: u32, tsEcr: u32 }).map((t): TcpOption => ({ kind: 'timestamps', ...t })),
  // Raw: unknown kinds, and known kinds whose length is not their own.
  fc
    .record({ type: fc.integer({ min: 2, max: 255 }), data: fc.uint8Array({ maxLength: 12 }) })
    .filter((o) => !knownTcpLength[o.type]?.(o.data.length))
    .map((o): TcpOption => ({ kind: 'raw', ...o })),
);

export const arbTcpOptions = optionList<TcpOption>(arbTcpOption, { kind: 'eol' }, tcpOptionsLength);

export const arbPayload = fc.uint8Array({ maxLength: 300 });

export const arbTcpHeader: fc.Arbitrary<TcpHeader> = fc.record({
  srcPort: u16,
  dstPort: u16,
  seq: u32,
  ack: u32,
  reserved: fc.integer({ min: 0, max: 15 }),
  flags: u8,
  window: u16,
  urgentPointer: u16,
  options: arbTcpOptions,
  payload: arbPayload,
});

export const arbUdpHeader: fc.Arbitrary<UdpHeader> = fc.record({
  srcPort: u16,
  dstPort: u16,
  hasChecksum: fc.boolean(),
  payload: arbPayload,
});

/** A whole inner IPv4 datagram (header with options, random payload), as bytes. */
export const arbIpv4Datagram: fc.Arbitrary<Uint8Array> = fc
  .tuple(arbIpv4Header({ payloadLength: fc.constant(0) }), fc.uint8Array({ maxLength: 200 }))
  .map(([h, payload]) => {
    const header = { ...h, payloadLength: payload.length };
    const bytes = new Uint8Array(ipv4HeaderLength(header) + payload.length);
    bytes.set(payload, emitIpv4(header, bytes, 0));
    return bytes;
  });

/** mulberry32: small, fast, and the same sequence everywhere for a given seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A broken copy of `packet`: truncated, bit-flipped, a byte overwritten,
 * a 16-bit field (length fields live there) set at random, extended with
 * junk, or plain noise. Returns the bytes and how many of them to offer.
 */
export function mutate(packet: Uint8Array, rand: () => number): Uint8Array {
  const pick = (n: number) => Math.floor(rand() * n);
  const b = new Uint8Array(packet.length + 64);
  b.set(packet);
  let len = packet.length;
  const rounds = 1 + pick(3);
  for (let r = 0; r < rounds; r++) {
    switch (pick(6)) {
      case 0:
        len = pick(len + 1);
        break;
      case 1:
        if (len > 0) b[pick(Math.min(len, 64))]! ^= 1 << pick(8);
        break;
      case 2:
        if (len > 0) b[pick(len)] = pick(256);
        break;
      case 3:
        if (len > 1) {
          const at = pick(Math.min(len - 1, 63));
          const v = pick(0x10000);
          b[at] = v >> 8;
          b[at + 1] = v;
        }
        break;
      case 4:
        for (let k = pick(64); k > 0 && len < b.length; k--) b[len++] = pick(256);
        break;
      case 5:
        len = pick(80);
        for (let i = 0; i < len; i++) b[i] = pick(256);
        break;
    }
  }
  return b.subarray(0, len);
}

export const fromHex = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex, 'hex'));
export const toHex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex');

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
