import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { WithdrawnSpis } from '../../../src/router/data-path/tables/withdrawn-spis.ts';

describe('WithdrawnSpis', () => {
  it('holds a withdrawn block until a lease touches it', () => {
    const w = new WithdrawnSpis(4);
    w.add({ lowest: 0x1000, count: 64 });
    expect([0xfff, 0x1000, 0x103f, 0x1040].map((s) => w.has(s))).toEqual([false, true, true, false]);
    w.clear({ lowest: 0x1020, count: 1 });
    expect(w.has(0x1000)).toBe(false);
  });

  it('forgets the oldest block when full', () => {
    const w = new WithdrawnSpis(2);
    for (const lowest of [1000, 2000, 3000]) w.add({ lowest, count: 10 });
    expect([1000, 2000, 3000].map((s) => w.has(s))).toEqual([false, true, true]);
    expect(w.size).toBe(2);
  });

  it('answers as a list of the last blocks would, whatever the order of adds and clears', () => {
    const op = fc.record({
      add: fc.boolean(),
      lowest: fc.integer({ min: 256, max: 2000 }),
      count: fc.integer({ min: 1, max: 100 }),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), fc.integer({ min: 0, max: 2200 }), (ops, spi) => {
        const w = new WithdrawnSpis(8);
        let model: { lo: number; hi: number }[] = [];
        for (const o of ops) {
          const r = { lo: o.lowest, hi: o.lowest + o.count };
          if (o.add) model = [...model, r].slice(-8);
          else model = model.map((m) => (m.lo < r.hi && r.lo < m.hi ? { lo: 0, hi: 0 } : m));
          if (o.add) w.add(o);
          else w.clear(o);
        }
        expect(w.has(spi)).toBe(model.some((m) => spi >= m.lo && spi < m.hi));
      }),
    );
  });
});
