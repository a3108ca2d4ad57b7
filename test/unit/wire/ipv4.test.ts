import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { u16, u32 as u32at } from '../../../src/wire/bytes.ts';
import { internetChecksum } from '../../../src/wire/checksum.ts';
import {
  checkIpv4,
  emitIpv4,
  Ipv4Field,
  Ipv4FragmentWord,
  Ipv4Flag,
  ipv4Dst,
  ipv4FragmentOffset,
  ipv4FromString,
  ipv4HeaderLength,
  ipv4HeaderLengthAt,
  ipv4MoreFragments,
  ipv4Protocol,
  ipv4Src,
  ipv4TotalLength,
  Ipv4View,
  ipv4ToString,
  parseIpv4,
  type Ipv4Header,
} from '../../../src/wire/ipv4.ts';
import type { WireError } from '../../../src/wire/result.ts';
import { arbIpv4Header, fromHex, mutate, prng, sameBytes, SEED, toHex, u32 } from './ip-arbitraries.ts';

const fcOpts = { seed: SEED, numRuns: 300 };

function emitted(h: Ipv4Header): Uint8Array {
  const b = new Uint8Array(ipv4HeaderLength(h) + h.payloadLength);
  emitIpv4(h, b, 0);
  return b;
}

// A TCP SYN from 198.51.100.30 to 203.0.113.3 as scapy builds it, header only plus 20 octets.
const SYN = fromHex(
  '4500002c1c4640004006b830c633641ecb007103' + '9c4001bb12345678000000006002faf030380000' + '020405b4',
);

describe('IPv4 header fields', () => {
  it('reads a known header in place and as plain values', () => {
    const v = new Ipv4View().wrap(SYN);
    expect(v.check()).toBeNull();
    expect([v.version, v.headerLength, v.tos, v.totalLength, v.identification]).toEqual([
      4, 20, 0, 44, 0x1c46,
    ]);
    expect([v.flags, v.dontFragment, v.moreFragments, v.fragmentOffset, v.isFragment]).toEqual([
      2,
      true,
      false,
      0,
      false,
    ]);
    expect([v.ttl, v.protocol, v.checksum]).toEqual([64, 6, 0xb830]);
    expect([ipv4ToString(v.src), ipv4ToString(v.dst)]).toEqual(['198.51.100.30', '203.0.113.3']);
    expect([v.payloadOffset, v.payloadLength]).toEqual([20, 24]);
    const p = parseIpv4(SYN, 0, SYN.length);
    expect(p).toEqual({
      ok: true,
      value: {
        tos: 0,
        identification: 0x1c46,
        flags: Ipv4Flag.DF,
        fragmentOffset: 0,
        ttl: 64,
        protocol: 6,
        src: 0xc633641e,
        dst: 0xcb007103,
        options: [],
        payloadLength: 24,
      },
    });
  });

  it('splits TOS into DSCP and ECN and flags into DF and MF', () => {
    const b = SYN.slice();
    b[1] = (46 << 2) | 3;
    b[6] = 0x20 | 0x1f;
    b[7] = 0xff;
    const v = new Ipv4View(b);
    expect([v.dscp, v.ecn, v.dontFragment, v.moreFragments, v.fragmentOffset, v.isFragment]).toEqual([
      46,
      3,
      false,
      true,
      0x1fff,
      true,
    ]);
  });

  it('names the reason for each malformed header', () => {
    const cases: [string, (b: Uint8Array) => Uint8Array, WireError][] = [
      ['19 octets', (b) => b.subarray(0, 19), 'truncated'],
      ['version 6', (b) => ((b[0] = 0x65), b), 'bad-version'],
      ['IHL 4', (b) => ((b[0] = 0x44), b), 'bad-ihl'],
      ['IHL past the bytes', (b) => ((b[0] = 0x4f), b), 'bad-ihl'],
      ['total length 19', (b) => ((b[2] = 0), (b[3] = 19), b), 'bad-total-length'],
      ['total length past the bytes', (b) => b.subarray(0, 43), 'bad-total-length'],
      ['checksum off by one', (b) => ((b[11] = b[11]! ^ 1), b), 'bad-checksum'],
    ];
    for (const [name, breakIt, reason] of cases) {
      const b = breakIt(SYN.slice());
      expect(parseIpv4(b, 0, b.length), name).toEqual({ ok: false, reason });
      expect(new Ipv4View(b).check(), name).toBe(reason);
    }
  });

  it('skips checksum verification when asked (the hot path after the kernel checked)', () => {
    const b = SYN.slice();
    b[10] = 0;
    expect(new Ipv4View(b).check(false)).toBeNull();
    expect(parseIpv4(b, 0, b.length, false).ok).toBe(true);
  });

  it('works at an offset inside a larger buffer and ignores link padding after the total length', () => {
    const b = new Uint8Array(100).fill(0xee);
    b.set(SYN, 30);
    expect(checkIpv4(b, 30, 70)).toBeNull();
    expect(new Ipv4View(b, 30, 70).payloadOffset).toBe(50);
    expect(checkIpv4(b, 30, 71)).toBe('truncated');
    expect(checkIpv4(b, -1, 50)).toBe('truncated');
  });
});

