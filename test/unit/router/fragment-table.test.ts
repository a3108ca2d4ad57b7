import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FragmentTable } from '../../../src/router/data-path/tables/fragment-table.ts';

const SRV = 0xcb007103; // 203.0.113.3
const SHARED = 0xc633641e; // 198.51.100.30
const H1 = 0x0a000001;
const H3 = 0x0a000003;

describe('FragmentTable', () => {
  it('sends later fragments of a datagram to the first fragment’s owner', () => {
    const t = new FragmentTable({ seed: 1 });
    t.record(SRV, SHARED, 17, 0x1234, H1, 0);
    expect(t.lookup(SRV, SHARED, 17, 0x1234, 5)).toBe(H1);
    expect(t.lookup(SRV, SHARED, 6, 0x1234, 5)).toBe(0); // other protocol
    expect(t.lookup(SRV, SHARED, 17, 0x1235, 5)).toBe(0); // other id
    expect(t.lookup(SRV + 1, SHARED, 17, 0x1234, 5)).toBe(0); // other source
    expect(t.counters).toMatchObject({ recorded: 1, hits: 1, misses: 3 });
  });

  it('forgets a datagram 30 s after its first fragment', () => {
    const t = new FragmentTable({ seed: 2 });
    t.record(SRV, SHARED, 17, 7, H1, 1000);
    expect(t.lookup(SRV, SHARED, 17, 7, 30_999)).toBe(H1);
    expect(t.lookup(SRV, SHARED, 17, 7, 31_000)).toBe(0);
    t.record(SRV, SHARED, 17, 8, H1, 31_000);
    expect(t.size).toBe(1);
  });

  it('evicts the oldest datagram when full, and a repeated first fragment renews its entry', () => {
    const t = new FragmentTable({ capacity: 4, seed: 3 });
    for (let id = 0; id < 4; id++) t.record(SRV, SHARED, 17, id, H1, id);
    t.record(SRV, SHARED, 17, 0, H3, 10); // id 0 again, now owned by H3, moves to the tail
    // The ring is full: the dead old id 0 went first, without counting as an eviction.
    expect(t.counters.evicted).toBe(0);
    t.record(SRV, SHARED, 17, 9, H1, 11);
    expect(t.counters.evicted).toBe(1);
    expect(t.lookup(SRV, SHARED, 17, 1, 12)).toBe(0);
    expect(t.lookup(SRV, SHARED, 17, 0, 12)).toBe(H3);
    expect(t.lookup(SRV, SHARED, 17, 2, 12)).toBe(H1);
    expect(t.size).toBe(4);
  });

  it('drops a host’s datagrams when the host goes', () => {
    const t = new FragmentTable({ seed: 4 });
    t.record(SRV, SHARED, 17, 1, H1, 0);
    t.record(SRV, SHARED, 17, 2, H3, 0);
    expect(t.forgetOwner(H1)).toBe(1);
    expect(t.lookup(SRV, SHARED, 17, 1, 1)).toBe(0);
    expect(t.lookup(SRV, SHARED, 17, 2, 1)).toBe(H3);
  });

  it('answers like a model: the last record of a key, if among the last `capacity` records and not expired', () => {
    const capacity = 8;
    const sources = [SRV, 0xc6336401, 0xffffffff];
    const ids = 13;
    const op = fc.record({
      src: fc.constantFrom(...sources),
      id: fc.integer({ min: 0, max: ids - 1 }),
      owner: fc.constantFrom(H1, H3),
      dt: fc.integer({ min: 0, max: 4000 }),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 120 }), fc.integer(), (ops, seed) => {
        const t = new FragmentTable({ capacity, timeoutMs: 30_000, seed });
        const last = new Map<string, { n: number; owner: number; born: number }>();
        let now = 0;
        let n = 0;
        for (const o of ops) {
          now += o.dt;
          t.record(o.src, SHARED, 17, o.id, o.owner, now);
          last.set(`${o.src}/${o.id}`, { n: n++, owner: o.owner, born: now });
          // Every key, after every record: a probe run broken by a deletion shows up at once.
          const wrong: string[] = [];
          for (const src of sources) {
            for (let id = 0; id < ids; id++) {
              const m = last.get(`${src}/${id}`);
              const want = m !== undefined && m.n >= n - capacity && now - m.born < 30_000 ? m.owner : 0;
              if (t.lookup(src, SHARED, 17, id, now) !== want) wrong.push(`${src}/${id}`);
            }
          }
          expect(wrong).toEqual([]);
        }
      }),
      { seed: 0xf4a9, numRuns: 300 },
    );
  });
});
