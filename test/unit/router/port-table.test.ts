import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { PortTable } from '../../../src/router/data-path/tables/port-table.ts';

const ip = (a: number, b: number, c: number, d: number) => ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
const H1 = ip(10, 0, 0, 1);
const H3 = ip(10, 0, 0, 3);

describe('PortTable (FIG. 8)', () => {
  it('maps the patent example: 1026-1057 to 10.0.0.1, 1058-1073 to 10.0.0.3', () => {
    const t = new PortTable();
    expect(t.addBlock(H1, 1026, 32)).toBe('added');
    expect(t.addBlock(H3, 1058, 16)).toBe('added');
    expect(t.ownerOf(1025)).toBe(0);
    expect(t.ownerOf(1026)).toBe(H1);
    expect(t.ownerOf(1032)).toBe(H1); // Table 4 -> Table 5
    expect(t.ownerOf(1057)).toBe(H1);
    expect(t.ownerOf(1058)).toBe(H3);
    expect(t.ownerOf(1073)).toBe(H3);
    expect(t.ownerOf(1074)).toBe(0);
    expect(t.owns(H1, 1032)).toBe(true);
    expect(t.owns(H3, 1032)).toBe(false);
    expect(t.owns(0, 1)).toBe(false);
    expect(t.portCount).toBe(48);
    expect(t.rows()).toEqual([
      { host: H1, first: 1026, count: 32, address: '10.0.0.1' },
      { host: H3, first: 1058, count: 16, address: '10.0.0.3' },
    ]);
  });

  it('uses the port blocks for ICMP echo identifiers', () => {
    const t = new PortTable();
    t.addBlock(H1, 1026, 32);
    expect(t.ownerOfIcmpId(1040)).toBe(H1);
    expect(t.ownerOfIcmpId(1025)).toBe(0);
  });

  it('keeps several rows per host and rejects overlaps without changing anything', () => {
    const t = new PortTable();
    expect(t.addBlock(H1, 2000, 32)).toBe('added');
    expect(t.addBlock(H1, 3000, 32)).toBe('added');
    expect(t.addBlock(H1, 2000, 32)).toBe('exists');
    expect(t.addBlock(H3, 2031, 10)).toBe('overlap');
    expect(t.addBlock(H1, 2010, 5)).toBe('overlap');
    expect(t.ownerOf(2035)).toBe(0);
    expect(t.blocksOf(H1)).toEqual([
      { host: H1, first: 2000, count: 32 },
      { host: H1, first: 3000, count: 32 },
    ]);
    expect(t.blockCount).toBe(2);
  });

  it('rejects ranges outside 1..65535 and hosts that are not addresses', () => {
    const t = new PortTable();
    expect(t.addBlock(H1, 0, 4)).toBe('out-of-range');
    expect(t.addBlock(H1, 65535, 2)).toBe('out-of-range');
    expect(t.addBlock(H1, 10, 0)).toBe('out-of-range');
    expect(t.addBlock(0, 10, 1)).toBe('out-of-range');
    expect(t.addBlock(H1, 1.5, 1)).toBe('out-of-range');
    expect(t.addBlock(H1, 65535, 1)).toBe('added');
    expect(t.ownerOf(65535)).toBe(H1);
    expect(t.portCount).toBe(1);
  });

  it('splits a row on partial removal and leaves other hosts alone', () => {
    const t = new PortTable();
    t.addBlock(H1, 1026, 32);
    t.addBlock(H3, 1058, 16);
    expect(t.removeBlock(H1, 1030, 4)).toBe('removed');
    expect(t.ownerOf(1029)).toBe(H1);
    expect(t.ownerOf(1030)).toBe(0);
    expect(t.ownerOf(1033)).toBe(0);
    expect(t.ownerOf(1034)).toBe(H1);
    expect(t.blocksOf(H1)).toEqual([
      { host: H1, first: 1026, count: 4 },
      { host: H1, first: 1034, count: 24 },
    ]);
    expect(t.removeBlock(H3, 1026, 32)).toBe('not-owned');
    expect(t.removeBlock(H1, 1026, 100)).toBe('removed');
    expect(t.ownerOf(1058)).toBe(H3);
    expect(t.portCount).toBe(16);
    expect(t.removeHost(H3)).toBe(16);
    expect(t.ownerOf(1058)).toBe(0);
    expect(t.rows()).toEqual([]);
  });

  it('stays consistent with a plain model under random adds and removes', () => {
    const hosts = [H1, H3, ip(10, 0, 0, 4), ip(192, 168, 255, 254)];
    const first = fc.oneof(fc.integer({ min: 1, max: 120 }), fc.integer({ min: 65480, max: 65535 }));
    const op = fc.record({
      kind: fc.constantFrom('add', 'add', 'remove', 'cut', 'cut', 'removeHost'),
      host: fc.constantFrom(...hosts),
      first,
      count: fc.integer({ min: 1, max: 40 }),
      // For 'cut': which row, and how far inside (or outside) its ends the cut starts and stops.
      row: fc.nat(),
      from: fc.integer({ min: -2, max: 3 }),
      to: fc.integer({ min: -2, max: 3 }),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const t = new PortTable();
        const model = new Map<number, number>();
        for (const generated of ops) {
          // A copy: fast-check replays generated values while shrinking.
          const o = { ...generated };
          if (o.kind === 'cut') {
            // Cuts aimed at a row's edges: the cases that split a row.
            const rows = t.rows();
            const row = rows[o.row % Math.max(1, rows.length)];
            if (row === undefined) continue;
            o.kind = 'remove';
            o.host = row.host;
            o.first = Math.max(1, row.first + o.from);
            o.count = Math.max(1, Math.min(65536, row.first + row.count - o.to) - o.first);
          }
          const end = o.first + o.count;
          if (o.kind === 'add') {
            const r = t.addBlock(o.host, o.first, o.count);
            if (end > 65536) {
              expect(r).toBe('out-of-range');
              continue;
            }
            let free = true;
            for (let p = o.first; p < end; p++) if (model.has(p)) free = false;
            expect(r === 'added').toBe(free);
            if (free) for (let p = o.first; p < end; p++) model.set(p, o.host);
          } else if (o.kind === 'remove') {
            const r = t.removeBlock(o.host, o.first, o.count);
            if (end > 65536) {
              expect(r).toBe('out-of-range');
              continue;
            }
            let any = false;
            for (let p = o.first; p < end; p++) {
              if (model.get(p) === o.host) {
                model.delete(p);
                any = true;
              }
            }
            expect(r).toBe(any ? 'removed' : 'not-owned');
          } else {
            let n = 0;
            for (const [p, h] of [...model]) {
              if (h === o.host) {
                model.delete(p);
                n++;
              }
            }
            expect(t.removeHost(o.host)).toBe(n);
          }
        }
        const wrong: number[] = [];
        for (let p = 0; p < 65536; p++) if (t.ownerOf(p) !== (model.get(p) ?? 0)) wrong.push(p);
        expect(wrong).toEqual([]);
        expect(t.portCount).toBe(model.size);
        // Rows are sorted, disjoint, and cover exactly the owned ports.
        const covered = new Map<number, number>();
        let lastEnd = 0;
        for (const row of t.rows()) {
          expect(row.first).toBeGreaterThanOrEqual(lastEnd);
          lastEnd = row.first + row.count;
          for (let p = row.first; p < lastEnd; p++) covered.set(p, row.host);
        }
        expect(covered).toEqual(model);
      }),
      { seed: 0x0f18, numRuns: 150 },
    );
  });
});
