import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SpiTable } from '../../../src/router/data-path/tables/spi-table.ts';

const H1 = 0x0a000001;
const H3 = 0x0a000003;

describe('SpiTable (FIG. 21)', () => {
  it('maps the patent example: SPIs 280-311 to 10.0.0.1, 312-327 to 10.0.0.3', () => {
    const t = new SpiTable();
    expect(t.addBlock(H1, 280, 32)).toBe('added');
    expect(t.addBlock(H3, 312, 16)).toBe('added');
    expect(t.ownerOf(279)).toBe(0);
    expect(t.ownerOf(280)).toBe(H1);
    expect(t.ownerOf(311)).toBe(H1);
    expect(t.ownerOf(312)).toBe(H3);
    expect(t.ownerOf(327)).toBe(H3);
    expect(t.ownerOf(328)).toBe(0);
    expect(t.ownerOf(0)).toBe(0);
    expect(t.spiCount).toBe(48);
  });

  it('handles SPIs at the top of the 32-bit range, read as unsigned or signed', () => {
    const t = new SpiTable();
    expect(t.addBlock(H1, 0xffffffe0, 32)).toBe('added');
    expect(t.addBlock(H1, 0xfffffff0, 32)).toBe('out-of-range');
    expect(t.ownerOf(0xffffffff)).toBe(H1);
    expect(t.ownerOf(-1)).toBe(H1); // the same 32 bits read with `| 0`
    expect(t.ownerOf(0xffffffdf)).toBe(0);
  });

  it('refuses a block that would exceed its limit', () => {
    const t = new SpiTable(64);
    expect(t.addBlock(H1, 256, 64)).toBe('added');
    expect(t.addBlock(H3, 1000, 1)).toBe('full');
    expect(t.ownerOf(1000)).toBe(0);
    expect(t.removeBlock(H1, 256, 32)).toBe('removed');
    expect(t.addBlock(H3, 1000, 32)).toBe('added');
  });

  it('removes only the host’s SPIs and splits rows', () => {
    const t = new SpiTable();
    t.addBlock(H1, 256, 32);
    t.addBlock(H3, 288, 32);
    expect(t.removeBlock(H1, 0x100, 0xffff0000)).toBe('removed');
    expect(t.ownerOf(256)).toBe(0);
    expect(t.ownerOf(300)).toBe(H3);
    expect(t.removeBlock(H3, 290, 2)).toBe('removed');
    expect(t.blocksOf(H3)).toEqual([
      { host: H3, first: 288, count: 2 },
      { host: H3, first: 292, count: 28 },
    ]);
    expect(t.removeHost(H3)).toBe(30);
    expect(t.spiCount).toBe(0);
  });

  it('stays consistent with a plain model under random adds and removes', () => {
    const hosts = [H1, H3, 0xc0a80001];
    const low = fc.integer({ min: 1, max: 600 });
    const high = fc.integer({ min: 0xfffffd00, max: 0xffffffff });
    const op = fc.record({
      kind: fc.constantFrom('add', 'add', 'remove', 'removeHost'),
      host: fc.constantFrom(...hosts),
      first: fc.oneof(low, high),
      count: fc.integer({ min: 1, max: 80 }),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 50 }), (ops) => {
        const t = new SpiTable(4096);
        const model = new Map<number, number>();
        for (const o of ops) {
          const end = o.first + o.count;
          if (end > 0x1_0000_0000) continue;
          if (o.kind === 'add') {
            let free = true;
            for (let s = o.first; s < end; s++) if (model.has(s)) free = false;
            expect(t.addBlock(o.host, o.first, o.count) === 'added').toBe(free);
            if (free) for (let s = o.first; s < end; s++) model.set(s, o.host);
          } else if (o.kind === 'remove') {
            t.removeBlock(o.host, o.first, o.count);
            for (let s = o.first; s < end; s++) if (model.get(s) === o.host) model.delete(s);
          } else {
            t.removeHost(o.host);
            for (const [s, h] of [...model]) if (h === o.host) model.delete(s);
          }
        }
        const wrong: number[] = [];
        for (let s = 0; s <= 700; s++) if (t.ownerOf(s) !== (model.get(s) ?? 0)) wrong.push(s);
        for (let s = 0xfffffc00; s <= 0xffffffff; s++)
          if (t.ownerOf(s) !== (model.get(s) ?? 0)) wrong.push(s);
        expect(wrong).toEqual([]);
        expect(t.spiCount).toBe(model.size);
        expect(t.rows().reduce((n, r) => n + r.count, 0)).toBe(model.size);
      }),
      { seed: 0x5b1, numRuns: 150 },
    );
  });
});
