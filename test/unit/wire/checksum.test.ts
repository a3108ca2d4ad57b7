import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  fold,
  internetChecksum,
  pseudoHeaderSum,
  pseudoHeaderSumFromIp,
  sumBytes,
  udpWireChecksum,
  updateChecksum16,
  updateChecksum32,
  updateUdpChecksum16,
  verifiesTo0,
} from '../../../src/wire/checksum.ts';
import { prng, SEED } from './ip-arbitraries.ts';

/** RFC 1071 the slow way: one word at a time, end-around carry at every step. */
function naiveChecksum(data: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial;
  for (let i = start; i < end; i += 2) {
    sum += (data[i]! << 8) | (i + 1 < end ? data[i + 1]! : 0);
    if (sum > 0xffff) sum -= 0xffff;
  }
  return ~sum & 0xffff;
}

function randomBytes(n: number, seed: number): Uint8Array {
  const rand = prng(seed);
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

const fcOpts = { seed: SEED, numRuns: 500 };

describe('internetChecksum against a naive reference', () => {
  const data = randomBytes(9001, SEED);

  it('agrees on every prefix of lengths 0..9000', () => {
    // The reference keeps a running sum over whole words, so all prefixes cost one pass.
    let words = 0;
    const mismatches: number[] = [];
    for (let n = 0; n <= 9000; n++) {
      let sum = words;
      if (n % 2 === 1) {
        sum += data[n - 1]! << 8;
        if (sum > 0xffff) sum -= 0xffff;
      } else if (n > 0) {
        words += (data[n - 2]! << 8) | data[n - 1]!;
        if (words > 0xffff) words -= 0xffff;
        sum = words;
      }
      if (internetChecksum(data, 0, n) !== (~sum & 0xffff)) mismatches.push(n);
    }
    expect(mismatches).toEqual([]);
  });

  it('agrees at odd and even start offsets, with an initial sum', () => {
    const rand = prng(SEED + 1);
    for (let k = 0; k < 2000; k++) {
      const start = Math.floor(rand() * 4000);
      const end = start + Math.floor(rand() * 5000);
      const initial = Math.floor(rand() * 0x3fffe);
      expect(internetChecksum(data, start, end, initial)).toBe(
        naiveChecksum(data, start, end, fold(initial)),
      );
    }
  });

  it('matches a hand-checked example (RFC 1071 section 3)', () => {
    const b = Uint8Array.of(0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7);
    expect(fold(sumBytes(b, 0, 8))).toBe(0xddf2);
    expect(internetChecksum(b)).toBe(0x220d);
  });

  it('verifies a region that carries its own checksum and rejects a flipped bit', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 2, maxLength: 200 }), fc.nat(), fc.nat(), (raw, at, bit) => {
        const b = raw.slice();
        const cs = (at % Math.floor(b.length / 2)) * 2;
        b[cs] = 0;
        b[cs + 1] = 0;
        const c = internetChecksum(b, 0, b.length, 6);
        b[cs] = c >> 8;
        b[cs + 1] = c & 0xff;
        expect(verifiesTo0(b, 0, b.length, 6)).toBe(true);
        b[bit % b.length]! ^= 1 << (bit % 8);
        expect(verifiesTo0(b, 0, b.length, 6)).toBe(false);
      }),
      fcOpts,
    );
  });
});

describe('pseudo-header', () => {
  it('from addresses equals from an IPv4 header in place', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 20, maxLength: 20 }),
        fc.integer({ min: 0, max: 255 }),
        fc.nat(0xffff),
        (ip, proto, len) => {
          const src = ((ip[12]! << 24) | (ip[13]! << 16) | (ip[14]! << 8) | ip[15]!) >>> 0;
          const dst = ((ip[16]! << 24) | (ip[17]! << 16) | (ip[18]! << 8) | ip[19]!) >>> 0;
          expect(fold(pseudoHeaderSum(src, dst, proto, len))).toBe(
            fold(pseudoHeaderSumFromIp(ip, 0, proto, len)),
          );
        },
      ),
      fcOpts,
    );
  });
});

/**
 * Data with a checksum computed over it and an initial sum that is non-zero,
 * as every real header has (a version nibble, a protocol number), so that
 * the full sum is never one's complement zero and the checksum is exact.
 */
const arbSummed = fc.record({
  data: fc.uint8Array({ minLength: 4, maxLength: 600 }),
  initial: fc.integer({ min: 1, max: 0x2ffff }),
  at: fc.nat(),
});

