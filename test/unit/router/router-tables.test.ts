import { describe, expect, it } from 'vitest';
import { RouterTables } from '../../../src/router/data-path/tables/router-tables.ts';

const H1 = 0x0a000001;
const H3 = 0x0a000003;

const lease = (host: string, kind: 'port' | 'spi', lowest: number, count: number) => ({
  host,
  kind,
  lowest,
  count,
  grantedAt: 0,
  expiresAt: 60_000,
  leaseSeconds: 60,
});

describe('RouterTables', () => {
  it('enters and withdraws PAP leases in the ownership index, and the IAPTT follows', () => {
    const t = new RouterTables();
    expect(t.onLeaseAdded(lease('10.0.0.1', 'port', 1026, 32))).toBe('added');
    expect(t.onLeaseAdded(lease('10.0.0.1', 'spi', 280, 32))).toBe('added');
    expect(t.onLeaseAdded(lease('10.0.0.3', 'port', 1050, 16))).toBe('overlap');
    expect(t.ownership.counters.rejected).toBe(1);
    expect(t.ownership.portOwner(1032)).toBe(H1);
    expect(t.ownership.spiOwner(300)).toBe(H1);
    expect(t.ownership.portOwner(300)).toBe(0);
    expect(t.ownership.spiOwner(1032)).toBe(0);

    t.iaptt.touch(6, 1032, H1, 0);
    t.onLeaseRemoved(lease('10.0.0.1', 'port', 1026, 32));
    expect(t.ownership.portOwner(1032)).toBe(0);
    expect(t.iaptt.hostOf(6, 1032)).toBe(0);
    expect(t.ownership.spiOwner(300)).toBe(H1);
    expect(t.onLeaseRemoved(lease('10.0.0.1', 'port', 1026, 32))).toBe('not-owned');
    expect(t.ownership.counters.rejected).toBe(2);
  });

  it('forgets the fragments of a host once it holds nothing, and keeps other hosts’ rows', () => {
    const t = new RouterTables({ fragments: { seed: 9 } });
    t.onLeaseAdded(lease('10.0.0.1', 'port', 2000, 32));
    t.onLeaseAdded(lease('10.0.0.3', 'port', 3000, 32));
    t.onLeaseAdded(lease('10.0.0.1', 'spi', 256, 32));
    t.iaptt.touch(17, 2001, H1, 0);
    t.iaptt.touch(17, 3001, H3, 0);
    t.fragments.record(1, 2, 17, 3, H1, 0);
    t.onLeaseRemoved(lease('10.0.0.1', 'port', 2000, 32));
    expect(t.fragments.lookup(1, 2, 17, 3, 1)).toBe(H1); // still holds SPIs
    t.onLeaseRemoved(lease('10.0.0.1', 'spi', 256, 32));
    expect(t.fragments.lookup(1, 2, 17, 3, 1)).toBe(0);
    expect(t.iaptt.hostOf(17, 2001)).toBe(0);
    expect(t.iaptt.hostOf(17, 3001)).toBe(H3);
    expect(t.ownership.portOwner(3000)).toBe(H3);
  });
});
