import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlockPool } from '../../../src/pap/block-pool.ts';
import { PORT_RANGE, SPI_RANGE } from '../../../src/pap/block.ts';
import { ResourcePool } from '../../../src/pap/resource-pool.ts';

describe('BlockPool', () => {
  it('hands out contiguous blocks lowest first', () => {
    const pool = new BlockPool({ min: 1024, max: 65535 });
    expect(pool.allocate(32)).toEqual({ lowest: 1024, count: 32 });
    expect(pool.allocate(16)).toEqual({ lowest: 1056, count: 16 });
    expect(pool.free).toBe(65535 - 1024 + 1 - 48);
  });

  it('reuses a released hole before untouched space (first fit)', () => {
    const pool = new BlockPool({ min: 0, max: 999 });
    const a = pool.allocate(10)!;
    pool.allocate(10);
    pool.release(a.lowest, a.count);
    expect(pool.allocate(8)).toEqual({ lowest: 0, count: 8 });
    // The 2 left in the hole are too few for 5: skip to the tail.
    expect(pool.allocate(5)).toEqual({ lowest: 20, count: 5 });
  });

  it('grants fewer than asked, from the longest extent, when nothing is long enough', () => {
    const pool = new BlockPool({ min: 0, max: 99 });
    // Leave holes of 10 (0-9), 25 (40-64) and 5 (95-99).
    pool.reserve(10, 30);
    pool.reserve(65, 30);
    expect(pool.largest).toBe(25);
    expect(pool.allocate(32)).toEqual({ lowest: 40, count: 25 });
    expect(pool.allocate(32, 11)).toBeUndefined(); // only 10 and 5 left
    expect(pool.allocate(32)).toEqual({ lowest: 0, count: 10 });
  });

  it('returns undefined when empty', () => {
    const pool = new BlockPool({ min: 5, max: 6 });
    expect(pool.allocate(4)).toEqual({ lowest: 5, count: 2 });
    expect(pool.allocate(1)).toBeUndefined();
  });

  it('coalesces released neighbours into one extent', () => {
    const pool = new BlockPool({ min: 0, max: 99 });
    const blocks = [pool.allocate(10)!, pool.allocate(10)!, pool.allocate(10)!];
    expect(pool.extentCount).toBe(1);
    pool.release(blocks[0]!.lowest, 10);
    pool.release(blocks[2]!.lowest, 10);
    expect(pool.extentCount).toBe(2);
    pool.release(blocks[1]!.lowest, 10);
    expect([...pool.extents()]).toEqual([{ lowest: 0, count: 100 }]);
  });

  it('refuses to release what is already free or out of range', () => {
    const pool = new BlockPool({ min: 100, max: 199 });
    const b = pool.allocate(10)!;
    expect(() => pool.release(b.lowest + 5, 10)).toThrow(RangeError);
    expect(() => pool.release(95, 5)).toThrow(RangeError);
    expect(() => pool.release(0, 0)).toThrow(RangeError);
    // A failed release leaves the pool as it was.
    expect(pool.free).toBe(90);
    pool.release(b.lowest, 10);
    expect(() => pool.release(b.lowest, 1)).toThrow(RangeError);
    expect(pool.free).toBe(100);
  });

  it('reserve takes an exact block only when all of it is free', () => {
    const pool = new BlockPool({ min: 0, max: 99 });
    expect(pool.reserve(50, 10)).toBe(true);
    expect(pool.reserve(55, 10)).toBe(false);
    expect(pool.reserve(45, 6)).toBe(false);
    expect(pool.reserve(95, 6)).toBe(false);
    expect(pool.reserve(60, 40)).toBe(true);
    expect([...pool.extents()]).toEqual([{ lowest: 0, count: 50 }]);
  });

  it('covers the whole SPI space without overflow', () => {
    const pool = new BlockPool(SPI_RANGE);
    expect(pool.free).toBe(0xffffffff - 255);
    expect(pool.reserve(0xffffffff - 63, 64)).toBe(true);
    expect(pool.allocate(64)).toEqual({ lowest: 256, count: 64 });
    expect(pool.isFree(0xffffffff)).toBe(false);
    expect(pool.isFree(0xffffffff - 64)).toBe(true);
  });

  it('agrees with a bitmap model under random allocate/reserve/release', () => {
    const size = 200;
    const op = fc.oneof(
      fc.record({ t: fc.constant('alloc' as const), n: fc.integer({ min: 1, max: 40 }) }),
      fc.record({
        t: fc.constant('reserve' as const),
        at: fc.integer({ min: 0, max: size - 1 }),
        n: fc.integer({ min: 1, max: 20 }),
      }),
      fc.record({ t: fc.constant('release' as const), pick: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 120 }), (ops) => {
        const pool = new BlockPool({ min: 0, max: size - 1 });
        const used = new Uint8Array(size);
        const held: Array<{ lowest: number; count: number }> = [];
        const longestFree = (): number => {
          let best = 0;
          let run = 0;
          for (const u of used) {
            run = u ? 0 : run + 1;
            best = Math.max(best, run);
          }
          return best;
        };
        for (const o of ops) {
          if (o.t === 'alloc') {
            const longest = longestFree();
            const b = pool.allocate(o.n);
            if (longest === 0) {
              expect(b).toBeUndefined();
              continue;
            }
            const want = Math.min(o.n, longest);
            expect(b!.count).toBe(want);
            // First fit: it starts where the lowest free run of that length does.
            let run = 0;
            let firstStart = -1;
            for (let i = 0; i < size && firstStart < 0; i++) {
              run = used[i] ? 0 : run + 1;
              if (run === want) firstStart = i - want + 1;
            }
            expect(b!.lowest).toBe(firstStart);
            for (let i = b!.lowest; i < b!.lowest + b!.count; i++) {
              expect(used[i]).toBe(0);
              used[i] = 1;
            }
            held.push(b!);
          } else if (o.t === 'reserve') {
            const fits = o.at + o.n <= size && used.subarray(o.at, o.at + o.n).every((u) => u === 0);
            expect(pool.reserve(o.at, o.n)).toBe(fits);
            if (fits) {
              used.fill(1, o.at, o.at + o.n);
              held.push({ lowest: o.at, count: o.n });
            }
          } else if (held.length > 0) {
            const [b] = held.splice(o.pick % held.length, 1);
            pool.release(b!.lowest, b!.count);
            used.fill(0, b!.lowest, b!.lowest + b!.count);
          }
          // The pool's extents are exactly the maximal free runs of the model.
          const model: Array<{ lowest: number; count: number }> = [];
          for (let i = 0; i < size; i++) {
            if (used[i]) continue;
            const last = model[model.length - 1];
            if (last !== undefined && last.lowest + last.count === i) last.count++;
            else model.push({ lowest: i, count: 1 });
          }
          expect([...pool.extents()]).toEqual(model);
          expect(pool.free).toBe(used.reduce((n, u) => n + (u ? 0 : 1), 0));
          expect(pool.largest).toBe(longestFree());
          expect(pool.extentCount).toBe(model.length);
        }
      }),
      { seed: 4303, numRuns: 300 },
    );
  });

  it('a search from a given start takes the run there, else the first fit above, else wraps to the bottom', () => {
    const size = 200;
    const op = fc.oneof(
      fc.record({
        t: fc.constant('alloc' as const),
        n: fc.integer({ min: 1, max: 40 }),
        from: fc.integer({ min: 0, max: size + 5 }),
      }),
      fc.record({ t: fc.constant('release' as const), pick: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
        const pool = new BlockPool({ min: 0, max: size - 1 });
        const used = new Uint8Array(size);
        const held: Array<{ lowest: number; count: number }> = [];
        for (const o of ops) {
          if (o.t === 'release') {
            if (held.length === 0) continue;
            const [b] = held.splice(o.pick % held.length, 1);
            pool.release(b!.lowest, b!.count);
            used.fill(0, b!.lowest, b!.lowest + b!.count);
            continue;
          }
          const runs: Array<{ lowest: number; count: number }> = [];
          for (let i = 0; i < size; i++) {
            if (used[i]) continue;
            const last = runs[runs.length - 1];
            if (last !== undefined && last.lowest + last.count === i) last.count++;
            else runs.push({ lowest: i, count: 1 });
          }
          const longest = Math.max(0, ...runs.map((r) => r.count));
          const b = pool.allocate(o.n, 1, o.from);
          if (longest === 0) {
            expect(b).toBeUndefined();
            continue;
          }
          const want = Math.min(o.n, longest);
          const holder = runs.find((r) => r.lowest <= o.from && o.from + want <= r.lowest + r.count);
          const above = runs.find((r) => r.lowest > o.from && r.count >= want);
          const bottom = runs.find((r) => r.count >= want)!;
          const expected = holder !== undefined ? o.from : (above ?? bottom).lowest;
          expect(b).toEqual({ lowest: expected, count: want });
          used.fill(1, b!.lowest, b!.lowest + b!.count);
          held.push(b!);
        }
        expect(pool.free).toBe(used.reduce((n, u) => n + (u ? 0 : 1), 0));
      }),
      { seed: 6888, numRuns: 300 },
    );
  });

  it('allocates and releases in logarithmic time on a fragmented pool', () => {
    // 30,000 scattered holes in the SPI space, then timed churn. A linear
    // allocator would take ~30,000 steps per call; this must stay far below.
    const pool = new BlockPool(SPI_RANGE);
    const blocks = [];
    for (let i = 0; i < 60_000; i++) blocks.push(pool.allocate(64)!);
    for (let i = 0; i < blocks.length; i += 2) pool.release(blocks[i]!.lowest, 64);
    expect(pool.extentCount).toBe(30_001);
    const rounds = 20_000;
    const t0 = performance.now();
    for (let i = 0; i < rounds; i++) {
      const b = pool.allocate(100)!; // only the tail fits: worst case for a scan
      pool.release(b.lowest, b.count);
    }
    const perOp = ((performance.now() - t0) * 1000) / (2 * rounds);
    expect(perOp).toBeLessThan(20); // microseconds; measured ~1 us
  });
});

