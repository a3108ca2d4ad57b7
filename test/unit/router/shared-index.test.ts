/**
 * The shared lease index (LeaseOwnership.shared, U32Map's sequence lock):
 * the main thread writes, a worker thread reads at the same time with no
 * lock. Property: the reader never sees an owner for a block after its
 * removal returned (ports, SPIs, "does this host hold anything"), and never
 * misses a value that stays present while blocks around it are added and
 * removed (an SPI map small enough that deletes shift runs all the time).
 * The window in which a delete's shift can hide a key is a few instructions
 * wide, so the property run rarely meets one; the reader caught inside a
 * half-done delete is also set up on purpose (it fails without the
 * sequence lock: the reader answers 0 for a key that stays).
 */
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LeaseOwnership } from '../../../src/router/data-path/tables/lease-ownership.ts';
import type { OneLookup, ReaderRun } from './shared-index-reader.ts';

const STABLE = {
  host: 0x0a00_0009,
  ports: [1000, 1064] as [number, number],
  spis: [0x1000, 0x1000 + 1500] as [number, number],
};

function startReader(): Worker {
  const tsx = import.meta.resolve('tsx/esm/api');
  const main = new URL('./shared-index-reader.ts', import.meta.url).href;
  return new Worker(
    `import(${JSON.stringify(tsx)}).then((a) => { a.register(); return import(${JSON.stringify(main)}); });`,
    {
      eval: true,
    },
  );
}

describe('the shared ownership index, written here and read in a worker thread', () => {
  let reader: Worker;
  beforeAll(() => {
    reader = startReader();
  });
  afterAll(async () => {
    await reader.terminate();
  });

  it('a removed block is gone everywhere once removal returns; a present value is never missed', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 600, maxLength: 900 }),
        fc.integer({ min: 1, max: 8 }),
        async (counts, lag) => {
          // 2048 SPIs at most: 4096 slots, so 1500 stable SPIs plus the churn keep the runs long.
          const own = LeaseOwnership.shared(2048);
          const control = new SharedArrayBuffer(6 * 4);
          const ctl = new Int32Array(control);
          ctl[0] = -1;
          const churn = { portBase: 2000, spiBase: 0x10_0000, hostBase: 0x0a01_0000, counts };
          expect(own.add(STABLE.host, 'port', STABLE.ports[0], STABLE.ports[1] - STABLE.ports[0])).toBe(
            'added',
          );
          expect(own.add(STABLE.host, 'spi', STABLE.spis[0], STABLE.spis[1] - STABLE.spis[0])).toBe('added');
          const done = new Promise<{ missed: number; stale: number; passes: number }>((resolve) =>
            reader.once('message', resolve),
          );
          reader.postMessage({ memory: own.memory!, control, stable: STABLE, churn } satisfies ReaderRun);
          while (Atomics.load(ctl, 5) === 0) await new Promise((r) => setTimeout(r, 1));
          for (let r = 0; r < counts.length; r++) {
            const host = churn.hostBase + r;
            own.add(host, 'spi', churn.spiBase + r * 64, counts[r]!);
            own.add(host, 'port', churn.portBase + r * 64, counts[r]!);
            const gone = r - lag;
            if (gone >= 0) {
              const h = churn.hostBase + gone;
              expect(own.remove(h, 'spi', churn.spiBase + gone * 64, counts[gone]!)).toBe('removed');
              expect(own.remove(h, 'port', churn.portBase + gone * 64, counts[gone]!)).toBe('removed');
              Atomics.store(ctl, 0, gone);
            }
            // Let the reader run over this state too, not only over the writes.
            if (r % 50 === 49) await new Promise((res) => setTimeout(res, 2));
          }
          Atomics.store(ctl, 1, 1);
          const seen = await done;
          expect(seen.passes).toBeGreaterThan(0);
          expect(seen.missed).toBe(0);
          expect(seen.stale).toBe(0);
        },
      ),
      { numRuns: 15 },
    );
  }, 120_000);

  it('a reader that meets a delete half done (its key not where it will be) waits for it and finds the key', async () => {
    const own = LeaseOwnership.shared(1024);
    const HOST = 0x0a00_0002;
    const SPI = 0x3000;
    own.add(HOST, 'spi', SPI, 1);
    const memory = own.memory!;
    const keys = new Uint32Array(memory.spis.keys);
    const seq = new Int32Array(memory.spis.seq);
    const slot = keys.indexOf(SPI);
    expect(slot).toBeGreaterThanOrEqual(0);
    // What a reader can meet while a delete moves the key: the writer's sequence odd, the key not in its slot.
    Atomics.add(seq, 0, 1);
    Atomics.store(keys, slot, 0);
    const answer = new Promise<number>((resolve) => {
      const on = (m: { probing?: boolean; owner?: number }) => {
        if (m.owner === undefined) return;
        reader.off('message', on);
        resolve(m.owner);
      };
      reader.on('message', on);
    });
    const probing = new Promise<void>((resolve) => {
      const on = (m: { probing?: boolean }) => {
        if (m.probing !== true) return;
        reader.off('message', on);
        resolve();
      };
      reader.on('message', on);
    });
    reader.postMessage({ one: true, memory, spi: SPI } satisfies OneLookup);
    await probing;
    await new Promise((r) => setTimeout(r, 50));
    // The delete completes: the key is back where it stays, the sequence even again.
    Atomics.store(keys, slot, SPI);
    Atomics.add(seq, 0, 1);
    expect(await answer).toBe(HOST);
  });

  it("a reader built on the writer's memory sees what it holds, and a non-shared index has no memory", () => {
    const own = LeaseOwnership.shared(1024);
    own.add(0x0a00_0001, 'port', 5000, 10);
    own.add(0x0a00_0001, 'spi', 0x2000, 10);
    const r = LeaseOwnership.reader(own.memory!);
    expect(r.portOwner(5005)).toBe(0x0a00_0001);
    expect(r.spiOwner(0x2009)).toBe(0x0a00_0001);
    expect(r.holds(0x0a00_0001)).toBe(true);
    expect(r.portCount).toBe(10);
    own.remove(0x0a00_0001, 'port', 5000, 10);
    own.remove(0x0a00_0001, 'spi', 0x2000, 10);
    expect(r.portOwner(5005)).toBe(0);
    expect(r.spiOwner(0x2009)).toBe(0);
    expect(r.holds(0x0a00_0001)).toBe(false);
    expect(new LeaseOwnership().memory).toBeUndefined();
  });
});
