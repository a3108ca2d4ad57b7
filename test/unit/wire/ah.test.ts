import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AH_FIXED_LENGTH,
  AH_MAX_ICV_LENGTH,
  AhField,
  ahIcvInput,
  ahLength,
  AhView,
  checkAh,
  emitAh,
  parseAh,
  type AhHeader,
} from '../../../src/wire/ah.ts';
import { u16 as read16, u32 as read32 } from '../../../src/wire/bytes.ts';
import { internetChecksum } from '../../../src/wire/checksum.ts';
import type { WireError } from '../../../src/wire/result.ts';
import { guarded, mulberry32 } from './hostile.ts';

interface Case {
  name: string;
  hex: string;
  ah_offset: number;
  auth_algo: string;
  auth_key: string;
  fields: { nh: number; payloadlen: number; reserved: number; spi: number; seq: number; icv: string };
  icv_input: string;
}
const golden = JSON.parse(
  readFileSync(new URL('../../fixtures/golden/ah.json', import.meta.url), 'utf8'),
) as {
  cases: Case[];
};
const bytes = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex, 'hex'));
const HMAC: Record<string, [string, number]> = {
  'HMAC-SHA1-96': ['sha1', 12],
  'SHA2-256-128': ['sha256', 16],
  'SHA2-384-192': ['sha384', 24],
};

describe('AH against scapy', () => {
  for (const c of golden.cases) {
    it(`${c.name}: parses to scapy's fields and emits the same bytes`, () => {
      const pkt = bytes(c.hex);
      const f = c.fields;
      const view = new AhView(pkt, c.ah_offset);
      expect(view.check()).toBeNull();
      expect(view.nextHeader).toBe(f.nh);
      expect(view.payloadLen).toBe(f.payloadlen);
      expect(view.headerLength).toBe((f.payloadlen + 2) * 4);
      expect(view.reserved).toBe(f.reserved);
      expect(view.spi).toBe(f.spi);
      const at = (field: number): number => c.ah_offset + field;
      expect([
        pkt[at(AhField.NEXT_HEADER)],
        pkt[at(AhField.PAYLOAD_LEN)],
        read16(pkt, at(AhField.RESERVED)),
      ]).toEqual([f.nh, f.payloadlen, f.reserved]);
      expect([read32(pkt, at(AhField.SPI)), read32(pkt, at(AhField.SEQUENCE)), at(AhField.ICV)]).toEqual([
        f.spi,
        f.seq,
        view.icvOffset,
      ]);
      expect(view.sequence).toBe(f.seq);
      expect(view.icvOffset).toBe(c.ah_offset + 12);
      expect(Buffer.from(view.icv).toString('hex')).toBe(f.icv);
      expect(view.dataOffset).toBe(c.ah_offset + view.headerLength);
      expect(view.dataLength).toBe(pkt.length - view.dataOffset);

      const expected: AhHeader = {
        nextHeader: f.nh,
        reserved: f.reserved,
        spi: f.spi,
        sequence: f.seq,
        icv: bytes(f.icv),
      };
      expect(parseAh(pkt, c.ah_offset)).toEqual({ ok: true, value: expected });
      const out = new Uint8Array(ahLength(expected));
      expect(emitAh(expected, out)).toBe(view.headerLength);
      expect(out).toEqual(pkt.subarray(c.ah_offset, c.ah_offset + view.headerLength));
    });

    it(`${c.name}: the ICV input equals scapy's zeroed packet, and its ${c.auth_algo} is the ICV`, () => {
      const pkt = bytes(c.hex);
      const scratch = new Uint8Array(2048).fill(0x77);
      const r = ahIcvInput(pkt, 0, pkt.length, scratch, 3);
      expect(r).toEqual({ ok: true, value: pkt.length });
      if (!r.ok) return;
      const input = scratch.subarray(3, 3 + r.value);
      expect(Buffer.from(input).toString('hex')).toBe(c.icv_input);
      expect(scratch[2]).toBe(0x77);
      expect(scratch[3 + r.value]).toBe(0x77);
      const [hash, len] = HMAC[c.auth_algo]!;
      const mac = createHmac(hash, bytes(c.auth_key)).update(input).digest().subarray(0, len);
      expect(Buffer.from(mac).toString('hex')).toBe(c.fields.icv);
      // The packet itself is untouched.
      expect(Buffer.from(pkt).toString('hex')).toBe(c.hex);
    });
  }

  it('covers the option handling: a mutable Record Route is zeroed, Router Alert kept', () => {
    const c = golden.cases.find((x) => x.name === 'transport-sha256-options')!;
    const input = bytes(c.icv_input);
    expect(Array.from(input.subarray(20, 24))).toEqual([148, 4, 0, 0]); // Router Alert, immutable
    expect(Array.from(input.subarray(24, 35)).every((b) => b === 0)).toBe(true); // RR, zeroed
    expect(bytes(c.hex)[24]).toBe(7);
  });
});

