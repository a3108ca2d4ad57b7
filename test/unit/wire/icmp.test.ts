import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { u16 as read16 } from '../../../src/wire/bytes.ts';
import { internetChecksum } from '../../../src/wire/checksum.ts';
import {
  checkIcmp,
  emitIcmp,
  IcmpField,
  IcmpType,
  IcmpView,
  icmpLength,
  isIcmpErrorType,
  isIcmpQueryType,
  parseIcmp,
  type IcmpMessage,
} from '../../../src/wire/icmp.ts';
import { QuotedIpv4View } from '../../../src/wire/icmp-quoted.ts';
import type { WireError } from '../../../src/wire/result.ts';
import { guarded, mulberry32 } from './hostile.ts';

interface Case {
  name: string;
  hex: string;
  icmp_offset: number;
  icmp_length: number;
  fields: Record<string, number | string>;
  data?: string;
  quoted?: Record<string, number | string>;
}
const golden = JSON.parse(
  readFileSync(new URL('../../fixtures/golden/icmp.json', import.meta.url), 'utf8'),
) as {
  cases: Case[];
};

const bytes = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex, 'hex'));
const addr = (dotted: string): number => dotted.split('.').reduce((a, o) => a * 256 + Number(o), 0);

/** The plain message scapy's field values describe, independently of parseIcmp. */
function fromScapy(c: Case, body: Uint8Array): IcmpMessage {
  const f = c.fields;
  const code = f.code as number;
  switch (f.type) {
    case 8:
    case 0:
      return {
        kind: f.type === 8 ? 'echo-request' : 'echo-reply',
        code,
        identifier: f.id as number,
        sequence: f.seq as number,
        data: body,
      };
    case 3:
      return {
        kind: 'destination-unreachable',
        code,
        originalLength: f.length as number,
        nextHopMtu: f.nexthopmtu as number,
        quoted: body,
      };
    case 11:
      return { kind: 'time-exceeded', code, originalLength: f.length as number, quoted: body };
    case 12:
      return {
        kind: 'parameter-problem',
        code,
        pointer: f.ptr as number,
        originalLength: f.length as number,
        quoted: body,
      };
    case 4:
      return { kind: 'source-quench', code, quoted: body };
    case 5:
      return { kind: 'redirect', code, gateway: addr(f.gw as string), quoted: body };
    default:
      // scapy splits the second word of a timestamp message into id and seq
      return {
        kind: 'other',
        type: f.type as number,
        code,
        restOfHeader: (((f.id as number) << 16) | (f.seq as number)) >>> 0,
        data: body,
      };
  }
}

