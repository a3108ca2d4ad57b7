/**
 * FastPathTables programs the maps so that the programs' lookups (read here
 * as router.bpf.c reads them: port_owner, spi_blocks then spi_exact,
 * holders) agree with the slow path's tables after any sequence of lease
 * events, and so that no intermediate state of the maps, element by
 * element, routes a value to a host that does not own it before and after.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BpfMapType, BPF_F_MMAPABLE } from '../../../src/io/bpf.ts';
import { MemoryBpfObject } from '../../../src/io/bpf-memory.ts';
import { FastPathTables } from '../../../src/router/data-path/ebpf/fast-path-tables.ts';
import type { LeaseBlockEvent } from '../../../src/router/data-path/ebpf/fast-path-tables.ts';
import { LeaseOwnership } from '../../../src/router/data-path/tables/lease-ownership.ts';
import { RouterTables } from '../../../src/router/data-path/tables/router-tables.ts';

const ip = (d: number) => ((10 << 24) | d) >>> 0;
const H1 = ip(1);
const H2 = ip(3);

function routerMaps(hashEntries = 4096): MemoryBpfObject {
  const hash = { type: BpfMapType.Hash, keySize: 4, valueSize: 4, maxEntries: hashEntries };
  return new MemoryBpfObject({
    port_owner: { type: BpfMapType.Array, keySize: 4, valueSize: 4, maxEntries: 65536 },
    spi_blocks: hash,
    spi_exact: hash,
    holders: hash,
    last_seen: {
      type: BpfMapType.Array,
      keySize: 4,
      valueSize: 8,
      maxEntries: 3 * 65536,
      flags: BPF_F_MMAPABLE,
    },
  });
}

function tablesOn(o: MemoryBpfObject, spiShift: number): FastPathTables {
  return new FastPathTables(
    {
      portOwner: o.map('port_owner'),
      spiBlocks: o.map('spi_blocks'),
      spiExact: o.map('spi_exact'),
      holders: o.map('holders'),
      lastSeen: o.map('last_seen'),
    },
    { spiShift },
  );
}

/** The programs' view of the maps. */
class ProgramView {
  readonly #key = new Uint8Array(4);
  readonly #value = new Uint8Array(4);
  constructor(
    private readonly o: MemoryBpfObject,
    private readonly spiShift: number,
  ) {}