/** A minimal IPv4 + AH + 4-byte payload with the given options (a multiple of 4 bytes). */
function ipWithAh(options: number[], icvLength = 12): Uint8Array {
  const ihl = 20 + options.length;
  const total = ihl + AH_FIXED_LENGTH + icvLength + 4;
  const b = new Uint8Array(total);
  b.set([0x40 | (ihl / 4), 0x2e, total >> 8, total & 0xff, 0x12, 0x34, 0x40, 0, 33, 51, 0, 0]);
  b.set([198, 51, 100, 30, 203, 0, 113, 3], 12);
  b.set(options, 20);
  const c = internetChecksum(b, 0, ihl);
  b[10] = c >> 8;
  b[11] = c & 0xff;
  b.set([17, (AH_FIXED_LENGTH + icvLength) / 4 - 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 9], ihl);
  b.fill(0xab, ihl + AH_FIXED_LENGTH, ihl + AH_FIXED_LENGTH + icvLength);
  b.set([1, 2, 3, 4], total - 4);
  return b;
}

describe('AH ICV input', () => {
  const scratch = new Uint8Array(65535);
  const input = (p: Uint8Array) => {
    const r = ahIcvInput(p, 0, p.length, scratch);
    return r.ok ? scratch.slice(0, r.value) : r.reason;
  };

  it('zeroes TOS, flags/offset, TTL, checksum and ICV; keeps everything else', () => {
    const p = ipWithAh([]);
    const z = input(p) as Uint8Array;
    const expected = p.slice();
    expected[1] = 0;
    expected[6] = expected[7] = expected[8] = expected[10] = expected[11] = 0;
    expected.fill(0, 32, 44);
    expect(z).toEqual(expected);
  });
  it('keeps Security and unknown-length NOP/EOL, zeroes Timestamp and options it does not know', () => {
    // NOP, Security (130, len 3), unknown 153 (len 4), Timestamp (68, len 4), EOL + padding
    const opts = [1, 130, 3, 0xaa, 153, 4, 0xbb, 0xcc, 68, 4, 5, 0, 0, 0, 0, 0];
    const z = input(ipWithAh(opts)) as Uint8Array;
    expect(Array.from(z.subarray(20, 36))).toEqual([1, 130, 3, 0xaa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  });
  it('treats bytes after End of Option List as padding, left as sent', () => {
    const z = input(ipWithAh([0, 7, 0xff, 0xff])) as Uint8Array;
    expect(Array.from(z.subarray(20, 24))).toEqual([0, 7, 0xff, 0xff]);
  });
  it('rejects malformed options, a packet that is not AH, a fragment, and broken IPv4 lengths', () => {
    expect(input(ipWithAh([68, 1, 0, 0]))).toBe('bad-option'); // length below 2
    expect(input(ipWithAh([1, 1, 1, 68]))).toBe('bad-option'); // no length byte
    expect(input(ipWithAh([68, 8, 0, 0]))).toBe('bad-option'); // past the header
    const set = (i: number, v: number) => {
      const p = ipWithAh([]);
      p[i] = v;
      return input(p);
    };
    expect(set(9, 50)).toBe('bad-protocol');
    expect(set(6, 0x20)).toBe('fragmented'); // MF
    expect(set(7, 0x01)).toBe('fragmented'); // offset
    expect(set(0, 0x65)).toBe('bad-version');
    expect(set(0, 0x44)).toBe('bad-ihl');
    expect(set(2, 0x01)).toBe('bad-total-length');
    expect(set(21, 0)).toBe('bad-length'); // Payload Len 0
    expect(set(21, 200)).toBe('truncated'); // AH longer than the datagram
    expect(input(ipWithAh([]).subarray(0, 19))).toBe('truncated');
  });
  it('uses only the total length, ignoring link-layer padding after it', () => {
    const p = ipWithAh([]);
    const padded = new Uint8Array(p.length + 6).fill(0xee);
    padded.set(p);
    const r = ahIcvInput(padded, 0, padded.length, scratch);
    expect(r).toEqual({ ok: true, value: p.length });
  });
  it('throws only for a scratch buffer shorter than the datagram', () => {
    const p = ipWithAh([]);
    expect(() => ahIcvInput(p, 0, p.length, new Uint8Array(p.length - 1))).toThrow(RangeError);
    expect(() => ahIcvInput(p, 0, p.length, new Uint8Array(p.length), 1)).toThrow(RangeError);
  });
});

describe('AH header', () => {
  it('rejects Payload Len 0, a header longer than the bytes, and fewer than 12 bytes', () => {
    const h = Uint8Array.of(6, 4, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, ...new Array<number>(12).fill(0));
    expect(checkAh(h, 0, 24)).toBeNull();
    expect(checkAh(h, 0, 23)).toBe('truncated');
    expect(checkAh(h, 0, 11)).toBe('truncated');
    expect(checkAh(h, 20, 8)).toBe('truncated');
    const z = h.slice();
    z[1] = 0;
    expect(parseAh(z)).toEqual({ ok: false, reason: 'bad-length' });
    z[1] = 1;
    expect(parseAh(z, 0, 12)).toEqual({
      ok: true,
      value: { nextHeader: 6, reserved: 0, spi: 256, sequence: 1, icv: new Uint8Array(0) },
    });
  });
  it('refuses to emit an ICV that is not whole 32-bit words or too long', () => {
    const h = (n: number): AhHeader => ({
      nextHeader: 6,
      reserved: 0,
      spi: 1,
      sequence: 1,
      icv: new Uint8Array(n),
    });
    expect(() => emitAh(h(10), new Uint8Array(100))).toThrow(RangeError);
    expect(() => emitAh(h(AH_MAX_ICV_LENGTH + 4), new Uint8Array(2000))).toThrow(RangeError);
    expect(emitAh(h(AH_MAX_ICV_LENGTH), new Uint8Array(2000))).toBe(4 * 257);
    expect(() => emitAh(h(12), new Uint8Array(23))).toThrow(RangeError);
  });
});

const header: fc.Arbitrary<AhHeader> = fc.record({
  nextHeader: fc.integer({ min: 0, max: 255 }),
  reserved: fc.integer({ min: 0, max: 0xffff }),
  spi: fc.integer({ min: 0, max: 0xffffffff }),
  sequence: fc.integer({ min: 0, max: 0xffffffff }),
  icv: fc
    .integer({ min: 0, max: AH_MAX_ICV_LENGTH / 4 })
    .chain((w) => fc.uint8Array({ minLength: w * 4, maxLength: w * 4 })),
});

describe('AH properties', () => {
  it('parse(emit(x)) deep-equals x, at any offset and with payload after it', () => {
    fc.assert(
      fc.property(header, fc.nat(40), fc.nat(40), (h, at, tail) => {
        const buf = new Uint8Array(at + ahLength(h) + tail).fill(0x5a);
        const n = emitAh(h, buf, at);
        expect(parseAh(buf, at, n + tail)).toEqual({ ok: true, value: h });
        expect(new AhView(buf, at, n + tail).dataLength).toBe(tail);
      }),
      { seed: 0x51, numRuns: 1000 },
    );
  });
});

/** Mutations aimed at the fields the AH code reads: IPv4 lengths, flags, protocol, options, Payload Len. */
function mutate(rand: () => number, src: Uint8Array, ahOffset: number): Uint8Array {
  const int = (n: number) => Math.floor(rand() * n);
  let b = src.slice();
  const hot = [0, 2, 3, 6, 7, 9, 20, 21, 22, 23, ahOffset, ahOffset + 1];
  const ops = 1 + int(3);
  for (let k = 0; k < ops; k++) {
    const op = int(5);
    if (op === 0) b = b.subarray(0, int(b.length + 1)).slice();
    else if (op === 1) {
      const e = new Uint8Array(b.length + 1 + int(30));
      e.set(b);
      b = e;
    } else if (b.length > 0) {
      const i = op === 2 ? hot[int(hot.length)]! % b.length : int(b.length);
      if (op === 4) b[i]! ^= 1 << int(8);
      else b[i] = [0, 1, 2, 3, 4, 7, 51, 68, 0x44, 0x45, 0x46, 0x4f, 130, 148, 255][int(15)]!;
    }
  }
  return b;
}

describe('AH malformed input', () => {
  it('never throws on 25,000 mutated packets; fails only with its reasons; accessors stay in bounds', () => {
    const rand = mulberry32(0xa4);
    const scratch = new Uint8Array(65535);
    const icvReasons: WireError[] = [
      'truncated',
      'bad-version',
      'bad-ihl',
      'bad-total-length',
      'bad-protocol',
      'fragmented',
      'bad-length',
      'bad-option',
    ];
    const seen = new Set<string>();
    const view = new AhView();
    for (let n = 0; n < 25_000; n++) {
      const c = golden.cases[n % golden.cases.length]!;
      const m = mutate(rand, bytes(c.hex), c.ah_offset);
      const r = ahIcvInput(m, 0, m.length, scratch);
      if (r.ok) {
        expect(r.value).toBeLessThanOrEqual(m.length);
        seen.add('ok');
      } else {
        expect(icvReasons).toContain(r.reason);
        seen.add(r.reason);
      }
      const at = Math.min(c.ah_offset, m.length);
      const p = parseAh(m, at);
      if (p.ok) {
        const again = new Uint8Array(ahLength(p.value));
        emitAh(p.value, again);
        expect(parseAh(again)).toEqual(p);
      } else expect(['truncated', 'bad-length']).toContain(p.reason);
      if (view.wrap(guarded(m, at, m.length), at).check() === null) {
        void [view.nextHeader, view.payloadLen, view.reserved, view.spi, view.sequence, view.dataLength];
        void view.icv;
      }
    }
    for (const r of ['ok', ...icvReasons]) expect(seen).toContain(r);
  });
});
