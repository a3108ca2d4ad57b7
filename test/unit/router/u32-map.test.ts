import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { U32Map } from '../../../src/router/data-path/tables/u32-map.ts';

describe('U32Map', () => {
  it('grows, keeps every key, and stops at its limit', () => {
    const m = new U32Map(4, 16);
    expect(m.limit).toBe(8);
    for (let k = 1; k <= 8; k++) expect(m.set(k * 7919, k)).toBe(true);
    expect(m.set(99, 1)).toBe(false);
    expect(m.set(7919, 42)).toBe(true); // existing key: an update, allowed at the limit
    expect(m.get(7919)).toBe(42);
    for (let k = 2; k <= 8; k++) expect(m.get(k * 7919)).toBe(k);
    expect(m.size).toBe(8);
    expect(m.set(0, 1)).toBe(false);
  });

  it('agrees with Map under random sets and deletes (backward-shift deletion)', () => {
    // Few distinct keys in a small table: long probe runs that wrap around.
    const key = fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 0xffffffd0, max: 0xffffffff }));
    const op = fc.tuple(fc.boolean(), key, fc.integer({ min: 1, max: 0xffffffff }));
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        const m = new U32Map(4, 1 << 10);
        const ref = new Map<number, number>();
        for (const [isSet, k, v] of ops) {
          if (isSet) {
            expect(m.set(k, v)).toBe(true);
            ref.set(k, v);
          } else {
            expect(m.delete(k)).toBe(ref.delete(k));
          }
          expect(m.size).toBe(ref.size);
        }
        for (let k = 1; k <= 40; k++) expect(m.get(k)).toBe(ref.get(k) ?? 0);
        for (let k = 0xffffffd0; k <= 0xffffffff; k++) expect(m.get(k)).toBe(ref.get(k) ?? 0);
      }),
      { seed: 0x32, numRuns: 300 },
    );
  });
});