describe('ICMP against scapy', () => {
  it('has the vectors the golden script promises', () => {
    const kinds = new Set(golden.cases.map((c) => c.fields.type));
    for (const t of [0, 3, 4, 5, 8, 11, 12, 13]) expect(kinds).toContain(t);
    for (const o of ['tcp', 'udp', 'icmp', 'esp', 'ah']) {
      expect(golden.cases.filter((c) => c.name.endsWith(`/${o}`)).length).toBe(10);
    }
  });

  for (const c of golden.cases) {
    it(`${c.name}: parses to scapy's fields and emits the same bytes`, () => {
      const pkt = bytes(c.hex);
      const wire = pkt.subarray(c.icmp_offset, c.icmp_offset + c.icmp_length);
      const view = new IcmpView().wrap(pkt, c.icmp_offset, c.icmp_length);
      expect(view.check()).toBeNull();
      expect(view.type).toBe(c.fields.type);
      expect(view.code).toBe(c.fields.code);
      expect(view.checksum).toBe(c.fields.chksum);
      expect(view.isError).toBe(c.quoted !== undefined);
      const at = (field: number): number => c.icmp_offset + field;
      expect([pkt[at(IcmpField.TYPE)], pkt[at(IcmpField.CODE)], read16(pkt, at(IcmpField.CHECKSUM))]).toEqual(
        [c.fields.type, c.fields.code, c.fields.chksum],
      );
      if (isIcmpQueryType(c.fields.type as number))
        expect(read16(pkt, at(IcmpField.IDENTIFIER))).toBe(c.fields.id);

      const parsed = parseIcmp(pkt, c.icmp_offset, c.icmp_length);
      expect(parsed.ok).toBe(true);
      if (!parsed.ok) return;
      const expected = fromScapy(c, wire.subarray(8));
      expect(parsed.value).toEqual(expected);
      if (c.data !== undefined) expect(Buffer.from(wire.subarray(8)).toString('hex')).toBe(c.data);

      const out = new Uint8Array(icmpLength(expected) + 5);
      expect(emitIcmp(expected, out, 5)).toBe(c.icmp_length);
      expect(out.subarray(5)).toEqual(wire);
    });

    if (c.quoted !== undefined) {
      const q = c.quoted;
      it(`${c.name}: the quoted header reads as scapy's`, () => {
        const pkt = bytes(c.hex);
        const icmp = new IcmpView(pkt, c.icmp_offset, c.icmp_length);
        expect(icmp.check()).toBeNull();
        expect(icmp.quotedOffset).toBe(c.icmp_offset + 8);
        const words = c.fields.length as number | undefined;
        expect(icmp.quotedLength).toBe(words ? words * 4 : c.icmp_length - 8);
        const v = new QuotedIpv4View().wrapQuoted(icmp);
        expect(v.check()).toBeNull();
        expect(v.headerLength).toBe((q.ihl as number) * 4);
        expect(v.totalLength).toBe(q.total_length);
        expect(v.identification).toBe(q.id);
        expect(v.protocol).toBe(q.protocol);
        expect(v.src).toBe(addr(q.src as string));
        expect(v.dst).toBe(addr(q.dst as string));
        expect(v.fragmentOffset).toBe(q.frag);
        expect(v.isFirstFragment).toBe(q.frag === 0);
        expect(v.transportOffset).toBe(icmp.quotedOffset + (q.ihl as number) * 4);
        expect(v.transportLength).toBeGreaterThanOrEqual(8);
        if (q.sport !== undefined) {
          expect(v.sourcePort).toBe(q.sport);
          expect(v.destinationPort).toBe(q.dport);
        }
        if (q.icmp_id !== undefined) {
          expect(v.icmpType).toBe(q.icmp_type);
          expect(v.icmpCode).toBe(q.icmp_code);
          expect(v.icmpIdentifier).toBe(q.icmp_id);
          expect(v.icmpSequence).toBe(q.icmp_seq);
        }
        if (q.protocol === 50) {
          expect(v.espSpi).toBe(q.spi);
          expect(v.espSequence).toBe(q.esp_seq);
        }
        if (q.protocol === 51) expect(v.ahSpi).toBe(q.spi);
      });
    }
  }

  it('reads the RFC 1191 next-hop MTU of a fragmentation-needed error', () => {
    const c = golden.cases.find((x) => x.name === 'frag-needed/udp')!;
    const v = new IcmpView(bytes(c.hex), c.icmp_offset, c.icmp_length);
    expect(v.nextHopMtu).toBe(1400);
  });
});

describe('ICMP rejects', () => {
  const echo = golden.cases.find((c) => c.name === 'echo-request')!;
  it('a message shorter than its 8-byte header', () => {
    const b = bytes(echo.hex).subarray(20, 27);
    expect(parseIcmp(b)).toEqual({ ok: false, reason: 'truncated' });
    expect(checkIcmp(b, 0, 8)).toBe('truncated');
    expect(checkIcmp(b, -1, 7)).toBe('truncated');
  });
  it('a flipped bit anywhere, by its checksum', () => {
    const b = bytes(echo.hex).subarray(20);
    for (let i = 0; i < b.length * 8; i++) {
      const m = b.slice();
      m[i >> 3]! ^= 1 << (i & 7);
      expect(parseIcmp(m)).toEqual({ ok: false, reason: 'bad-checksum' });
    }
  });
  it('but skips the checksum when asked (a caller that already verified)', () => {
    const b = bytes(echo.hex).subarray(20).slice();
    b[2]! ^= 0xff;
    expect(checkIcmp(b, 0, b.length, false)).toBeNull();
  });
  it('a quoted header that is not IPv4, has a bad IHL or lacks 8 transport bytes', () => {
    const c = golden.cases.find((x) => x.name === 'port-unreachable/udp')!;
    const pkt = bytes(c.hex);
    const q = c.icmp_offset + 8;
    const view = (p: Uint8Array, len = p.length - q) => new QuotedIpv4View().wrap(p, q, len).check();
    expect(view(pkt)).toBeNull();
    expect(view(pkt, 27)).toBe('truncated');
    expect(view(pkt, 19)).toBe('truncated');
    let m = pkt.slice();
    m[q] = 0x65;
    expect(view(m)).toBe('bad-version');
    m = pkt.slice();
    m[q] = 0x44;
    expect(view(m)).toBe('bad-ihl');
    m = pkt.slice();
    m[q] = 0x48; // a 32-byte header in a 28-byte quote
    expect(view(m)).toBe('bad-ihl');
    m = pkt.slice();
    m[q] = 0x46; // 24-byte header + 4 bytes of transport
    expect(view(m)).toBe('truncated');
    m = pkt.slice();
    m[q + 2] = 0;
    m[q + 3] = 19;
    expect(view(m)).toBe('bad-total-length');
  });
  it('ignores an RFC 4884 length that does not fit the message', () => {
    const c = golden.cases.find((x) => x.name === 'ttl-exceeded/udp')!;
    const m = bytes(c.hex).subarray(c.icmp_offset).slice();
    m[5] = 200;
    const v = new IcmpView(m);
    expect(v.originalLength).toBe(200);
    expect(v.quotedLength).toBe(m.length - 8);
  });
});

