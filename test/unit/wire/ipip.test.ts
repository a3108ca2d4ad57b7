import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decapsulate,
  emitIpip,
  encapsulate,
  IpipInner,
  nextIpv4Id,
  parseIpip,
  type IpipPacket,
} from '../../../src/wire/ipip.ts';
import { emitIpv4, ipv4HeaderLength, Ipv4View, parseIpv4 } from '../../../src/wire/ipv4.ts';
import type { WireError } from '../../../src/wire/result.ts';
import {
  arbIpv4Datagram,
  arbIpv4Header,
  fromHex,
  mutate,
  prng,
  sameBytes,
  SEED,
  toHex,
  u16,
  u32,
} from './ip-arbitraries.ts';

const fcOpts = { seed: SEED, numRuns: 300 };
const H1 = 0x0a000001; // 10.0.0.1
const ROUTER = 0x0a000007; // 10.0.0.7

// A TCP SYN 198.51.100.30 -> 203.0.113.3 with DF, and the same tunnelled
// 10.0.0.1 -> 10.0.0.7 with id 0x0101 and DF, both as scapy builds them.
const INNER = fromHex(
  '4500002c1c4640004006b830c633641ecb0071039c4001bb12345678000000006002faf030380000020405b4',
);
const OUTER = fromHex('4500004001014000400425b20a0000010a000007');

const tunnelled = (): Uint8Array => {
  const b = new Uint8Array(20 + INNER.length);
  b.set(OUTER);
  b.set(INNER, 20);
  return b;
};

function inBuffer(inner: Uint8Array, headroom: number): Uint8Array {
  const b = new Uint8Array(headroom + inner.length + 7).fill(0xcc);
  b.set(inner, headroom);
  return b;
}

describe('encapsulate', () => {
  it('writes the outer header scapy writes, into the headroom, without moving the inner datagram', () => {
    const b = inBuffer(INNER, 64);
    expect(encapsulate(b, 64, INNER.length, H1, ROUTER, 0x0101)).toBe(44);
    expect(toHex(b.subarray(44, 64))).toBe(toHex(OUTER));
    expect(b.subarray(64, 64 + INNER.length)).toEqual(INNER);
    expect(b.subarray(0, 44).every((x) => x === 0xcc)).toBe(true);
  });

  it('copies TOS and DF, sets TTL 64, protocol 4, a valid checksum; decapsulate finds the inner datagram', () => {
    fc.assert(
      fc.property(
        arbIpv4Datagram,
        fc.integer({ min: 20, max: 80 }),
        u32,
        u32,
        u16,
        (inner, headroom, src, dst, id) => {
          const b = inBuffer(inner, headroom);
          const start = encapsulate(b, headroom, inner.length, src, dst, id);
          expect(start).toBe(headroom - 20);
          const outer = new Ipv4View(b, headroom - 20, inner.length + 20);
          expect(outer.check()).toBeNull();
          const innerView = new Ipv4View(inner);
          expect([outer.headerLength, outer.tos, outer.totalLength, outer.identification]).toEqual([
            20,
            innerView.tos,
            inner.length + 20,
            id,
          ]);
          expect([outer.dontFragment, outer.moreFragments, outer.fragmentOffset, outer.flags & 4]).toEqual([
            innerView.dontFragment,
            false,
            0,
            0,
          ]);
          expect([outer.ttl, outer.protocol, outer.src, outer.dst]).toEqual([64, 4, src, dst]);
          expect(sameBytes(b.subarray(headroom, headroom + inner.length), inner)).toBe(true);
          const out = new IpipInner();
          expect(decapsulate(b, headroom - 20, inner.length + 27, out)).toBeNull();
          expect([out.offset, out.length, out.outerSrc, out.outerDst]).toEqual([
            headroom,
            inner.length,
            src,
            dst,
          ]);
        },
      ),
      fcOpts,
    );
  });

  it('takes a fresh identification when none is given', () => {
    const b = inBuffer(INNER, 20);
    const first = nextIpv4Id();
    encapsulate(b, 20, INNER.length, H1, ROUTER);
    expect(new Ipv4View(b).identification).toBe((first + 1) & 0xffff);
    encapsulate(b, 20, INNER.length, H1, ROUTER, undefined, 3);
    expect([new Ipv4View(b).identification, new Ipv4View(b).ttl]).toEqual([(first + 2) & 0xffff, 3]);
  });

  it('names what it cannot encapsulate, and throws only for missing headroom', () => {
    const b = inBuffer(INNER, 20);
    expect(encapsulate(b, 20, 19, H1, ROUTER)).toBe('truncated');
    expect(encapsulate(b, 20, b.length, H1, ROUTER)).toBe('truncated');
    b[20] = 0x65;
    expect(encapsulate(b, 20, INNER.length, H1, ROUTER)).toBe('bad-version');
    const big = new Uint8Array(20 + 65516);
    big[20] = 0x45;
    expect(encapsulate(big, 20, 65516, H1, ROUTER)).toBe('bad-total-length');
    expect(typeof encapsulate(big, 20, 65515, H1, ROUTER)).toBe('number');
    expect(() => encapsulate(b, 19, INNER.length, H1, ROUTER)).toThrow(RangeError);
  });
});

