import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { internetChecksum } from '../../../src/wire/checksum.ts';
import { parseIcmp } from '../../../src/wire/icmp.ts';
import {
  checkPap,
  emitPap,
  isPapCodeValid,
  PAP_MESSAGE_LENGTH,
  PAP_TYPE_PORTS,
  PAP_TYPE_SPI,
  PAP_UDP_PORT,
  PapStatus,
  PapView,
  parsePap,
  type PapMessage,
} from '../../../src/wire/pap.ts';
import type { WireError } from '../../../src/wire/result.ts';
import { guarded, mulberry32 } from './hostile.ts';

interface Vector {
  name: string;
  kind: PapMessage['kind'];
  hex: string;
  fields: Record<string, number | boolean>;
}
const golden = JSON.parse(
  readFileSync(new URL('../../fixtures/golden/pap.json', import.meta.url), 'utf8'),
) as {
  valid: Vector[];
  lenient: Vector[];
  invalid: { name: string; hex: string; reason: WireError }[];
};
const bytes = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex.replace(/\s+/g, ''), 'hex'));
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const messageOf = (v: Vector): PapMessage => ({ kind: v.kind, ...v.fields }) as PapMessage;

describe('PAP constants', () => {
  it('match docs/pap.md', () => {
    expect([PAP_UDP_PORT, PAP_TYPE_PORTS, PAP_TYPE_SPI, PAP_MESSAGE_LENGTH]).toEqual([7032, 32, 33, 28]);
    expect(PapStatus).toEqual({
      Ok: 0,
      QuotaExceeded: 1,
      PoolExhausted: 2,
      UnknownLease: 3,
      StaleEpoch: 4,
      Malformed: 5,
      TryLater: 6,
      UnknownAddress: 7,
    });
  });
});

describe('PAP hand-computed vectors', () => {
  it('FIG. 4 request for 32 ports below 10000, transaction 0x0a0b0c0d', () => {
    // Words: 2000 (type 32, code 0) + 2000 (32 ports) + 0100 (version 1, R=0)
    // + 0a0b + 0c0d = 5718; checksum = ~5718 = a8e7.
    const wire = bytes('2000 a8e7 2000 0000 0000 0000 0100 0000 0a0b 0c0d 0000 0000 0000 0000');
    const msg: PapMessage = {
      kind: 'port-request',
      highPorts: false,
      portsRequested: 32,
      status: 0,
      transactionId: 0x0a0b0c0d,
      epoch: 0,
      leaseTime: 0,
    };
    expect(parsePap(wire)).toEqual({ ok: true, value: msg });
    const out = new Uint8Array(28);
    emitPap(msg, out);
    expect(hex(out)).toBe(hex(wire));
  });
  it('FIG. 5A success: 64 SPIs from 256, epoch 0x5eed1234, lease 3600 s', () => {
    // Words: 2101 + 0040 + 0100 + 0180 + 1234 + 5678 + 5eed + 1234 + 0e10 = 1_0b9e,
    // folded 0b9f; checksum = ~0b9f = f460.
    const wire = bytes('2101 f460 0040 0000 0000 0100 0180 0000 1234 5678 5eed 1234 0000 0e10');
    const msg: PapMessage = {
      kind: 'spi-response',
      success: true,
      lowestSpi: 256,
      spiCount: 64,
      status: 0,
      transactionId: 0x12345678,
      epoch: 0x5eed1234,
      leaseTime: 3600,
    };
    expect(parsePap(wire)).toEqual({ ok: true, value: msg });
    const out = new Uint8Array(28);
    emitPap(msg, out);
    expect(hex(out)).toBe(hex(wire));
  });
});

