import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { LeaseOwnership } from '../../../src/router/data-path/tables/lease-ownership.ts';

const ip = (a: number, b: number, c: number, d: number) => ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
const H1 = ip(10, 0, 0, 1);
const H3 = ip(10, 0, 0, 3);

const lease = (host: string, kind: 'port' | 'spi', lowest: number, count: number) => ({
  host,
  kind,
  lowest,
  count,
});

describe('LeaseOwnership: ports and ICMP ids (FIG. 8)', () => {
  it('maps the patent example: 1026-1057 to 10.0.0.1, 1058-1073 to 10.0.0.3', () => {
    const t = new LeaseOwnership();
    expect(t.add(H1, 'port', 1026, 32)).toBe('added');
    expect(t.add(H3, 'port', 1058, 16)).toBe('added');
    expect(t.portOwner(1025)).toBe(0);
    expect(t.portOwner(1026)).toBe(H1);
    expect(t.portOwner(1032)).toBe(H1); // Table 4 -> Table 5
    expect(t.portOwner(1057)).toBe(H1);
    expect(t.portOwner(1058)).toBe(H3);
    expect(t.portOwner(1073)).toBe(H3);
    expect(t.portOwner(1074)).toBe(0);
    expect(t.owns(H1, 1032)).toBe(true);
    expect(t.owns(H3, 1032)).toBe(false);
    expect(t.owns(0, 1)).toBe(false);
    expect(t.portCount).toBe(48);
    expect(t.hostCount).toBe(2);
  });

  it('uses the port blocks for ICMP echo identifiers', () => {
    const t = new LeaseOwnership();
    t.add(H1, 'port', 1026, 32);
    expect(t.icmpIdOwner(1040)).toBe(H1);
    expect(t.icmpIdOwner(1025)).toBe(0);
  });

  it('keeps several blocks per host and rejects overlaps without changing anything', () => {
    const t = new LeaseOwnership();
    expect(t.add(H1, 'port', 2000, 32)).toBe('added');
    expect(t.add(H1, 'port', 3000, 32)).toBe('added');
    expect(t.add(H1, 'port', 2000, 32)).toBe('exists');
    expect(t.add(H3, 'port', 2031, 10)).toBe('overlap');
    expect(t.portOwner(2035)).toBe(0);
    expect(t.portCount).toBe(64);
  });

  it('rejects ranges outside 1..65535 and hosts that are not addresses', () => {
    const t = new LeaseOwnership();
    expect(t.add(H1, 'port', 0, 4)).toBe('out-of-range');
    expect(t.add(H1, 'port', 65535, 2)).toBe('out-of-range');
    expect(t.add(H1, 'port', 10, 0)).toBe('out-of-range');
    expect(t.add(0, 'port', 10, 1)).toBe('out-of-range');
    expect(t.add(H1, 'port', 1.5, 1)).toBe('out-of-range');
    expect(t.add(H1, 'port', 65535, 1)).toBe('added');
    expect(t.portOwner(65535)).toBe(H1);
    expect(t.portCount).toBe(1);
  });

  it('removes only the host’s own ports, and forgets a host that holds nothing more', () => {
    const t = new LeaseOwnership();
    t.add(H1, 'port', 1026, 32);
    t.add(H3, 'port', 1058, 16);
    expect(t.remove(H1, 'port', 1030, 4)).toBe('removed');
    expect(t.portOwner(1029)).toBe(H1);
    expect(t.portOwner(1030)).toBe(0);
    expect(t.portOwner(1034)).toBe(H1);
    expect(t.remove(H3, 'port', 1026, 32)).toBe('not-owned');
    expect(t.remove(H1, 'port', 1026, 100)).toBe('removed');
    expect(t.portOwner(1058)).toBe(H3);
    expect(t.holds(H1)).toBe(false);
    expect(t.holds(H3)).toBe(true);
    expect(t.portCount).toBe(16);
  });

  it('stays consistent with a plain model under random adds and removes', () => {
    const hosts = [H1, H3, ip(10, 0, 0, 4), ip(192, 168, 255, 254)];
    const first = fc.oneof(fc.integer({ min: 1, max: 120 }), fc.integer({ min: 65480, max: 65535 }));
    const op = fc.record({
      kind: fc.constantFrom('add', 'add', 'remove'),
      host: fc.constantFrom(...hosts),
      first,
      count: fc.integer({ min: 1, max: 40 }),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const t = new LeaseOwnership();
        const model = new Map<number, number>();
        for (const o of ops) {
          const end = o.first + o.count;
          if (o.kind === 'add') {
            const r = t.add(o.host, 'port', o.first, o.count);
            if (end > 65536) {
              expect(r).toBe('out-of-range');
              continue;
            }
            let free = true;
            let mine = 0;
            for (let p = o.first; p < end; p++) {
              const owner = model.get(p);
              if (owner === o.host) mine++;
              else if (owner !== undefined) free = false;
            }
            expect(r).toBe(!free ? 'overlap' : mine === o.count ? 'exists' : 'added');
            if (free) for (let p = o.first; p < end; p++) model.set(p, o.host);
          } else {
            const r = t.remove(o.host, 'port', o.first, o.count);
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
          }
        }
        const wrong: number[] = [];
        for (let p = 0; p < 65536; p++) if (t.portOwner(p) !== (model.get(p) ?? 0)) wrong.push(p);
        expect(wrong).toEqual([]);
        expect(t.portCount).toBe(model.size);
        for (const h of hosts) expect(t.holds(h)).toBe([...model.values()].includes(h));
      }),
      { seed: 0x0f18, numRuns: 150 },
    );
  });
});