  #u32(map: string, key: number, keyBigEndian = false): number {
    new DataView(this.#key.buffer).setUint32(0, key, !keyBigEndian);
    if (!this.o.map(map).lookup(this.#key, this.#value)) return 0;
    return new DataView(this.#value.buffer).getUint32(0, false);
  }

  port(p: number): number {
    return this.#u32('port_owner', p);
  }

  spi(s: number): number {
    return this.#u32('spi_blocks', Math.floor(s / 2 ** this.spiShift)) || this.#u32('spi_exact', s);
  }

  holds(host: number): boolean {
    return this.#u32('holders', host, true) !== 0;
  }
}

describe('FastPathTables', () => {
  it('enters a port block and an SPI block as the programs look them up', () => {
    const o = routerMaps();
    const t = tablesOn(o, 6);
    const view = new ProgramView(o, 6);
    expect(t.onLeaseAdded({ host: H1, kind: 'port', first: 1024, count: 32 })).toBe('added');
    expect(t.onLeaseAdded({ host: H1, kind: 'port', first: 1024, count: 32 })).toBe('exists');
    expect(t.onLeaseAdded({ host: H2, kind: 'port', first: 1050, count: 32 })).toBe('overlap');
    // Values the host holds already count as its own, as LeaseOwnership counts them.
    expect(t.onLeaseAdded({ host: H1, kind: 'port', first: 1040, count: 32 })).toBe('added');
    expect(t.onLeaseRemoved({ host: H1, kind: 'port', first: 1056, count: 16 })).toBe('removed');
    expect([view.port(1023), view.port(1024), view.port(1055), view.port(1056)]).toEqual([0, H1, H1, 0]);
    // One granule entry per 64 aligned SPIs, per-SPI entries at the ragged ends.
    expect(t.onLeaseAdded({ host: H2, kind: 'spi', first: 256 + 60, count: 64 * 3 + 8 })).toBe('added');
    expect(t.spiEntries()).toEqual({ granules: 3, exact: 8 });
    expect([
      view.spi(315),
      view.spi(316),
      view.spi(383),
      view.spi(384),
      view.spi(515),
      view.spi(516),
    ]).toEqual([0, H2, H2, H2, H2, 0]);
    expect(view.holds(H1) && view.holds(H2)).toBe(true);
    expect(t.onLeaseRemoved({ host: H1, kind: 'port', first: 1024, count: 32 })).toBe('removed');
    expect(view.port(1030)).toBe(0);
    expect(view.holds(H1)).toBe(false);
    expect(t.onLeaseRemoved({ host: H1, kind: 'port', first: 1024, count: 32 })).toBe('not-owned');
  });

  it('costs a few entries and system calls for a million SPIs', () => {
    const o = routerMaps(1 << 16);
    const t = tablesOn(o, 6);
    const before = o.map('spi_blocks').calls;
    expect(t.onLeaseAdded({ host: H1, kind: 'spi', first: 256, count: 1 << 20 })).toBe('added');
    expect(o.map('spi_blocks').size).toBe((1 << 20) / 64);
    expect(o.map('spi_exact').size).toBe(0);
    expect(o.map('spi_blocks').calls - before).toBe(1);
    expect(new ProgramView(o, 6).spi(256 + (1 << 20) - 1)).toBe(H1);
    expect(t.onLeaseRemoved({ host: H1, kind: 'spi', first: 256, count: 1 << 20 })).toBe('removed');
    expect(o.map('spi_blocks').size).toBe(0);
  });

  it('clears FIG. 12 stamps of ports that leave a host', () => {
    const o = routerMaps();
    const t = tablesOn(o, 6);
    const stamps = new BigUint64Array(o.map('last_seen').mmap());
    t.onLeaseAdded({ host: H1, kind: 'port', first: 2000, count: 4 });
    stamps[2001] = 5n; // TCP plane, as the program would stamp it
    stamps[65536 + 2002] = 6n; // UDP
    stamps[2 * 65536 + 2003] = 7n; // ICMP
    stamps[3000] = 8n; // not H1's: stays
    t.onLeaseRemoved({ host: H1, kind: 'port', first: 2000, count: 4 });
    expect([stamps[2001], stamps[65536 + 2002], stamps[2 * 65536 + 2003], stamps[3000]]).toEqual([
      0n,
      0n,
      0n,
      8n,
    ]);
  });

  it('agrees with the slow path’s LeaseOwnership after any sequence of lease events, and never routes to a non-owner meanwhile', () => {
    const hosts = [H1, H2, ip(5)];
    const event = fc.record({
      add: fc.boolean(),
      host: fc.constantFrom(...hosts),
      kind: fc.constantFrom<'port' | 'spi'>('port', 'spi'),
      // As the lease table hands them out: blocks of one size per kind, so
      // two blocks are the same or disjoint (40 SPIs: ragged granule edges).
      slot: fc.integer({ min: 0, max: 6 }),
    });
    fc.assert(
      fc.property(fc.array(event, { maxLength: 25 }), fc.integer({ min: 0, max: 5 }), (events, shift) => {
        const o = routerMaps();
        const fast = tablesOn(o, shift);
        const view = new ProgramView(o, shift);
        const slow = new LeaseOwnership();
        const SPACE = 300;
        // Who may be routed to, value by value, while one event is applied
        // (element by element, as the kernel applies a batch): the owner
        // before or the owner after, never anyone else, also while a granule
        // changes between one entry and per-SPI entries.
        let allowed: { port: number[][]; spi: number[][] } = { port: [], spi: [] };
        // Only values in the event's granules can change while it is applied.
        let from = 1;
        let to = 1;
        const check = (): void => {
          for (let v = from; v < to; v++) {
            const p = view.port(v);
            if (p !== 0 && !allowed.port[v]!.includes(p)) throw new Error(`port ${v} routed to ${p}`);
            const s = view.spi(v);
            if (s !== 0 && !allowed.spi[v]!.includes(s)) throw new Error(`spi ${v} routed to ${s}`);
          }
        };
        for (const name of ['port_owner', 'spi_blocks', 'spi_exact']) o.map(name).onElementChange = check;
        for (const e of events) {
          const size = e.kind === 'port' ? 32 : 40;
          const b: LeaseBlockEvent = { host: e.host, kind: e.kind, first: 1 + e.slot * size, count: size };
          const ownersNow = () => ({
            port: Array.from({ length: SPACE }, (_, v) => slow.portOwner(v)),
            spi: Array.from({ length: SPACE }, (_, v) => slow.spiOwner(v)),
          });
          const per = 2 ** shift;
          from = Math.max(1, Math.floor(b.first / per) * per);
          to = Math.min(SPACE, Math.ceil((b.first + b.count) / per) * per);
          const before = ownersNow();
          const want = e.add
            ? slow.add(b.host, b.kind, b.first, b.count)
            : slow.remove(b.host, b.kind, b.first, b.count);
          const after = ownersNow();
          allowed = {
            port: before.port.map((x, v) => [x, after.port[v]!]),
            spi: before.spi.map((x, v) => [x, after.spi[v]!]),
          };
          expect(e.add ? fast.onLeaseAdded(b) : fast.onLeaseRemoved(b)).toBe(want);
          for (let v = 1; v < SPACE; v++) {
            expect(view.port(v)).toBe(slow.portOwner(v));
            expect(view.spi(v)).toBe(slow.spiOwner(v));
          }
          for (const h of hosts) expect(view.holds(h)).toBe(slow.holds(h));
        }
      }),
      { numRuns: 100 },
    );
    // A hundred sequences, each checked over the whole port space: ~10 s alone, more beside the other files.
  }, 60_000);

  it('fed by RouterTables, never knows an owner the slow path’s index does not, at any element change', () => {
    const hosts = [H1, H2, ip(5)];
    const event = fc.record({
      add: fc.boolean(),
      host: fc.constantFrom(...hosts),
      kind: fc.constantFrom<'port' | 'spi'>('port', 'spi'),
      slot: fc.integer({ min: 0, max: 6 }),
      // Blocks of two sizes: some adds cover another block of the same host in part.
      size: fc.constantFrom(24, 40),
    });
    fc.assert(
      fc.property(fc.array(event, { maxLength: 25 }), fc.integer({ min: 0, max: 5 }), (events, shift) => {
        const o = routerMaps();
        const view = new ProgramView(o, shift);
        const tables = new RouterTables({ maxSpis: 4096 });
        const slow = tables.ownership;
        const SPACE = 400;
        // Only values in the event's granules can change while it is applied.
        let from = 1;
        let to = SPACE;
        const check = (): void => {
          for (let v = from; v < to; v++) {
            const p = view.port(v);
            if (p !== 0 && p !== slow.portOwner(v))
              throw new Error(`port ${v}: fast ${p}, slow ${slow.portOwner(v)}`);
            const s = view.spi(v);
            if (s !== 0 && s !== slow.spiOwner(v))
              throw new Error(`spi ${v}: fast ${s}, slow ${slow.spiOwner(v)}`);
          }
        };
        // Leases that exist before the mirror is attached reach it too.
        tables.onLeaseAdded({ host: '10.0.0.9', kind: 'port', lowest: 390, count: 5 });
        tables.setMirror(tablesOn(o, shift));
        for (const name of ['port_owner', 'spi_blocks', 'spi_exact']) o.map(name).onElementChange = check;
        for (const e of events) {
          const b = { host: `10.0.0.${e.host & 0xff}`, kind: e.kind, lowest: 1 + e.slot * 32, count: e.size };
          const per = 2 ** shift;
          from = Math.max(1, Math.floor(b.lowest / per) * per);
          to = Math.min(SPACE, Math.ceil((b.lowest + b.count) / per) * per);
          if (e.add) tables.onLeaseAdded(b);
          else tables.onLeaseRemoved(b);
          for (let v = 1; v < SPACE; v++)
            if (view.port(v) !== slow.portOwner(v) || view.spi(v) !== slow.spiOwner(v))
              throw new Error(`value ${v} differs after the event`);
          for (const h of hosts) expect(view.holds(h)).toBe(slow.holds(h));
        }
      }),
      { numRuns: 60 },
    );
  });
});