describe('PAP against the spec vectors (checksum from scapy.utils.checksum)', () => {
  it('covers every kind, both outcomes and every status', () => {
    const kinds = new Set(golden.valid.map((v) => v.kind));
    expect(kinds.size).toBe(10);
    const statuses = new Set(golden.valid.map((v) => v.fields.status));
    for (const s of Object.values(PapStatus)) expect(statuses).toContain(s);
  });

  for (const v of golden.valid) {
    it(`${v.name}: parses to the spec's fields and emits the same bytes`, () => {
      const wire = bytes(v.hex);
      const msg = messageOf(v);
      expect(parsePap(wire)).toEqual({ ok: true, value: msg });
      const out = new Uint8Array(40).fill(0xaa);
      expect(emitPap(msg, out, 6)).toBe(28);
      expect(hex(out.subarray(6, 34))).toBe(v.hex);
      expect(out[5]).toBe(0xaa);
      expect(out[34]).toBe(0xaa);

      const view = new PapView(wire);
      expect(view.check()).toBeNull();
      expect(view.status).toBe(v.fields.status);
      expect(view.transactionId).toBe(v.fields.transactionId);
      expect(view.epoch).toBe(v.fields.epoch);
      expect(view.leaseTime).toBe(v.fields.leaseTime);
      expect(view.isResponse).toBe(/response|withdraw/.test(v.kind));
      expect(view.version).toBe(1);
      const f = v.fields;
      if ('portsRequested' in f) expect(view.portsRequested).toBe(f.portsRequested);
      if ('port' in f) expect(view.port).toBe(f.port);
      if ('lowestPort' in f) expect([view.lowestPort, view.portCount]).toEqual([f.lowestPort, f.portCount]);
      if ('spisRequested' in f) expect(view.spisRequested).toBe(f.spisRequested);
      if ('spi' in f) expect(view.spi).toBe(f.spi);
      if ('lowestSpi' in f) expect([view.lowestSpi, view.spiCount]).toEqual([f.lowestSpi, f.spiCount]);
    });
  }

  for (const v of golden.lenient) {
    it(`${v.name}: is accepted, reserved bits and unused bytes ignored`, () => {
      expect(parsePap(bytes(v.hex))).toEqual({ ok: true, value: messageOf(v) });
    });
  }

  for (const v of golden.invalid) {
    it(`${v.name}: is rejected as ${v.reason}`, () => {
      const wire = bytes(v.hex);
      expect(parsePap(wire)).toEqual({ ok: false, reason: v.reason });
    });
  }

  it('is a valid ICMP message too: type 32/33 with the same checksum', () => {
    for (const v of golden.valid) {
      const r = parseIcmp(bytes(v.hex));
      expect(r.ok && r.value.kind === 'other' && r.value.type).toBe(v.kind.startsWith('port') ? 32 : 33);
    }
  });
});

describe('PAP codes', () => {
  it('are defined per type and direction exactly as the table says', () => {
    const table: [number, boolean, number[]][] = [
      [32, false, [0, 1, 2, 3]],
      [32, true, [0, 1, 2]],
      [33, false, [0, 2, 3]],
      [33, true, [0, 1, 2]],
    ];
    for (const [type, r, codes] of table) {
      for (let code = 0; code < 256; code++) expect(isPapCodeValid(type, r, code)).toBe(codes.includes(code));
    }
    for (let type = 0; type < 256; type++) {
      if (type !== 32 && type !== 33) expect(isPapCodeValid(type, false, 0)).toBe(false);
    }
  });
  it('reports a range outside the buffer as truncated, a wrong length as bad-length', () => {
    const wire = bytes(golden.valid[0]!.hex);
    expect(checkPap(wire, 1, 28)).toBe('truncated');
    expect(checkPap(wire, -1, 28)).toBe('truncated');
    expect(checkPap(wire, 0, 27)).toBe('bad-length');
    expect(checkPap(wire, 0, 28)).toBeNull();
    const bad = wire.slice();
    bad[2]! ^= 0xff;
    expect(checkPap(bad, 0, 28)).toBe('bad-checksum');
    expect(checkPap(bad, 0, 28, false)).toBeNull();
  });
  it('emit refuses a buffer with fewer than 28 bytes left', () => {
    const msg = messageOf(golden.valid[0]!);
    expect(() => emitPap(msg, new Uint8Array(27))).toThrow(RangeError);
    expect(() => emitPap(msg, new Uint8Array(30), 3)).toThrow(RangeError);
  });
});

const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const ext = { status: u16, transactionId: u32, epoch: u32, leaseTime: u32 };
const message: fc.Arbitrary<PapMessage> = fc.oneof(
  fc.record({
    kind: fc.constant('port-request' as const),
    highPorts: fc.boolean(),
    portsRequested: u8,
    ...ext,
  }),
  fc.record({ kind: fc.constant('port-invalidate' as const), port: u16, ...ext }),
  fc.record({ kind: fc.constant('port-renew' as const), lowestPort: u16, portCount: u8, ...ext }),
  fc.record({
    kind: fc.constant('port-response' as const),
    success: fc.boolean(),
    lowestPort: u16,
    portCount: u8,
    ...ext,
  }),
  fc.record({ kind: fc.constant('port-withdraw' as const), lowestPort: u16, portCount: u8, ...ext }),
  fc.record({ kind: fc.constant('spi-request' as const), spisRequested: u16, ...ext }),
  fc.record({ kind: fc.constant('spi-invalidate' as const), spi: u32, ...ext }),
  fc.record({ kind: fc.constant('spi-renew' as const), lowestSpi: u32, spiCount: u16, ...ext }),
  fc.record({
    kind: fc.constant('spi-response' as const),
    success: fc.boolean(),
    lowestSpi: u32,
    spiCount: u16,
    ...ext,
  }),
  fc.record({ kind: fc.constant('spi-withdraw' as const), lowestSpi: u32, spiCount: u16, ...ext }),
);

