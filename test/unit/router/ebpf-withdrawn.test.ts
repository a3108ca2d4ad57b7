/**
 * The fast path's withdrawn_spis map follows the slow path's record of
 * withdrawn SPI blocks (WithdrawnSpis), fed by RouterTables as the router
 * feeds it: a withdrawal adds the block, a new grant of it clears it, the
 * ring forgetting its oldest takes it out, a block given back or lapsed
 * never enters. Read as router.bpf.c reads it: the 64-SPI granule's bits.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BpfError, BpfMapType } from '../../../src/io/bpf.ts';
import { MemoryBpfObject } from '../../../src/io/bpf-memory.ts';
import { FastPathWithdrawn } from '../../../src/router/data-path/ebpf/fast-path-withdrawn.ts';
import { WITHDRAWN_SHIFT, WITHDRAWN_VALUE_BYTES } from '../../../src/router/data-path/ebpf/layout.ts';
import { RouterTables } from '../../../src/router/data-path/tables/router-tables.ts';

const H1 = '10.0.0.1';
const H2 = '10.0.0.3';

function withdrawnMap(maxEntries = 4096): MemoryBpfObject {
  return new MemoryBpfObject({
    withdrawn_spis: { type: BpfMapType.Hash, keySize: 4, valueSize: WITHDRAWN_VALUE_BYTES, maxEntries },
  });
}

/** router.bpf.c's spi_withdrawn(): one lookup of the granule, one bit. */
function programSees(o: MemoryBpfObject, spi: number): boolean {
  const key = new Uint8Array(4);
  new DataView(key.buffer).setUint32(0, spi >>> WITHDRAWN_SHIFT, true);
  const value = new Uint8Array(WITHDRAWN_VALUE_BYTES);
  if (!o.map('withdrawn_spis').lookup(key, value)) return false;
  const bits = new DataView(value.buffer).getBigUint64(0, true);
  return ((bits >> BigInt(spi & 63)) & 1n) === 1n;
}

function entries(o: MemoryBpfObject): number {
  return o.map('withdrawn_spis').dump(1 << 20).count;
}

/** RouterTables with the fast path's withdrawn map as its mirror (owners are FastPathTables' business). */
function mirrored(o: MemoryBpfObject): { tables: RouterTables; fast: FastPathWithdrawn } {
  const tables = new RouterTables({ maxSpis: 1 << 16 });
  const fast = new FastPathWithdrawn(o.map('withdrawn_spis'));
  tables.setMirror({
    onLeaseAdded: () => undefined,
    onLeaseRemoved: () => undefined,
    onSpisWithdrawn: (ranges) => fast.sync(ranges),
  });
  return { tables, fast };
}

const spi = (host: string, lowest: number, count: number) => ({ host, kind: 'spi' as const, lowest, count });