describe('ResourcePool', () => {
  it('honours the port code: low below 10000, high at or above', () => {
    const pool = new ResourcePool('port', PORT_RANGE);
    expect(pool.allocate(32, 'low')).toEqual({ lowest: 1024, count: 32 });
    expect(pool.allocate(32, 'high')).toEqual({ lowest: 10000, count: 32 });
  });

  it('never hands out a block that straddles 10000', () => {
    const pool = new ResourcePool('port', { min: 9990, max: 10020 });
    expect(pool.allocate(32, 'low')).toEqual({ lowest: 10000, count: 21 });
    expect(pool.allocate(32, 'low')).toEqual({ lowest: 9990, count: 10 });
    expect(pool.allocate(1, 'low')).toBeUndefined();
  });

  it('falls back to the other side for a full block before granting fewer', () => {
    const pool = new ResourcePool('port', { min: 9980, max: 10099 });
    // Low side has 20, high side 100.
    expect(pool.allocate(32, 'low')).toEqual({ lowest: 10000, count: 32 });
    expect(pool.allocate(68, 'low')).toEqual({ lowest: 10032, count: 68 });
    expect(pool.allocate(32, 'high')).toEqual({ lowest: 9980, count: 20 });
  });

  it('reserves and releases across the split, ignoring out-of-range values', () => {
    const pool = new ResourcePool('port', { min: 9000, max: 10999 });
    expect(pool.reserve(9990, 20)).toBe(true);
    expect(pool.isFree(9999)).toBe(false);
    expect(pool.isFree(10009)).toBe(false);
    expect(pool.reserve(9995, 2)).toBe(false);
    pool.release(9990, 20);
    expect(pool.free).toBe(2000);
    expect(pool.reserve(8990, 20)).toBe(true); // 9000-9009 in range
    expect(pool.free).toBe(1990);
    pool.release(8990, 20);
    expect(pool.free).toBe(2000);
  });

  it('never gives out reserved SPIs 1-255', () => {
    const pool = new ResourcePool('spi', SPI_RANGE);
    expect(pool.allocate(64)).toEqual({ lowest: 256, count: 64 });
    expect(pool.isFree(255)).toBe(false);
    expect(pool.reserve(200, 100)).toBe(false);
  });
});
