import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { WireError } from '../../../src/wire/result.ts';
import { u16 as read16, u32 as read32 } from '../../../src/wire/bytes.ts';
import { PortField } from '../../../src/wire/ports.ts';
import type { TcpOption } from '../../../src/wire/tcp-options.ts';
import {
  clampTcpMss,
  emitTcp,
  findTcpMss,
  parseTcp,
  readTcpMss,
  rewriteTcpMss,
  TcpField,
  TcpFlag,
  tcpHeaderLength,
  TcpView,
  type TcpHeader,
} from '../../../src/wire/tcp.ts';
import {
  arbTcpHeader,
  arbTcpOption,
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
const SRC = 0xc633641e; // 198.51.100.30
const DST = 0xcb007103; // 203.0.113.3

// The TCP part of a SYN from 198.51.100.30:40000 to 203.0.113.3:443, as scapy builds it.
const SYN = fromHex('9c4001bb12345678000000006002faf030380000020405b4');

function emitted(h: TcpHeader, src = SRC, dst = DST): Uint8Array {
  const b = new Uint8Array(tcpHeaderLength(h) + h.payload.length);
  emitTcp(h, b, 0, src, dst);
  return b;
}

function fullChecksum(b: Uint8Array, src: number, dst: number): number {
  const v = new TcpView(b.slice());
  v.fillChecksum(src, dst);
  return v.checksum;
}

describe('TCP header fields', () => {
  it('reads a known SYN in place and as plain values', () => {
    const v = new TcpView(SYN);
    expect(v.check(SRC, DST)).toBeNull();
    expect([v.srcPort, v.dstPort, v.seq, v.ack, v.headerLength, v.reserved]).toEqual([
      40000, 443, 0x12345678, 0, 24, 0,
    ]);
    expect([v.flags, v.hasFlags(TcpFlag.SYN), v.hasFlags(TcpFlag.SYN | TcpFlag.ACK), v.window]).toEqual([
      2,
      true,
      false,
      0xfaf0,
    ]);
    expect([v.checksum, v.urgentPointer, v.payloadOffset, v.payloadLength, v.mss]).toEqual([
      0x3038, 0, 24, 0, 1460,
    ]);
    expect(parseTcp(SYN, 0, SYN.length, SRC, DST)).toEqual({
      ok: true,
      value: {
        srcPort: 40000,
        dstPort: 443,
        seq: 0x12345678,
        ack: 0,
        reserved: 0,
        flags: TcpFlag.SYN,
        window: 0xfaf0,
        urgentPointer: 0,
        options: [{ kind: 'mss', mss: 1460 }],
        payload: new Uint8Array(0),
      },
    });
  });

  it('names the reason for each malformed segment', () => {
    const cases: [string, (b: Uint8Array) => Uint8Array, WireError][] = [
      ['19 octets', (b) => b.subarray(0, 19), 'truncated'],
      ['data offset 4', (b) => ((b[12] = 0x40), b), 'bad-data-offset'],
      ['data offset past the segment', (b) => ((b[12] = 0x70), b), 'bad-data-offset'],
      ['option length 1', (b) => ((b[21] = 1), b), 'bad-option'],
      ['option length past the header', (b) => ((b[21] = 5), b), 'bad-option'],
      ['checksum off by one', (b) => ((b[17] = b[17]! ^ 1), b), 'bad-checksum'],
    ];
    for (const [name, breakIt, reason] of cases) {
      const b = breakIt(SYN.slice());
      // Option errors are structural; verify the checksum only where it is the point.
      const verify = reason === 'bad-checksum';
      const p = verify ? parseTcp(b, 0, b.length, SRC, DST) : parseTcp(b, 0, b.length);
      expect(p, name).toEqual({ ok: false, reason });
      expect(verify ? new TcpView(b).check(SRC, DST) : new TcpView(b).check(), name).toBe(reason);
    }
  });

  it('verifies the checksum only when given the pseudo-header addresses', () => {
    expect(new TcpView(SYN).check(SRC, DST + 1)).toBe('bad-checksum');
    expect(new TcpView(SYN).check()).toBeNull();
  });
});

describe('TCP field offsets', () => {
  it("name where scapy's SYN keeps each field", () => {
    const F = TcpField;
    expect([read16(SYN, PortField.SRC_PORT), read16(SYN, PortField.DST_PORT)]).toEqual([40000, 443]);
    expect([F.SRC_PORT, F.DST_PORT]).toEqual([PortField.SRC_PORT, PortField.DST_PORT]);
    expect([read32(SYN, F.SEQ), read32(SYN, F.ACK), SYN[F.DATA_OFFSET]! >> 4, SYN[F.FLAGS]]).toEqual([
      0x12345678,
      0,
      6,
      TcpFlag.SYN,
    ]);
    expect([
      read16(SYN, F.WINDOW),
      read16(SYN, F.CHECKSUM),
      read16(SYN, F.URGENT_POINTER),
      SYN[F.OPTIONS],
    ]).toEqual([0xfaf0, 0x3038, 0, 2]);
  });
});

describe('TCP options', () => {
  const decode = (opts: number[]): TcpOption[] | WireError => {
    const b = new Uint8Array(20 + opts.length);
    b.set(SYN.subarray(0, 20));
    b[12] = ((20 + opts.length) / 4) << 4;
    b.set(opts, 20);
    const p = parseTcp(b, 0, b.length);
    return p.ok ? [...p.value.options] : p.reason;
  };

  it('decodes every known kind', () => {
    expect(
      decode([
        1, 3, 3, 14, 4, 2, 8, 10, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 5, 10, 0, 0, 0, 9, 0, 0, 0, 10, 0, 0,
      ]),
    ).toEqual([
      { kind: 'nop' },
      { kind: 'window-scale', shift: 14 },
      { kind: 'sack-permitted' },
      { kind: 'timestamps', tsVal: 1, tsEcr: 0xffffffff },
      { kind: 'sack', blocks: [{ left: 9, right: 10 }] },
      { kind: 'eol' },
    ]);
  });

  it('keeps unknown kinds and known kinds of the wrong length as raw bytes', () => {
    expect(decode([2, 3, 7, 3, 2, 4, 3, 1, 5, 6, 1, 2, 3, 4, 30, 2])).toEqual([
      { kind: 'raw', type: 2, data: Uint8Array.of(7) },
      { kind: 'raw', type: 3, data: new Uint8Array(0) },
      { kind: 'raw', type: 4, data: Uint8Array.of(1) },
      { kind: 'raw', type: 5, data: Uint8Array.of(1, 2, 3, 4) },
      { kind: 'raw', type: 30, data: new Uint8Array(0) },
    ]);
  });

  it('refuses to emit options past 40 octets', () => {
    const h: TcpHeader = {
      ...value(SYN),
      options: Array<TcpOption>(5).fill({ kind: 'timestamps', tsVal: 0, tsEcr: 0 }),
    };
    expect(() => emitTcp(h, new Uint8Array(200), 0, SRC, DST)).toThrow(RangeError);
  });
});

function value(b: Uint8Array): TcpHeader {
  const p = parseTcp(b, 0, b.length);
  if (!p.ok) throw new Error(p.reason);
  return p.value;
}

describe('TCP parse and emit', () => {
  it('parse(emit(x)) deep-equals x with a verified checksum', () => {
    fc.assert(
      fc.property(arbTcpHeader, u32, u32, (h, src, dst) => {
        const b = emitted(h, src, dst);
        expect(parseTcp(b, 0, b.length, src, dst)).toEqual({ ok: true, value: h });
      }),
      fcOpts,
    );
  });

  it('emits a payload that already sits in place without copying it over itself', () => {
    const b = emitted({ ...value(SYN), payload: Uint8Array.of(1, 2, 3) });
    const h = value(b);
    expect(h.payload.buffer).toBe(b.buffer);
    expect(emitTcp(h, b, 0, SRC, DST)).toBe(b.length);
    expect(parseTcp(b, 0, b.length, SRC, DST)).toEqual({ ok: true, value: h });
  });

  it('survives 24,000 truncated, garbled and bit-flipped segments: a value or a reason, never a throw', () => {
    const reasons: WireError[] = ['truncated', 'bad-data-offset', 'bad-checksum', 'bad-option'];
    const seen = new Set<string>();
    const wrong: string[] = [];
    const rand = prng(SEED + 6);
    const view = new TcpView();
    const bases = fc.sample(arbTcpHeader, { seed: SEED, numRuns: 240 }).map((h) => emitted(h));
    for (const base of bases) {
      for (let k = 0; k < 100; k++) {
        const b = mutate(base, rand);
        const verify = k % 2 === 0;
        const p = verify ? parseTcp(b, 0, b.length, SRC, DST) : parseTcp(b, 0, b.length);
        const outcome = p.ok ? 'ok' : p.reason;
        seen.add(outcome);
        const viewOutcome = (verify ? view.wrap(b).check(SRC, DST) : view.wrap(b).check()) ?? 'ok';
        if (!p.ok && !reasons.includes(p.reason)) wrong.push(`unexpected ${p.reason}`);
        if (viewOutcome !== outcome) wrong.push(`view says ${viewOutcome}, parse ${outcome}`);
        clampTcpMss(b.slice(), 0, 536);
        if (p.ok) {
          // Emit is a fixed point after one parse: bytes -> value -> bytes -> value -> same bytes.
          const again = emitted(p.value);
          const p2 = parseTcp(again, 0, again.length, SRC, DST);
          if (!p2.ok || !sameBytes(emitted(p2.value), again)) wrong.push(`re-emit differs for ${toHex(b)}`);
        }
      }
    }
    expect(wrong).toEqual([]);
    expect([...seen].sort()).toEqual(['ok', ...reasons].sort());
  });
});

describe('port translation keeps the checksum right incrementally', () => {
  it('source and destination port', () => {
    fc.assert(
      fc.property(arbTcpHeader, u32, u32, u16, u16, (h, src, dst, sport, dport) => {
        const b = emitted(h, src, dst);
        const v = new TcpView(b);
        v.setSrcPort(sport);
        v.setDstPort(dport);
        expect([v.srcPort, v.dstPort]).toEqual([sport, dport]);
        expect(v.checksum).toBe(fullChecksum(b, src, dst));
        expect(v.check(src, dst)).toBeNull();
      }),
      fcOpts,
    );
  });
});

describe('MSS clamping in place', () => {
  // An MSS option after 0..3 NOPs, so its value lands at every alignment.
  const arbSyn = fc
    .tuple(arbTcpHeader, fc.nat(3), u16, fc.array(arbTcpOption, { maxLength: 2 }))
    .map(([h, nops, mss, rest]) => {
      const options: TcpOption[] = [...Array<TcpOption>(nops).fill({ kind: 'nop' }), { kind: 'mss', mss }];
      for (const o of rest) if (tcpHeaderLength({ ...h, options: [...options, o] }) <= 60) options.push(o);
      return { ...h, options };
    });

  it('reads, rewrites and clamps at any alignment with a checksum equal to full recomputation', () => {
    fc.assert(
      fc.property(arbSyn, u32, u32, u16, (h, src, dst, max) => {
        const b = emitted(h, src, dst);
        const mss = (h.options.find((o) => o.kind === 'mss') as { mss: number }).mss;
        expect(readTcpMss(b, 0)).toBe(mss);
        expect(clampTcpMss(b, 0, max)).toBe(mss > max);
        expect(readTcpMss(b, 0)).toBe(Math.min(mss, max));
        expect(new TcpView(b).checksum).toBe(fullChecksum(b, src, dst));
        expect(rewriteTcpMss(b, 0, max ^ 0x5a5a)).toBe(true);
        expect(readTcpMss(b, 0)).toBe(max ^ 0x5a5a);
        expect(new TcpView(b).check(src, dst)).toBeNull();
      }),
      fcOpts,
    );
  });

  it('reports a segment without MSS, or with a malformed list, as having none', () => {
    const noMss = emitted({ ...value(SYN), options: [{ kind: 'nop' }, { kind: 'window-scale', shift: 7 }] });
    expect([findTcpMss(noMss, 0), readTcpMss(noMss, 0), clampTcpMss(noMss, 0, 1)]).toEqual([-1, -1, false]);
    const broken = SYN.slice();
    broken[21] = 9;
    expect(findTcpMss(broken, 0)).toBe(-1);
    expect(findTcpMss(SYN, 10)).toBe(-1);
    const wrongLength = emitted({
      ...value(SYN),
      options: [{ kind: 'raw', type: 2, data: Uint8Array.of(5, 0xb4, 0) }],
    });
    expect(readTcpMss(wrongLength, 0)).toBe(-1);
  });
});