describe('decapsulate', () => {
  /** Applies a change to the outer header and fixes its checksum, so only the change is judged. */
  const outerChange = (change: (b: Uint8Array) => void) => (b: Uint8Array) => {
    change(b);
    new Ipv4View(b).fillChecksum();
    return b;
  };

  it('names the reason for each unusable datagram', () => {
    const cases: [string, (b: Uint8Array) => Uint8Array, WireError][] = [
      ['outer truncated', (b) => b.subarray(0, 19), 'truncated'],
      ['outer checksum', (b) => ((b[11] = b[11]! ^ 1), b), 'bad-checksum'],
      ['outer version', outerChange((b) => (b[0] = 0x55)), 'bad-version'],
      ['outer protocol 6', outerChange((b) => (b[9] = 6)), 'bad-protocol'],
      ['outer MF', outerChange((b) => (b[6] = 0x20)), 'fragmented'],
      ['outer offset', outerChange((b) => (b[7] = 1)), 'fragmented'],
      ['inner shorter than a header', outerChange((b) => (b[3] = 39)), 'truncated'],
      ['inner version 6', (b) => ((b[20] = 0x60), b), 'bad-version'],
      ['inner total length 19', (b) => ((b[22] = 0), (b[23] = 19), b), 'bad-total-length'],
      ['inner total length past the outer', (b) => ((b[23] = 45), b), 'bad-total-length'],
    ];
    const out = new IpipInner();
    for (const [name, breakIt, reason] of cases) {
      const b = breakIt(tunnelled());
      expect(decapsulate(b, 0, b.length, out), name).toBe(reason);
      expect(parseIpip(b, 0, b.length), name).toEqual({ ok: false, reason });
    }
  });

  it('accepts outer options', () => {
    const outer = { ...parseValue(tunnelled()), options: [{ type: 148, data: Uint8Array.of(0, 0) }] };
    const b = new Uint8Array(24 + INNER.length);
    emitIpv4(outer, b, 0);
    b.set(INNER, 24);
    const out = new IpipInner();
    expect(decapsulate(b, 0, b.length, out)).toBeNull();
    expect([out.offset, out.length]).toEqual([24, INNER.length]);
  });

  it('refuses octets between the inner and the outer total length', () => {
    const outer = { ...parseValue(tunnelled()), payloadLength: INNER.length + 1 };
    const b = new Uint8Array(21 + INNER.length);
    emitIpv4(outer, b, 0);
    b.set(INNER, 20);
    expect(decapsulate(b, 0, b.length, new IpipInner())).toBe('bad-total-length');
  });

  it('can skip the outer checksum for a kernel that already verified it', () => {
    const b = tunnelled();
    b[10] = 0;
    expect(decapsulate(b, 0, b.length, new IpipInner(), false)).toBeNull();
  });
});

function parseValue(b: Uint8Array) {
  const p = parseIpv4(b, 0, b.length, false);
  if (!p.ok) throw new Error(p.reason);
  return p.value;
}

const arbIpip: fc.Arbitrary<IpipPacket> = fc
  .tuple(arbIpv4Header({ protocol: fc.constant(4), fragmentOffset: fc.constant(0) }), arbIpv4Datagram)
  .map(([outer, inner]) => ({
    outer: { ...outer, flags: outer.flags & 6, payloadLength: inner.length },
    inner,
  }));

function emitted(p: IpipPacket): Uint8Array {
  const b = new Uint8Array(ipv4HeaderLength(p.outer) + p.inner.length);
  emitIpip(p, b, 0);
  return b;
}

describe('IP-in-IP parse and emit', () => {
  it('parse(emit(x)) deep-equals x', () => {
    fc.assert(
      fc.property(arbIpip, (p) => {
        const b = emitted(p);
        expect(parseIpip(b, 0, b.length)).toEqual({ ok: true, value: p });
      }),
      fcOpts,
    );
  });

  it('refuses to emit an outer header that does not describe its inner datagram', () => {
    const outer = parseValue(tunnelled());
    expect(() =>
      emitIpip({ outer: { ...outer, protocol: 6 }, inner: INNER }, new Uint8Array(100), 0),
    ).toThrow(RangeError);
    expect(() => emitIpip({ outer, inner: INNER.subarray(1) }, new Uint8Array(100), 0)).toThrow(RangeError);
    expect(() => emitIpip({ outer, inner: INNER }, new Uint8Array(63), 0)).toThrow(RangeError);
  });

  it('survives 24,000 truncated, garbled and bit-flipped datagrams: a value or a reason, never a throw', () => {
    const reasons: WireError[] = [
      'truncated',
      'bad-version',
      'bad-ihl',
      'bad-total-length',
      'bad-checksum',
      'bad-option',
      'bad-protocol',
      'fragmented',
    ];
    const seen = new Set<string>();
    const wrong: string[] = [];
    const rand = prng(SEED + 4);
    const out = new IpipInner();
    const bases = fc.sample(arbIpip, { seed: SEED, numRuns: 240 }).map(emitted);
    for (const base of bases) {
      for (let k = 0; k < 100; k++) {
        const b = mutate(base, rand);
        const verify = k % 2 === 0;
        const p = parseIpip(b, 0, b.length, verify);
        const outcome = p.ok ? 'ok' : p.reason;
        seen.add(outcome);
        const decap = decapsulate(b, 0, b.length, out, verify) ?? 'ok';
        if (!p.ok && !reasons.includes(p.reason)) wrong.push(`unexpected ${p.reason}`);
        if (decap !== outcome) wrong.push(`decapsulate says ${decap}, parse ${outcome}`);
        if (p.ok) {
          if (out.offset + out.length > b.length || out.length < 20)
            wrong.push(`inner out of bounds in ${toHex(b)}`);
          const again = emitted(p.value);
          const p2 = parseIpip(again, 0, again.length);
          if (!p2.ok || !sameBytes(emitted(p2.value), again)) wrong.push(`re-emit differs for ${toHex(b)}`);
        }
      }
    }
    expect(wrong).toEqual([]);
    expect([...seen].sort()).toEqual(['ok', ...reasons].sort());
  });
});
