import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { internetChecksum, pseudoHeaderSum } from '../../../src/wire/checksum.ts';
import type { WireError } from '../../../src/wire/result.ts';
import { u16 as read16 } from '../../../src/wire/bytes.ts';
import { PortField } from '../../../src/wire/ports.ts';
import { emitUdp, parseUdp, UdpField, UdpView, type UdpHeader } from '../../../src/wire/udp.ts';
import { arbUdpHeader, fromHex, mutate, prng, sameBytes, SEED, toHex, u16, u32 } from './ip-arbitraries.ts';

const fcOpts = { seed: SEED, numRuns: 300 };
const SRC = 0xc633641e; // 198.51.100.30
const DST = 0xcb007103; // 203.0.113.3

// UDP 1024 -> 53 carrying "hello", between SRC and DST, as scapy builds it.
const HELLO = fromHex('04000035000d517768656c6c6f');

function emitted(h: UdpHeader, src = SRC, dst = DST): Uint8Array {
  const b = new Uint8Array(8 + h.payload.length);
  emitUdp(h, b, 0, src, dst);
  return b;
}

/** The checksum computed from scratch, before the zero rule. */
function computed(b: Uint8Array, src: number, dst: number): number {
  const c = b.slice();
  c[6] = 0;
  c[7] = 0;
  return internetChecksum(c, 0, c.length, pseudoHeaderSum(src, dst, 17, c.length));
}

describe('UDP header fields', () => {
  it('reads a known datagram in place and as plain values', () => {
    const v = new UdpView(HELLO);
    expect(v.check(SRC, DST)).toBeNull();
    expect([v.srcPort, v.dstPort, v.datagramLength, v.checksum, v.hasChecksum]).toEqual([
      1024,
      53,
      13,
      0x5177,
      true,
    ]);
    expect([v.payloadOffset, v.payloadLength]).toEqual([8, 5]);
    const F = UdpField;
    expect([F.SRC_PORT, F.DST_PORT]).toEqual([PortField.SRC_PORT, PortField.DST_PORT]);
    expect([F.SRC_PORT, F.DST_PORT, F.LENGTH, F.CHECKSUM].map((at) => read16(HELLO, at))).toEqual([
      1024, 53, 13, 0x5177,
    ]);
    expect(parseUdp(HELLO, 0, HELLO.length, SRC, DST)).toEqual({
      ok: true,
      value: { srcPort: 1024, dstPort: 53, hasChecksum: true, payload: new TextEncoder().encode('hello') },
    });
    expect(
      emitted({ srcPort: 1024, dstPort: 53, hasChecksum: true, payload: new TextEncoder().encode('hello') }),
    ).toEqual(HELLO);
  });

  it('names the reason for each malformed datagram', () => {
    const cases: [string, (b: Uint8Array) => Uint8Array, WireError][] = [
      ['7 octets', (b) => b.subarray(0, 7), 'truncated'],
      ['length 7', (b) => ((b[5] = 7), b), 'bad-length'],
      ['length past the octets', (b) => ((b[5] = 14), b), 'truncated'],
      ['checksum off by one', (b) => ((b[7] = b[7]! ^ 1), b), 'bad-checksum'],
    ];
    for (const [name, breakIt, reason] of cases) {
      const b = breakIt(HELLO.slice());
      expect(parseUdp(b, 0, b.length, SRC, DST), name).toEqual({ ok: false, reason });
      expect(new UdpView(b).check(SRC, DST), name).toBe(reason);
    }
  });

  it('does not verify a zero checksum, and ignores octets past the UDP length', () => {
    const b = new Uint8Array(20);
    b.set(HELLO);
    b[6] = 0;
    b[7] = 0;
    const p = parseUdp(b, 0, b.length, SRC, DST);
    expect(p.ok && [p.value.hasChecksum, p.value.payload.length]).toEqual([false, 5]);
    expect(new UdpView(b).payloadLength).toBe(5);
  });
});