describe('PAP properties', () => {
  it('decode(encode(x)) deep-equals x at non-zero offsets inside larger buffers, leaving neighbours alone', () => {
    fc.assert(
      fc.property(
        message,
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 64 }),
        u8,
        (msg, at, tail, fill) => {
          const buf = new Uint8Array(at + PAP_MESSAGE_LENGTH + tail).fill(fill);
          expect(emitPap(msg, buf, at)).toBe(PAP_MESSAGE_LENGTH);
          expect(parsePap(buf, at, PAP_MESSAGE_LENGTH)).toEqual({ ok: true, value: msg });
          const untouched = (b: Uint8Array) => b.every((x) => x === fill);
          expect(untouched(buf.subarray(0, at)) && untouched(buf.subarray(at + PAP_MESSAGE_LENGTH))).toBe(
            true,
          );
          // The checksum field is what RFC 1071 gives over the message with it zeroed.
          const copy = buf.slice(at, at + PAP_MESSAGE_LENGTH);
          const sent = (copy[2]! << 8) | copy[3]!;
          copy[2] = copy[3] = 0;
          expect(sent).toBe(internetChecksum(copy));
        },
      ),
      { seed: 0x7032, numRuns: 3000 },
    );
  });
});

describe('PAP malformed input', () => {
  it('never throws on 25,000 mutated messages; fails only with its reasons; accessors stay in bounds', () => {
    const rand = mulberry32(7032);
    const int = (n: number) => Math.floor(rand() * n);
    const reasons: WireError[] = [
      'truncated',
      'bad-length',
      'bad-checksum',
      'bad-version',
      'bad-type',
      'bad-code',
    ];
    const seeds = golden.valid.map((v) => bytes(v.hex));
    const seen = new Set<string>();
    const view = new PapView();
    for (let n = 0; n < 25_000; n++) {
      let m = seeds[n % seeds.length]!.slice();
      const op = int(4);
      if (op === 0) m = m.subarray(0, int(m.length + 8)).slice();
      for (let k = int(4); k >= 0; k--) {
        const i = [0, 1, 12, 13, int(m.length)][int(5)]! % Math.max(1, m.length);
        if (m.length > 0)
          m[i] = rand() < 0.5 ? int(256) : [0, 1, 2, 3, 4, 31, 32, 33, 34, 0x80, 0xff][int(11)]!;
      }
      if (m.length >= 4 && op !== 3) {
        m[2] = m[3] = 0;
        const c = internetChecksum(m);
        m[2] = c >> 8;
        m[3] = c & 0xff;
      }
      const at = int(5);
      const framed = new Uint8Array(at + m.length + int(5)).fill(0x33);
      framed.set(m, at);
      if (n % 100 === 0) {
        const past = parsePap(framed, at, framed.length - at + 1);
        expect(past).toEqual({ ok: false, reason: 'truncated' });
        seen.add('truncated');
      }
      const r = parsePap(framed, at, m.length);
      if (r.ok) {
        seen.add('ok');
        const again = new Uint8Array(PAP_MESSAGE_LENGTH);
        emitPap(r.value, again);
        expect(parsePap(again)).toEqual(r);
      } else {
        expect(reasons).toContain(r.reason);
        seen.add(r.reason);
      }
      if (view.wrap(guarded(framed, at, at + m.length), at, m.length).check(false) === null) {
        void [view.type, view.code, view.checksum, view.flags, view.status, view.transactionId, view.epoch];
        void [view.leaseTime, view.portsRequested, view.port, view.lowestPort, view.portCount];
        void [view.spisRequested, view.spi, view.lowestSpi, view.spiCount, view.verifyChecksum()];
      }
    }
    for (const r of ['ok', ...reasons]) expect(seen).toContain(r);
  });
});
