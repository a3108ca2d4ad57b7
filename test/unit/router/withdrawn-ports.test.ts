import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IKE_DRAIN_MS, WithdrawnPorts } from '../../../src/router/data-path/tables/withdrawn-ports.ts';

const H1 = 0x0a000001;
const H2 = 0x0a000003;

describe('WithdrawnPorts', () => {
  it('drains a withdrawn block for its former owner only, until the drain ends', () => {
    const w = new WithdrawnPorts(4);
    w.add({ lowest: 1024, count: 32 }, H1, 10_000);
    expect([1023, 1024, 1055, 1056].map((p) => w.drains(H1, p, 10_000))).toEqual([false, true, true, false]);
    expect(w.drains(H2, 1030, 10_000)).toBe(false);
    expect(w.drains(H1, 1030, 10_000 + IKE_DRAIN_MS - 1)).toBe(true);
    expect(w.drains(H1, 1030, 10_000 + IKE_DRAIN_MS)).toBe(false);
  });

  it('ends the drain at once when a port of the block is leased again', () => {
    const w = new WithdrawnPorts(4);
    w.add({ lowest: 1024, count: 32 }, H1, 0);
    w.add({ lowest: 2048, count: 32 }, H1, 0);
    w.clear({ lowest: 1050, count: 64 });
    expect(w.drains(H1, 1030, 1)).toBe(false);
    expect(w.drains(H1, 2050, 1)).toBe(true);
  });

  it('forgets the oldest block when full', () => {
    const w = new WithdrawnPorts(2);
    for (const lowest of [1000, 2000, 3000]) w.add({ lowest, count: 10 }, H1, 0);
    expect([1000, 2000, 3000].map((p) => w.drains(H1, p, 1))).toEqual([false, true, true]);
    expect(w.size).toBe(2);
  });

  it('answers as a list of the last withdrawals would, whatever the order of adds and clears', () => {
    const op = fc.record({
      add: fc.boolean(),
      lowest: fc.integer({ min: 1024, max: 3000 }),
      count: fc.integer({ min: 1, max: 100 }),
      owner: fc.constantFrom(H1, H2),
      at: fc.integer({ min: 0, max: 20_000 }),
    });
    fc.assert(
      fc.property(
        fc.array(op, { maxLength: 40 }),
        fc.integer({ min: 1000, max: 3200 }),
        fc.constantFrom(H1, H2),
        fc.integer({ min: 0, max: 30_000 }),
        (ops, port, host, now) => {
          const w = new WithdrawnPorts(8, 5000);
          let model: { lo: number; hi: number; owner: number; until: number }[] = [];
          for (const o of ops) {
            const lo = o.lowest;
            const hi = o.lowest + o.count;
            if (o.add) {
              model = [...model, { lo, hi, owner: o.owner, until: o.at + 5000 }].slice(-8);
              w.add(o, o.owner, o.at);
            } else {
              model = model.map((m) => (m.lo < hi && lo < m.hi ? { ...m, until: 0 } : m));
              w.clear(o);
            }
          }
          const want = model.some((m) => port >= m.lo && port < m.hi && m.owner === host && now < m.until);
          expect(w.drains(host, port, now)).toBe(want);
        },
      ),
    );
  });
});