describe('the withdrawn_spis map', () => {
  it('holds a block from its withdrawal until it is granted again, and nothing of a block given back', () => {
    const o = withdrawnMap();
    const { tables } = mirrored(o);
    tables.onLeaseAdded(spi(H1, 1024, 64));
    tables.onLeaseAdded(spi(H1, 2000, 100));
    tables.onLeaseAdded(spi(H2, 4096, 64));
    expect(entries(o)).toBe(0);

    // Given back (not withdrawn): ESP in UDP for it is the port owner's business, as on the slow path.
    tables.onLeaseRemoved(spi(H2, 4096, 64));
    expect(entries(o)).toBe(0);

    tables.onLeaseRemoved(spi(H1, 1024, 64), true);
    tables.onLeaseRemoved(spi(H1, 2000, 100), true);
    for (const s of [1024, 1087, 2000, 2047, 2048, 2099]) expect(programSees(o, s), `spi ${s}`).toBe(true);
    for (const s of [1023, 1088, 1999, 2100, 4096]) expect(programSees(o, s), `spi ${s}`).toBe(false);
    // One granule for the aligned block, three for the ragged one (1984-2047, 2048-2111 and none more).
    expect(entries(o)).toBe(3);
    for (let s = 900; s < 2200; s++) expect(programSees(o, s), `spi ${s}`).toBe(tables.withdrawnSpis.has(s));

    // Granted again, in part: the range is forgotten whole, as WithdrawnSpis forgets it.
    tables.onLeaseAdded(spi(H2, 2040, 8));
    expect(programSees(o, 2000)).toBe(false);
    expect(programSees(o, 2099)).toBe(false);
    expect(programSees(o, 1024)).toBe(true);
    expect(entries(o)).toBe(1);
    tables.onLeaseAdded(spi(H2, 1024, 64));
    expect(entries(o)).toBe(0);
  });

  it('loses the oldest block when the ring forgets it', () => {
    const o = withdrawnMap();
    const { tables, fast } = mirrored(o);
    const capacity = tables.withdrawnSpis.capacity;
    const block = (i: number) => spi(H1, 256 + i * 64, 64);
    for (let i = 0; i <= capacity; i++) tables.onLeaseAdded(block(i));
    for (let i = 0; i < capacity; i++) tables.onLeaseRemoved(block(i), true);
    expect(entries(o)).toBe(capacity);
    expect(programSees(o, 256)).toBe(true);
    // One more withdrawal: the first block falls out of the ring, and out of the map.
    tables.onLeaseRemoved(block(capacity), true);
    expect(tables.withdrawnSpis.has(256)).toBe(false);
    expect(programSees(o, 256)).toBe(false);
    expect(programSees(o, 256 + capacity * 64)).toBe(true);
    expect(entries(o)).toBe(capacity);
    expect(fast.granules).toBe(capacity);
  });

  it('reaches a mirror attached after the withdrawal', () => {
    const tables = new RouterTables();
    tables.onLeaseAdded(spi(H1, 1024, 64));
    tables.onLeaseRemoved(spi(H1, 1024, 64), true);
    const o = withdrawnMap();
    const fast = new FastPathWithdrawn(o.map('withdrawn_spis'));
    tables.setMirror({
      onLeaseAdded: () => undefined,
      onLeaseRemoved: () => undefined,
      onSpisWithdrawn: (ranges) => fast.sync(ranges),
    });
    expect(programSees(o, 1030)).toBe(true);
  });

  it('throws BpfError when the map is full (RouterFastPath then detaches)', () => {
    const o = withdrawnMap(2);
    const fast = new FastPathWithdrawn(o.map('withdrawn_spis'));
    expect(() => fast.sync([{ first: 1024, end: 1024 + 3 * 64 }])).toThrow(BpfError);
  });

  it('agrees with WithdrawnSpis after any sequence of grants, withdrawals and returns', () => {
    const event = fc.record({
      op: fc.constantFrom('grant', 'withdraw', 'give-back'),
      host: fc.constantFrom(H1, H2),
      slot: fc.integer({ min: 0, max: 20 }),
      size: fc.constantFrom(1, 24, 64, 100, 200),
    });
    fc.assert(
      fc.property(fc.array(event, { maxLength: 120 }), (events) => {
        const o = withdrawnMap();
        const { tables, fast } = mirrored(o);
        const SPACE = 256 + 21 * 40 + 200 + 64;
        for (const e of events) {
          const b = spi(e.host, 256 + e.slot * 40, e.size);
          if (e.op === 'grant') tables.onLeaseAdded(b);
          else tables.onLeaseRemoved(b, e.op === 'withdraw');
          for (let s = 192; s < SPACE; s++)
            if (programSees(o, s) !== tables.withdrawnSpis.has(s))
              throw new Error(`spi ${s}: map ${programSees(o, s)}, slow path ${tables.withdrawnSpis.has(s)}`);
          // No entry without a withdrawn SPI in it.
          expect(entries(o)).toBe(fast.granules);
        }
      }),
      { numRuns: 60 },
    );
  });
});