describe('ICMP types', () => {
  it('classifies exactly the RFC 792 errors as errors', () => {
    const errors = [3, 4, 5, 11, 12];
    for (let t = 0; t < 256; t++) expect(isIcmpErrorType(t)).toBe(errors.includes(t));
  });
  it('classifies echo and timestamp, requests and replies, as queries with an identifier', () => {
    const queries = [0, 8, 13, 14];
    for (let t = 0; t < 256; t++) expect(isIcmpQueryType(t)).toBe(queries.includes(t));
  });
  it('keeps unknown types as values, with their second word', () => {
    const out = new Uint8Array(12);
    emitIcmp(
      { kind: 'other', type: 42, code: 7, restOfHeader: 0xdeadbeef, data: Uint8Array.of(1, 2, 3, 4) },
      out,
    );
    expect(parseIcmp(out)).toEqual({
      ok: true,
      value: { kind: 'other', type: 42, code: 7, restOfHeader: 0xdeadbeef, data: Uint8Array.of(1, 2, 3, 4) },
    });
    expect(IcmpType.EchoRequest).toBe(8);
  });
  it('emits with a checksum that the RFC 1071 sum verifies', () => {
    const msg: IcmpMessage = {
      kind: 'echo-request',
      code: 0,
      identifier: 1,
      sequence: 2,
      data: Uint8Array.of(9),
    };
    const out = new Uint8Array(9);
    emitIcmp(msg, out);
    const zeroed = out.slice();
    zeroed[2] = zeroed[3] = 0;
    expect((out[2]! << 8) | out[3]!).toBe(internetChecksum(zeroed));
  });
  it('refuses to emit into a buffer that is too small', () => {
    const msg: IcmpMessage = { kind: 'source-quench', code: 0, quoted: new Uint8Array(28) };
    expect(() => emitIcmp(msg, new Uint8Array(35))).toThrow(RangeError);
    expect(() => emitIcmp(msg, new Uint8Array(40), 5)).toThrow(RangeError);
  });
});

const u8 = fc.integer({ min: 0, max: 255 });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const body = fc.uint8Array({ maxLength: 600 });
const message: fc.Arbitrary<IcmpMessage> = fc.oneof(
  fc.record({
    kind: fc.constantFrom('echo-request' as const, 'echo-reply' as const),
    code: u8,
    identifier: u16,
    sequence: u16,
    data: body,
  }),
  fc.record({
    kind: fc.constant('destination-unreachable' as const),
    code: u8,
    originalLength: u8,
    nextHopMtu: u16,
    quoted: body,
  }),
  fc.record({ kind: fc.constant('time-exceeded' as const), code: u8, originalLength: u8, quoted: body }),
  fc.record({
    kind: fc.constant('parameter-problem' as const),
    code: u8,
    pointer: u8,
    originalLength: u8,
    quoted: body,
  }),
  fc.record({ kind: fc.constant('source-quench' as const), code: u8, quoted: body }),
  fc.record({ kind: fc.constant('redirect' as const), code: u8, gateway: u32, quoted: body }),
  fc.record({
    kind: fc.constant('other' as const),
    type: u8.filter((t) => ![0, 3, 4, 5, 8, 11, 12].includes(t)),
    code: u8,
    restOfHeader: u32,
    data: body,
  }),
);

describe('ICMP properties', () => {
  it('parse(emit(x)) deep-equals x, at any offset', () => {
    fc.assert(
      fc.property(message, fc.nat(64), (msg, at) => {
        const buf = new Uint8Array(at + icmpLength(msg) + 3).fill(0xa5);
        const n = emitIcmp(msg, buf, at);
        expect(n).toBe(icmpLength(msg));
        expect(parseIcmp(buf, at, n)).toEqual({ ok: true, value: msg });
      }),
      { seed: 0x1c3, numRuns: 2000 },
    );
  });
});

