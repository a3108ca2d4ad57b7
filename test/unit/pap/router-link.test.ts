import { describe, expect, it } from 'vitest';
import { LeaseTable } from '../../../src/pap/lease-table.ts';
import { numericLeaseListener } from '../../../src/pap/router-link.ts';
import { RouterTables } from '../../../src/router/data-path/tables/router-tables.ts';
import { FakeClock } from '../../../src/util/clock.ts';

const H1 = 0x0a000001;

describe('numericLeaseListener', () => {
  it('keeps the router tables of FIG. 8 and FIG. 21 in step with the leases', () => {
    const clock = new FakeClock();
    const leases = new LeaseTable({ clock });
    const tables = new RouterTables();
    leases.request('10.0.0.1', 'port');
    leases.addListener(numericLeaseListener(tables));
    expect(tables.ports.ownerOf(1024)).toBe(H1);
    const spi = leases.request('10.0.0.1', 'spi');
    expect(tables.spis.ownerOf(spi.lowest + 3)).toBe(H1);
    leases.release('10.0.0.1', 'port', 1030);
    expect(tables.ports.ownerOf(1024)).toBe(0);
    clock.advance(300_000);
    expect(tables.spis.ownerOf(spi.lowest)).toBe(0);
    expect(tables.counters.leaseRejected).toBe(0);
  });

  it('reports hosts that are not IPv4 instead of inventing an address', () => {
    const skipped: string[] = [];
    const tables = new RouterTables();
    const leases = new LeaseTable({ clock: new FakeClock() });
    leases.addListener(numericLeaseListener(tables, (l) => skipped.push(l.host)));
    leases.request('fe80::1', 'port');
    expect(skipped).toEqual(['fe80::1']);
    expect(tables.ports.blockCount).toBe(0);
  });
});