/** A header with the given option bytes after the fixed 20, total length = header. */
function withOptions(opts: number[]): Uint8Array {
  const hl = 20 + opts.length;
  const b = new Uint8Array(hl);
  b.set(SYN.subarray(0, 20));
  b[0] = 0x40 | (hl >> 2);
  b[2] = 0;
  b[3] = hl;
  b.set(opts, 20);
  b[10] = 0;
  b[11] = 0;
  const c = internetChecksum(b, 0, hl);
  b[10] = c >> 8;
  b[11] = c & 0xff;
  return b;
}

describe('IPv4 field offsets and readers', () => {
  it("name where scapy's SYN keeps each field", () => {
    const F = Ipv4Field;
    const W = Ipv4FragmentWord;
    expect([SYN[F.VERSION_IHL], SYN[F.TOS], u16(SYN, F.TOTAL_LENGTH), u16(SYN, F.IDENTIFICATION)]).toEqual([
      0x45, 0, 44, 0x1c46,
    ]);
    const word = u16(SYN, F.FLAGS_FRAGMENT);
    expect([word & W.DF, word & W.MF, word & W.OFFSET, word & W.FRAGMENT]).toEqual([W.DF, 0, 0, 0]);
    expect([SYN[F.TTL], SYN[F.PROTOCOL], u16(SYN, F.CHECKSUM), F.OPTIONS]).toEqual([64, 6, 0xb830, 20]);
    expect([ipv4ToString(u32at(SYN, F.SRC)), ipv4ToString(u32at(SYN, F.DST))]).toEqual([
      '198.51.100.30',
      '203.0.113.3',
    ]);
  });

  /** Every reader at `off`. */
  const readAll = (b: Uint8Array, off: number): unknown[] => [
    ipv4HeaderLengthAt(b, off),
    ipv4TotalLength(b, off),
    ipv4MoreFragments(b, off),
    ipv4FragmentOffset(b, off),
    ipv4Protocol(b, off),
    ipv4Src(b, off),
    ipv4Dst(b, off),
  ];

  it("read scapy's SYN at an offset inside a larger buffer", () => {
    const b = new Uint8Array(7 + SYN.length + 5).fill(0xa5);
    b.set(SYN, 7);
    expect(readAll(b, 7)).toEqual([20, 44, false, 0, 6, 0xc633641e, 0xcb007103]);
  });

  it('agree with the parser on every header, fragments and options included', () => {
    fc.assert(
      fc.property(arbIpv4Header(), fc.nat(40), (h, off) => {
        const e = emitted(h);
        const b = new Uint8Array(off + e.length);
        b.set(e, off);
        expect(readAll(b, off)).toEqual([
          ipv4HeaderLength(h),
          ipv4HeaderLength(h) + h.payloadLength,
          (h.flags & Ipv4Flag.MF) !== 0,
          h.fragmentOffset,
          h.protocol,
          h.src,
          h.dst,
        ]);
      }),
      fcOpts,
    );
  });
});