describe('LeaseOwnership: SPIs (FIG. 21)', () => {
  it('maps the patent example: SPIs 280-311 to 10.0.0.1, 312-327 to 10.0.0.3', () => {
    const t = new LeaseOwnership();
    expect(t.add(H1, 'spi', 280, 32)).toBe('added');
    expect(t.add(H3, 'spi', 312, 16)).toBe('added');
    expect(t.spiOwner(279)).toBe(0);
    expect(t.spiOwner(280)).toBe(H1);
    expect(t.spiOwner(311)).toBe(H1);
    expect(t.spiOwner(312)).toBe(H3);
    expect(t.spiOwner(327)).toBe(H3);
    expect(t.spiOwner(328)).toBe(0);
    expect(t.spiOwner(0)).toBe(0);
    expect(t.spiCount).toBe(48);
    expect(t.portOwner(300)).toBe(0);
  });

  it('handles SPIs at the top of the 32-bit range, read as unsigned or signed', () => {
    const t = new LeaseOwnership();
    expect(t.add(H1, 'spi', 0xffffffe0, 32)).toBe('added');
    expect(t.add(H1, 'spi', 0xfffffff0, 32)).toBe('out-of-range');
    expect(t.spiOwner(0xffffffff)).toBe(H1);
    expect(t.spiOwner(-1)).toBe(H1); // the same 32 bits read with `| 0`
    expect(t.spiOwner(0xffffffdf)).toBe(0);
  });

  it('refuses a block that would exceed its limit', () => {
    const t = new LeaseOwnership(64);
    expect(t.add(H1, 'spi', 256, 64)).toBe('added');
    expect(t.add(H3, 'spi', 1000, 1)).toBe('full');
    expect(t.spiOwner(1000)).toBe(0);
    expect(t.remove(H1, 'spi', 256, 32)).toBe('removed');
    expect(t.add(H3, 'spi', 1000, 32)).toBe('added');
  });

  it('removes only the host’s SPIs, also over a range far larger than what it holds', () => {
    const t = new LeaseOwnership();
    t.add(H1, 'spi', 256, 32);
    t.add(H3, 'spi', 288, 32);
    expect(t.remove(H1, 'spi', 0x100, 0xffff0000)).toBe('removed');
    expect(t.spiOwner(256)).toBe(0);
    expect(t.spiOwner(300)).toBe(H3);
    expect(t.remove(H3, 'spi', 290, 2)).toBe('removed');
    expect(t.spiOwner(290)).toBe(0);
    expect(t.spiOwner(292)).toBe(H3);
    expect(t.spiCount).toBe(30);
  });

  it('stays consistent with a plain model under random adds and removes', () => {
    const hosts = [H1, H3, 0xc0a80001];
    const low = fc.integer({ min: 1, max: 600 });
    const high = fc.integer({ min: 0xfffffd00, max: 0xffffffff });
    const op = fc.record({
      kind: fc.constantFrom('add', 'add', 'remove', 'wide-remove'),
      host: fc.constantFrom(...hosts),
      first: fc.oneof(low, high),
      count: fc.integer({ min: 1, max: 80 }),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 50 }), (ops) => {
        const t = new LeaseOwnership(4096);
        const model = new Map<number, number>();
        for (const o of ops) {
          const first = o.kind === 'wide-remove' ? 1 : o.first;
          const count = o.kind === 'wide-remove' ? 0xfffffff0 : o.count;
          const end = first + count;
          if (end > 0x1_0000_0000) continue;
          if (o.kind === 'add') {
            let free = true;
            for (let s = first; s < end; s++) if (model.has(s) && model.get(s) !== o.host) free = false;
            expect(['added', 'exists'].includes(t.add(o.host, 'spi', first, count))).toBe(free);
            if (free) for (let s = first; s < end; s++) model.set(s, o.host);
          } else {
            t.remove(o.host, 'spi', first, count);
            for (const [s, h] of [...model]) if (h === o.host && s >= first && s < end) model.delete(s);
          }
        }
        const wrong: number[] = [];
        for (let s = 0; s <= 700; s++) if (t.spiOwner(s) !== (model.get(s) ?? 0)) wrong.push(s);
        for (let s = 0xfffffc00; s <= 0xffffffff; s++)
          if (t.spiOwner(s) !== (model.get(s) ?? 0)) wrong.push(s);
        expect(wrong).toEqual([]);
        expect(t.spiCount).toBe(model.size);
      }),
      { seed: 0x5b1, numRuns: 150 },
    );
  });
});

describe('LeaseOwnership: lease events', () => {
  it('takes the lease table’s events, host as text, and counts what it could not apply', () => {
    const t = new LeaseOwnership();
    expect(t.onLeaseAdded(lease('10.0.0.3', 'port', 1058, 16))).toBe('added');
    expect(t.portOwner(1058)).toBe(H3);
    expect(t.portOwner(1073)).toBe(H3);
    expect(t.onLeaseAdded(lease('10.0.0.1', 'port', 1060, 4))).toBe('overlap');
    expect(t.onLeaseAdded(lease('h1.example', 'port', 2000, 4))).toBe('out-of-range');
    expect(t.onLeaseRemoved(lease('10.0.0.3', 'port', 1058, 16))).toBe('removed');
    expect(t.portOwner(1058)).toBe(0);
    expect(t.counters).toEqual({ added: 1, removed: 1, rejected: 2 });
  });
});
