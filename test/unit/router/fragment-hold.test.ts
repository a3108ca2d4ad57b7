import { describe, expect, it } from 'vitest';
import { FragmentHold } from '../../../src/router/data-path/tables/fragment-hold.ts';

const SRV = 0xcb007103;
const SHARED = 0xc633641e;

function fragment(tag: number, length = 40): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (tag + i) & 0xff);
}

function collect(hold: FragmentHold, id: number, now: number): number[][] {
  const out: number[][] = [];
  hold.release(SRV, SHARED, 17, id, now, (arena, offset, length) => {
    out.push([...arena.subarray(offset, offset + length)]);
  });
  return out;
}

describe('FragmentHold', () => {
  it('releases the fragments of one datagram, oldest first, byte for byte', () => {
    const h = new FragmentHold();
    const a = fragment(1);
    const b = fragment(2, 60);
    const other = fragment(3);
    const framed = new Uint8Array(100);
    framed.set(b, 10);
    expect(h.hold(SRV, SHARED, 17, 5, a, 0, a.length, 0)).toBe(true);
    expect(h.hold(SRV, SHARED, 17, 6, other, 0, other.length, 1)).toBe(true);
    expect(h.hold(SRV, SHARED, 17, 5, framed, 10, 60, 2)).toBe(true);
    expect(collect(h, 5, 3)).toEqual([[...a], [...b]]);
    expect(collect(h, 5, 3)).toEqual([]);
    expect(h.size).toBe(1);
    expect(h.counters).toMatchObject({ held: 3, released: 2 });
  });

  it('drops fragments whose first fragment is late, too big, or pushed out', () => {
    const h = new FragmentHold({ slots: 2, slotBytes: 100, timeoutMs: 2000 });
    expect(h.hold(SRV, SHARED, 17, 1, fragment(0, 101), 0, 101, 0)).toBe(false);
    expect(h.counters.tooBig).toBe(1);
    h.hold(SRV, SHARED, 17, 1, fragment(1), 0, 40, 0);
    h.hold(SRV, SHARED, 17, 2, fragment(2), 0, 40, 10);
    h.hold(SRV, SHARED, 17, 3, fragment(3), 0, 40, 20); // evicts id 1
    expect(h.counters.evicted).toBe(1);
    expect(collect(h, 1, 30)).toEqual([]);
    expect(collect(h, 3, 2019)).toHaveLength(1);
    expect(collect(h, 2, 2010)).toEqual([]); // waited 2000 ms: expired
    expect(h.counters.expired).toBe(1);
    expect(h.size).toBe(0);
  });
});