/** Throws on any index read outside [lo, hi): proves accessors stay in bounds. */
/** Truncates, extends, flips, overwrites with boundary values; half the time fixes the checksum so deeper checks run. */
function mutate(rand: () => number, src: Uint8Array): Uint8Array {
  const int = (n: number) => Math.floor(rand() * n);
  let b = src.slice();
  const ops = 1 + int(4);
  for (let k = 0; k < ops; k++) {
    const op = int(6);
    if (op === 0) b = b.subarray(0, int(b.length + 1)).slice();
    else if (op === 1) {
      const e = new Uint8Array(b.length + 1 + int(40));
      e.set(b);
      for (let i = b.length; i < e.length; i++) e[i] = int(256);
      b = e;
    } else if (b.length > 0) {
      const i = int(b.length);
      if (op === 2) b[i]! ^= 1 << int(8);
      else if (op === 3) b[i] = [0, 1, 4, 5, 0x40, 0x45, 0x4f, 0x7f, 0x80, 0xff][int(10)]!;
      else if (op === 4) b[i] = int(256);
      else for (let j = i; j < Math.min(b.length, i + 1 + int(8)); j++) b[j] = int(256);
    }
  }
  if (b.length >= 4 && rand() < 0.5) {
    b[2] = b[3] = 0;
    const c = internetChecksum(b);
    b[2] = c >> 8;
    b[3] = c & 0xff;
  }
  return b;
}

describe('ICMP malformed input', () => {
  it('never throws on 25,000 mutated messages; fails only with its reasons; accessors stay in bounds', () => {
    const rand = mulberry32(20261122);
    const seeds = golden.cases.map((c) =>
      bytes(c.hex).subarray(c.icmp_offset, c.icmp_offset + c.icmp_length),
    );
    const icmpReasons: WireError[] = ['truncated', 'bad-checksum'];
    const quotedReasons: WireError[] = ['truncated', 'bad-version', 'bad-ihl', 'bad-total-length'];
    const seen = new Set<string>();
    let parsedOk = 0;
    const view = new IcmpView();
    const quoted = new QuotedIpv4View();
    for (let n = 0; n < 25_000; n++) {
      const m = mutate(rand, seeds[n % seeds.length]!);
      const pad = Math.floor(rand() * 4);
      const framed = new Uint8Array(m.length + 2 * pad).fill(0xee);
      framed.set(m, pad);
      const r = parseIcmp(framed, pad, m.length);
      if (r.ok) {
        parsedOk++;
        // Re-emitting keeps every field the representation holds.
        const again = new Uint8Array(icmpLength(r.value));
        emitIcmp(r.value, again);
        expect(parseIcmp(again)).toEqual(r);
      } else {
        expect(icmpReasons).toContain(r.reason);
        seen.add(r.reason);
      }
      const g = guarded(framed, pad, pad + m.length);
      if (view.wrap(g, pad, m.length).check(false) !== null) continue;
      void [view.type, view.code, view.checksum, view.restOfHeader, view.identifier, view.sequence];
      void [view.gateway, view.pointer, view.originalLength, view.nextHopMtu, view.quotedLength];
      const qg = guarded(framed, view.quotedOffset, view.quotedOffset + view.quotedLength);
      const qe = quoted.wrap(qg, view.quotedOffset, view.quotedLength).check();
      if (qe !== null) {
        expect(quotedReasons).toContain(qe);
        seen.add(`quoted:${qe}`);
        continue;
      }
      seen.add('quoted:ok');
      void [quoted.src, quoted.dst, quoted.protocol, quoted.totalLength, quoted.fragmentOffset, quoted.ttl];
      void [quoted.sourcePort, quoted.destinationPort, quoted.icmpIdentifier, quoted.icmpSequence];
      void [quoted.espSpi, quoted.espSequence, quoted.ahSpi, quoted.icmpType, quoted.icmpCode];
    }
    // The mutator reaches every path, or this test proves little.
    expect(parsedOk).toBeGreaterThan(5000);
    for (const r of [
      'truncated',
      'bad-checksum',
      'quoted:ok',
      'quoted:bad-version',
      'quoted:bad-ihl',
      'quoted:truncated',
    ]) {
      expect(seen).toContain(r);
    }
  });
});