function word(b: Uint8Array, i: number): number {
  return (b[i]! << 8) | b[i + 1]!;
}

describe('RFC 1624 incremental update agrees with full recomputation', () => {
  it('for a 16-bit field', () => {
    fc.assert(
      fc.property(arbSummed, fc.nat(0xffff), ({ data, initial, at }, next) => {
        const i = (at % Math.floor(data.length / 2)) * 2;
        const before = internetChecksum(data, 0, data.length, initial);
        const old = word(data, i);
        const b = data.slice();
        b[i] = next >> 8;
        b[i + 1] = next & 0xff;
        expect(updateChecksum16(before, old, next)).toBe(internetChecksum(b, 0, b.length, initial));
      }),
      fcOpts,
    );
  });

  it('for a 32-bit address', () => {
    fc.assert(
      fc.property(arbSummed, fc.nat(0xffffffff), ({ data, initial, at }, next) => {
        const i = (at % Math.floor(data.length / 4)) * 4;
        const before = internetChecksum(data, 0, data.length, initial);
        const old = ((word(data, i) << 16) | word(data, i + 2)) >>> 0;
        const b = data.slice();
        b.set([next >>> 24, (next >>> 16) & 0xff, (next >>> 8) & 0xff, next & 0xff], i);
        expect(updateChecksum32(before, old, next)).toBe(internetChecksum(b, 0, b.length, initial));
      }),
      fcOpts,
    );
  });

  it('never turns a non-zero checksum into the 0x0000 of RFC 1141 on a no-op change', () => {
    fc.assert(
      fc.property(fc.nat(0xfffe), fc.nat(0xffff), (checksum, w) => {
        expect(updateChecksum16(checksum, w, w)).toBe(checksum);
      }),
      fcOpts,
    );
  });
});

describe('UDP zero-checksum rules', () => {
  it('a field of 0x0000 (no checksum) stays zero through any update', () => {
    fc.assert(
      fc.property(fc.nat(0xffff), fc.nat(0xffff), (old, next) => {
        expect(updateUdpChecksum16(0, old, next)).toBe(0);
      }),
      fcOpts,
    );
  });

  it('a computed zero goes on the wire as 0xFFFF, anything else unchanged', () => {
    expect(udpWireChecksum(0)).toBe(0xffff);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 0xffff }), (c) => {
        expect(udpWireChecksum(c)).toBe(c);
      }),
      fcOpts,
    );
  });

  const wire = (b: Uint8Array, initial: number) => udpWireChecksum(internetChecksum(b, 0, b.length, initial));

  it('an update equals the wire checksum recomputed', () => {
    fc.assert(
      fc.property(arbSummed, fc.nat(0xffff), ({ data, initial, at }, next) => {
        const i = (at % Math.floor(data.length / 2)) * 2;
        const old = word(data, i);
        const b = data.slice();
        b[i] = next >> 8;
        b[i + 1] = next & 0xff;
        expect(updateUdpChecksum16(wire(data, initial), old, next)).toBe(wire(b, initial));
      }),
      fcOpts,
    );
  });

  it('into and out of a datagram whose checksum computes to zero (sent as 0xFFFF)', () => {
    fc.assert(
      fc.property(arbSummed, fc.nat(0xffff), ({ data, initial, at }, later) => {
        const i = (at % Math.floor(data.length / 2)) * 2;
        const b = data.slice();
        const old = word(b, i);
        b[i] = 0;
        b[i + 1] = 0;
        // The one word value that makes the whole sum 0xFFFF, i.e. the checksum 0x0000.
        const rest = fold(sumBytes(b, 0, b.length, initial));
        const zeroing = 0xffff - rest;
        b[i] = zeroing >> 8;
        b[i + 1] = zeroing & 0xff;
        expect(internetChecksum(b, 0, b.length, initial)).toBe(0);
        expect(wire(b, initial)).toBe(0xffff);
        expect(updateUdpChecksum16(wire(data, initial), old, zeroing)).toBe(0xffff);
        const c = b.slice();
        c[i] = later >> 8;
        c[i + 1] = later & 0xff;
        expect(updateUdpChecksum16(0xffff, zeroing, later)).toBe(wire(c, initial));
        expect(verifiesTo0(b, 0, b.length, initial + 0xffff)).toBe(true);
      }),
      fcOpts,
    );
  });
});
