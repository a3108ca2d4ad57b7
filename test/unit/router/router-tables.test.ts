import { describe, expect, it } from 'vitest';
import { RouterTables } from '../../../src/router/data-path/tables/router-tables.ts';
import { numericLeaseListener } from '../../../src/pap/router-link.ts';

const H1 = 0x0a000001;
const H3 = 0x0a000003;

describe('RouterTables', () => {
  it('enters and withdraws PAP leases in the port and SPI tables', () => {
    const t = new RouterTables();
    expect(t.onLeaseAdded({ host: H1, kind: 'port', first: 1026, count: 32 })).toBe('added');
    expect(t.onLeaseAdded({ host: H1, kind: 'spi', first: 280, count: 32 })).toBe('added');
    expect(t.onLeaseAdded({ host: H3, kind: 'port', first: 1050, count: 16 })).toBe('overlap');
    expect(t.counters.leaseRejected).toBe(1);
    expect(t.ports.ownerOf(1032)).toBe(H1);
    expect(t.spis.ownerOf(300)).toBe(H1);
    expect(t.ports.ownerOf(300)).toBe(0);
    expect(t.spis.ownerOf(1032)).toBe(0);

    t.iaptt.touch(6, 1032, H1, 0);
    t.onLeaseRemoved({ host: H1, kind: 'port', first: 1026, count: 32 });
    expect(t.ports.ownerOf(1032)).toBe(0);
    expect(t.iaptt.hostOf(6, 1032)).toBe(0);
    expect(t.spis.ownerOf(300)).toBe(H1);
    expect(t.onLeaseRemoved({ host: H1, kind: 'port', first: 1026, count: 32 })).toBe('not-owned');
    expect(t.counters.leaseRejected).toBe(2);
  });

  it('forgets everything about a host that left', () => {
    const t = new RouterTables({ fragments: { seed: 9 } });
    t.onLeaseAdded({ host: H1, kind: 'port', first: 2000, count: 32 });
    t.onLeaseAdded({ host: H1, kind: 'port', first: 4000, count: 32 });
    t.onLeaseAdded({ host: H3, kind: 'port', first: 3000, count: 32 });
    t.onLeaseAdded({ host: H1, kind: 'spi', first: 256, count: 32 });
    t.iaptt.touch(17, 4001, H1, 0);
    t.iaptt.touch(17, 3001, H3, 0);
    t.fragments.record(1, 2, 17, 3, H1, 0);
    t.removeHost(H1);
    expect(t.ports.blocksOf(H1)).toEqual([]);
    expect(t.spis.ownerOf(256)).toBe(0);
    expect(t.iaptt.hostOf(17, 4001)).toBe(0);
    expect(t.iaptt.hostOf(17, 3001)).toBe(H3);
    expect(t.fragments.lookup(1, 2, 17, 3, 1)).toBe(0);
    expect(t.ports.ownerOf(3000)).toBe(H3);
  });

  it('takes lease events from the PAP lease table through its numeric adapter', () => {
    const t = new RouterTables();
    const listener = numericLeaseListener(t);
    const lease = {
      kind: 'port' as const,
      host: '10.0.0.3',
      lowest: 1058,
      count: 16,
      grantedAt: 0,
      expiresAt: 60_000,
      leaseSeconds: 60,
    };
    listener.onLeaseAdded(lease);
    expect(t.ports.ownerOf(1058)).toBe(H3);
    expect(t.ports.ownerOf(1073)).toBe(H3);
    listener.onLeaseRemoved(lease, 'expired');
    expect(t.ports.ownerOf(1058)).toBe(0);
  });
});