describe('UDP parse and emit', () => {
  it('parse(emit(x)) deep-equals x with a verified checksum, and emits 0x0000 only for no checksum', () => {
    fc.assert(
      fc.property(arbUdpHeader, u32, u32, (h, src, dst) => {
        const b = emitted(h, src, dst);
        expect(parseUdp(b, 0, b.length, src, dst)).toEqual({ ok: true, value: h });
        expect(new UdpView(b).checksum === 0).toBe(!h.hasChecksum);
      }),
      fcOpts,
    );
  });

  it('sends a checksum that computes to 0x0000 as 0xFFFF', () => {
    // Find the 2-octet payload that makes the sum zero; there is exactly one.
    const h = (v: number): UdpHeader => ({
      srcPort: 4500,
      dstPort: 4500,
      hasChecksum: true,
      payload: Uint8Array.of(v >> 8, v),
    });
    const zero = emitted(h(0));
    const v = 0xffff - ((~computed(zero, SRC, DST) & 0xffff) % 0xffff);
    const b = emitted(h(v));
    expect(computed(b, SRC, DST)).toBe(0);
    expect(new UdpView(b).checksum).toBe(0xffff);
    expect(new UdpView(b).check(SRC, DST)).toBeNull();
  });

  it('survives 24,000 truncated, garbled and bit-flipped datagrams: a value or a reason, never a throw', () => {
    const reasons: WireError[] = ['truncated', 'bad-length', 'bad-checksum'];
    const seen = new Set<string>();
    const wrong: string[] = [];
    const rand = prng(SEED + 17);
    const view = new UdpView();
    const bases = fc.sample(arbUdpHeader, { seed: SEED, numRuns: 240 }).map((h) => emitted(h));
    for (const base of bases) {
      for (let k = 0; k < 100; k++) {
        const b = mutate(base, rand);
        const verify = k % 2 === 0;
        const p = verify ? parseUdp(b, 0, b.length, SRC, DST) : parseUdp(b, 0, b.length);
        const outcome = p.ok ? 'ok' : p.reason;
        seen.add(outcome);
        const viewOutcome = (verify ? view.wrap(b).check(SRC, DST) : view.wrap(b).check()) ?? 'ok';
        if (!p.ok && !reasons.includes(p.reason)) wrong.push(`unexpected ${p.reason}`);
        if (viewOutcome !== outcome) wrong.push(`view says ${viewOutcome}, parse ${outcome}`);
        if (p.ok) {
          const again = emitted(p.value);
          const p2 = parseUdp(again, 0, again.length, SRC, DST);
          if (!p2.ok || !sameBytes(emitted(p2.value), again)) wrong.push(`re-emit differs for ${toHex(b)}`);
        }
      }
    }
    expect(wrong).toEqual([]);
    expect([...seen].sort()).toEqual(['ok', ...reasons].sort());
  });
});

describe('port translation keeps the checksum right incrementally', () => {
  it('equals the wire checksum recomputed, and leaves an absent checksum absent', () => {
    fc.assert(
      fc.property(arbUdpHeader, u32, u32, u16, u16, (h, src, dst, sport, dport) => {
        const b = emitted(h, src, dst);
        const v = new UdpView(b);
        v.setSrcPort(sport);
        v.setDstPort(dport);
        expect([v.srcPort, v.dstPort]).toEqual([sport, dport]);
        if (!h.hasChecksum) expect(v.checksum).toBe(0);
        else expect(v.checksum).toBe(computed(b, src, dst) || 0xffff);
        expect(v.check(src, dst)).toBeNull();
      }),
      fcOpts,
    );
  });

  it('translating into a datagram whose checksum computes to zero gives 0xFFFF, and back', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), u32, u32, u16, (payload, src, dst, sport) => {
        const b = emitted({ srcPort: sport, dstPort: 53, hasChecksum: true, payload }, src, dst);
        const v = new UdpView(b);
        // The destination port that makes the checksum compute to zero.
        const rest = ~computed(b, src, dst) & 0xffff;
        const restWithoutPort = (rest - 53 + 0xffff) % 0xffff || 0xffff;
        const zeroing = 0xffff - restWithoutPort;
        v.setDstPort(zeroing);
        expect(computed(b, src, dst)).toBe(0);
        expect(v.checksum).toBe(0xffff);
        v.setDstPort(53);
        expect(v.checksum).toBe(computed(b, src, dst) || 0xffff);
        expect(v.check(src, dst)).toBeNull();
      }),
      fcOpts,
    );
  });

  it('fillChecksum never writes 0x0000', () => {
    const b = HELLO.slice();
    const v = new UdpView(b);
    v.setChecksum(0);
    v.fillChecksum(SRC, DST);
    expect(v.checksum).toBe(0x5177);
  });
});