describe('IPv4 options', () => {
  it('decodes record route, NOP and EOL, and stops at EOL', () => {
    const b = withOptions([7, 7, 4, 10, 0, 0, 7, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    const p = parseIpv4(b, 0, b.length);
    expect(p.ok && p.value.options).toEqual([
      { type: 7, data: Uint8Array.of(4, 10, 0, 0, 7) },
      { type: 1, data: new Uint8Array(0) },
      { type: 0, data: new Uint8Array(0) },
      // EOL + 8 octets would shrink to 12 on emit; the extra EOLs keep the header at 16.
      { type: 0, data: new Uint8Array(0) },
      { type: 0, data: new Uint8Array(0) },
      { type: 0, data: new Uint8Array(0) },
      { type: 0, data: new Uint8Array(0) },
    ]);
    expect(p.ok && emitted(p.value)).toEqual(b);
  });

  it('ignores non-zero octets after EOL, as Linux does, and emits them as zero', () => {
    const b = withOptions([1, 0, 0xaa, 0xbb]);
    const p = parseIpv4(b, 0, b.length);
    expect(p.ok && p.value.options.map((o) => o.type)).toEqual([1, 0]);
    expect(p.ok && emitted(p.value)).toEqual(withOptions([1, 0, 0, 0]));
  });

  it('rejects a TLV with length below 2, past the header, or cut after its type', () => {
    for (const opts of [
      [68, 1, 0, 0],
      [68, 0, 0, 0],
      [7, 5, 4, 0],
      [1, 1, 1, 7],
    ]) {
      const b = withOptions(opts);
      expect(parseIpv4(b, 0, b.length), String(opts)).toEqual({ ok: false, reason: 'bad-option' });
      expect(new Ipv4View(b).check(false), String(opts)).toBe('bad-option');
    }
  });

  it('refuses to emit options past 40 octets', () => {
    const h = { ...parseValue(SYN), options: [{ type: 7, data: new Uint8Array(39) }] };
    expect(() => emitIpv4(h, new Uint8Array(100), 0)).toThrow(RangeError);
    expect(() => emitIpv4(parseValue(SYN), new Uint8Array(19), 0)).toThrow(RangeError);
  });
});

function parseValue(b: Uint8Array): Ipv4Header {
  const p = parseIpv4(b, 0, b.length);
  if (!p.ok) throw new Error(p.reason);
  return p.value;
}

describe('Ipv4View setters keep the header checksum right incrementally', () => {
  it('TTL, source and destination', () => {
    fc.assert(
      fc.property(arbIpv4Header(), fc.nat(255), u32, u32, (h, ttl, src, dst) => {
        const b = emitted(h);
        const v = new Ipv4View(b);
        v.setTtl(ttl);
        v.setSrc(src);
        v.setDst(dst);
        expect([v.ttl, v.src, v.dst]).toEqual([ttl, src, dst]);
        expect(v.check()).toBeNull();
        const incremental = v.checksum;
        v.fillChecksum();
        expect(incremental).toBe(v.checksum);
      }),
      fcOpts,
    );
  });
});

describe('IPv4 parse and emit', () => {
  it('parse(emit(x)) deep-equals x, and the view reads the same values', () => {
    fc.assert(
      fc.property(arbIpv4Header(), (h) => {
        const b = emitted(h);
        expect(parseIpv4(b, 0, b.length)).toEqual({ ok: true, value: h });
        const v = new Ipv4View(b);
        expect(v.check()).toBeNull();
        expect([v.tos, v.identification, v.flags, v.fragmentOffset, v.ttl, v.protocol, v.src, v.dst]).toEqual(
          [h.tos, h.identification, h.flags, h.fragmentOffset, h.ttl, h.protocol, h.src, h.dst],
        );
        expect(v.payloadLength).toBe(h.payloadLength);
      }),
      fcOpts,
    );
  });

  it('survives 24,000 truncated, garbled and bit-flipped headers: a value or a reason, never a throw', () => {
    const reasons: WireError[] = [
      'truncated',
      'bad-version',
      'bad-ihl',
      'bad-total-length',
      'bad-checksum',
      'bad-option',
    ];
    const seen = new Set<string>();
    const wrong: string[] = [];
    const rand = prng(SEED);
    const view = new Ipv4View();
    const bases = fc
      .sample(arbIpv4Header({ payloadLength: fc.nat(64) }), { seed: SEED, numRuns: 240 })
      .map(emitted);
    for (const base of bases) {
      for (let k = 0; k < 100; k++) {
        const b = mutate(base, rand);
        const verify = k % 2 === 0;
        const p = parseIpv4(b, 0, b.length, verify);
        const outcome = p.ok ? 'ok' : p.reason;
        seen.add(outcome);
        const viewOutcome = view.wrap(b).check(verify) ?? 'ok';
        if (!p.ok && !reasons.includes(p.reason)) wrong.push(`unexpected ${p.reason}`);
        if (viewOutcome !== outcome) wrong.push(`view says ${viewOutcome}, parse ${outcome}`);
        if (p.ok) {
          // Emit is a fixed point after one parse: bytes -> value -> bytes -> value -> same bytes.
          const again = emitted(p.value);
          const p2 = parseIpv4(again, 0, again.length);
          if (!p2.ok || !sameBytes(emitted(p2.value), again)) wrong.push(`re-emit differs for ${toHex(b)}`);
        }
      }
    }
    expect(wrong).toEqual([]);
    // The mutations reach every rejection and still leave some headers intact.
    expect([...seen].sort()).toEqual(['ok', ...reasons].sort());
  });
});

describe('IPv4 address text', () => {
  it('round-trips every address', () => {
    fc.assert(
      fc.property(u32, (a) => {
        expect(ipv4FromString(ipv4ToString(a))).toBe(a);
      }),
      fcOpts,
    );
    expect(ipv4FromString('198.51.100.30')).toBe(0xc633641e);
    expect(ipv4ToString(0xffffffff)).toBe('255.255.255.255');
  });

  it('refuses anything but four plain decimal octets', () => {
    for (const s of [
      '',
      '1.2.3',
      '1.2.3.4.5',
      '256.0.0.1',
      '010.0.0.1',
      ' 1.2.3.4',
      '1.2.3.4 ',
      '0x1.2.3.4',
      '1..3.4',
    ]) {
      expect(ipv4FromString(s), s).toBeUndefined();
    }
  });
});
