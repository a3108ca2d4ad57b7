import { describe, expect, it } from 'vitest';
import type { Lease, LeaseEndReason, LeaseListener } from '../../../src/pap/lease.ts';
import type { LeaseTableOptions } from '../../../src/pap/lease-table.ts';
import { LeaseTable } from '../../../src/pap/lease-table.ts';
import { FakeClock } from '../../../src/util/clock.ts';

const H1 = '10.0.0.1';
const H2 = '10.0.0.3';

function table(extra: Partial<LeaseTableOptions> = {}): { t: LeaseTable; clock: FakeClock } {
  const clock = new FakeClock();
  return { t: new LeaseTable({ clock, randomEpoch: () => 0xdeadbeef, ...extra }), clock };
}

class Recorder implements LeaseListener {
  events: string[] = [];
  onLeaseAdded(l: Lease): void {
    this.events.push(`+${l.kind} ${l.host} ${l.lowest}+${l.count}`);
  }
  onLeaseRemoved(l: Lease, why: LeaseEndReason): void {
    this.events.push(`-${l.kind} ${l.host} ${l.lowest}+${l.count} ${why}`);
  }
  onLeaseRenewed(l: Lease): void {
    this.events.push(`~${l.kind} ${l.host} ${l.lowest}+${l.count}`);
  }
}

describe('LeaseTable grants', () => {
  it('grants FIG. 8-style blocks and finds their owners', () => {
    const { t, clock } = table();
    const a = t.request(H1, 'port');
    const b = t.request(H2, 'port', { count: 16 });
    expect(a).toMatchObject({ status: 'ok', kind: 'port', lowest: 1024, count: 32, leaseSeconds: 300 });
    expect(a.expiresAt).toBe(clock.now() + 300_000);
    expect(a.epoch).toBe(0xdeadbeef);
    expect(b).toMatchObject({ status: 'ok', lowest: 1056, count: 16 });
    expect(t.ownerOf('port', 1024)).toBe(H1);
    expect(t.ownerOf('port', 1055)).toBe(H1);
    expect(t.ownerOf('port', 1056)).toBe(H2);
    expect(t.ownerOf('port', 1072)).toBeUndefined();
    expect(t.ownerOf('port', 1023)).toBeUndefined();
    expect(t.leasesOf(H1).map((l) => l.lowest)).toEqual([1024]);
  });

  it('grants SPI blocks from 256 up (FIG. 21) and finds them', () => {
    const { t } = table();
    expect(t.request(H1, 'spi', { count: 32 })).toMatchObject({ status: 'ok', lowest: 256, count: 32 });
    expect(t.request(H2, 'spi')).toMatchObject({ status: 'ok', lowest: 288, count: 64 });
    expect(t.ownerOf('spi', 287)).toBe(H1);
    expect(t.ownerOf('spi', 300)).toBe(H2);
    expect(t.ownerOf('spi', 255)).toBeUndefined();
    // Ports and SPIs are separate spaces.
    expect(t.ownerOf('port', 256)).toBeUndefined();
  });

  it('honours the port code and caps blocks at what the response can carry', () => {
    const { t } = table({ maxPerHost: { spi: 1 << 20 } });
    expect(t.request(H1, 'port', { preference: 'high' })).toMatchObject({ lowest: 10000, count: 32 });
    expect(t.request(H1, 'port', { count: 1000 })).toMatchObject({ lowest: 1024, count: 255 });
    expect(t.request(H1, 'spi', { count: 100_000 })).toMatchObject({ count: 0xffff });
  });

  it('clamps the lease time asked for', () => {
    const { t } = table({ leaseSeconds: 300, minLeaseSeconds: 60, maxLeaseSeconds: 600 });
    expect(t.request(H1, 'port', { leaseSeconds: 5 }).leaseSeconds).toBe(60);
    expect(t.request(H1, 'port', { leaseSeconds: 100_000 }).leaseSeconds).toBe(600);
    expect(t.request(H1, 'port', { leaseSeconds: 0 }).leaseSeconds).toBe(300);
  });

  it('grants fewer than asked when no free run is long enough, and says so when none is left', () => {
    const { t } = table({ portRange: { min: 2000, max: 2049 } });
    expect(t.request(H1, 'port')).toMatchObject({ status: 'ok', lowest: 2000, count: 32 });
    expect(t.request(H2, 'port')).toMatchObject({ status: 'ok', lowest: 2032, count: 18 });
    expect(t.request(H2, 'port')).toMatchObject({ status: 'pool-exhausted', count: 0 });
  });
});

describe('LeaseTable quota', () => {
  it('refuses an over-quota request clearly and leaves other hosts alone', () => {
    const { t } = table({ maxPerHost: { port: 64, spi: 64 } });
    expect(t.request(H1, 'port').status).toBe('ok');
    expect(t.request(H1, 'port').status).toBe('ok');
    const refused = t.request(H1, 'port');
    expect(refused).toMatchObject({ status: 'quota-exceeded', lowest: 0, count: 0 });
    expect(t.held(H1, 'port')).toBe(64);
    expect(t.request(H2, 'port')).toMatchObject({ status: 'ok', lowest: 1088 });
    // The SPI quota is counted separately.
    expect(t.request(H1, 'spi').status).toBe('ok');
  });

  it('grants the rest of the quota when the request would cross it', () => {
    const { t } = table({ maxPerHost: { port: 48 } });
    expect(t.request(H1, 'port').count).toBe(32);
    expect(t.request(H1, 'port').count).toBe(16);
    expect(t.request(H1, 'port').status).toBe('quota-exceeded');
  });

  it('gives quota back when a block is released', () => {
    const { t } = table({ maxPerHost: { port: 32 } });
    const a = t.request(H1, 'port');
    expect(t.request(H1, 'port').status).toBe('quota-exceeded');
    t.release(H1, 'port', a.lowest + 3);
    expect(t.request(H1, 'port').status).toBe('ok');
  });
});

describe('LeaseTable expiry and renewal', () => {
  it('ends a lease on time by itself and tells listeners', () => {
    const { t, clock } = table();
    const rec = new Recorder();
    t.addListener(rec);
    t.request(H1, 'port');
    clock.advance(299_999);
    expect(t.ownerOf('port', 1024)).toBe(H1);
    clock.advance(1);
    expect(t.ownerOf('port', 1024)).toBeUndefined();
    expect(rec.events).toEqual(['+port 10.0.0.1 1024+32', '-port 10.0.0.1 1024+32 expired']);
  });

  it('renewal pushes expiry out from the time of renewal', () => {
    const { t, clock } = table();
    const rec = new Recorder();
    t.addListener(rec);
    const a = t.request(H1, 'port');
    clock.advance(150_000);
    const r = t.renew(H1, 'port', a.lowest, a.count);
    expect(r).toMatchObject({ status: 'ok', lowest: 1024, count: 32, leaseSeconds: 300 });
    expect(r.expiresAt).toBe(clock.now() + 300_000);
    clock.advance(299_000);
    expect(t.ownerOf('port', 1024)).toBe(H1);
    clock.advance(1_000);
    expect(t.ownerOf('port', 1024)).toBeUndefined();
    expect(rec.events).toEqual([
      '+port 10.0.0.1 1024+32',
      '~port 10.0.0.1 1024+32',
      '-port 10.0.0.1 1024+32 expired',
    ]);
  });

  it('refuses to renew a block the host does not hold exactly', () => {
    const { t, clock } = table();
    const a = t.request(H1, 'port');
    expect(t.renew(H2, 'port', a.lowest, a.count)).toMatchObject({
      status: 'unknown-lease',
      lowest: 1024,
      count: 32,
    });
    expect(t.renew(H1, 'port', a.lowest + 1, a.count - 1).status).toBe('unknown-lease');
    expect(t.renew(H1, 'port', a.lowest, 16).status).toBe('unknown-lease');
    expect(t.renew(H1, 'spi', a.lowest, a.count).status).toBe('unknown-lease');
    clock.advance(300_000);
    expect(t.renew(H1, 'port', a.lowest, a.count).status).toBe('unknown-lease');
  });

  it('release by any value in the block; only the holder may release', () => {
    const { t } = table();
    const rec = new Recorder();
    t.addListener(rec);
    t.request(H1, 'spi');
    expect(t.release(H2, 'spi', 300)).toMatchObject({ status: 'unknown-lease', lowest: 300, count: 0 });
    expect(t.release(H1, 'spi', 300)).toMatchObject({
      status: 'ok',
      lowest: 256,
      count: 64,
      leaseSeconds: 0,
    });
    expect(t.release(H1, 'spi', 300).status).toBe('unknown-lease');
    expect(rec.events.at(-1)).toBe('-spi 10.0.0.1 256+64 released');
  });

  it('withdraw takes a block back and reports it', () => {
    const { t } = table();
    const rec = new Recorder();
    t.addListener(rec);
    t.request(H1, 'port');
    expect(t.withdraw('port', 1030)).toBeUndefined(); // not a block start
    expect(t.withdraw('port', 1024)).toMatchObject({ host: H1, lowest: 1024, count: 32 });
    expect(rec.events.at(-1)).toBe('-port 10.0.0.1 1024+32 withdrawn');
    expect(t.quarantined()).toHaveLength(1);
  });

  it('a late listener first hears about every live lease', () => {
    const { t } = table();
    t.request(H1, 'port');
    t.request(H2, 'spi');
    const rec = new Recorder();
    t.addListener(rec);
    expect(rec.events).toEqual(['+port 10.0.0.1 1024+32', '+spi 10.0.0.3 256+64']);
    t.removeListener(rec);
    t.request(H1, 'port');
    expect(rec.events).toHaveLength(2);
  });
});

describe('LeaseTable quarantine', () => {
  // 64 ports: H2 holds one half, so a request can only be served from the half H1 gives up.
  const small = { portRange: { min: 20000, max: 20063 } };

  it('keeps a released block from everyone for 120 s, then hands it out again', () => {
    const { t, clock } = table(small);
    const a = t.request(H1, 'port');
    t.request(H2, 'port');
    t.release(H1, 'port', a.lowest);
    expect(t.free('port')).toBe(0);
    expect(t.quarantined()).toEqual([
      { kind: 'port', host: H1, lowest: 20000, count: 32, until: clock.now() + 120_000 },
    ]);
    clock.advance(119_999);
    expect(t.request(H2, 'port').status).toBe('pool-exhausted');
    expect(t.request(H1, 'port').status).toBe('pool-exhausted');
    clock.advance(1);
    expect(t.request(H2, 'port')).toMatchObject({ status: 'ok', lowest: 20000, count: 32 });
  });

  it('quarantines an expired block from its expiry', () => {
    const { t, clock } = table(small);
    t.request(H1, 'port');
    t.request(H2, 'port', { leaseSeconds: 3600 });
    clock.advance(300_000 + 119_999);
    expect(t.ownerOf('port', 20000)).toBeUndefined();
    expect(t.request(H2, 'port').status).toBe('pool-exhausted');
    clock.advance(1);
    expect(t.free('port')).toBe(32);
  });

  it('takes a configurable quarantine time', () => {
    const { t, clock } = table({ ...small, quarantineSeconds: 300 });
    const a = t.request(H1, 'port');
    t.request(H2, 'port');
    t.release(H1, 'port', a.lowest);
    clock.advance(299_999);
    expect(t.free('port')).toBe(0);
    clock.advance(1);
    expect(t.free('port')).toBe(32);
  });
});

describe('LeaseTable transaction ids', () => {
  it('answers a retransmitted request with the same answer and allocates once', () => {
    const { t, clock } = table();
    const first = t.request(H1, 'port', { txid: 7 });
    clock.advance(2_000);
    const again = t.request(H1, 'port', { txid: 7 });
    expect(again).toEqual(first);
    expect(t.leasesOf(H1)).toHaveLength(1);
    // Another host's txid 7 is another request.
    expect(t.request(H2, 'port', { txid: 7 }).lowest).toBe(1056);
  });

  it('repeats failures too, and renewals and releases', () => {
    const { t, clock } = table({ maxPerHost: { port: 32 } });
    const a = t.request(H1, 'port', { txid: 1 });
    const refused = t.request(H1, 'port', { txid: 2 });
    t.release(H1, 'port', a.lowest, { txid: 3 });
    // The quota is free again, but txid 2 was answered already.
    expect(t.request(H1, 'port', { txid: 2 })).toEqual(refused);
    const b = t.request(H1, 'port', { txid: 4, preference: 'high' });
    clock.advance(1000);
    const r1 = t.renew(H1, 'port', b.lowest, b.count, { txid: 5 });
    clock.advance(1000);
    expect(t.renew(H1, 'port', b.lowest, b.count, { txid: 5 })).toEqual(r1);
    expect(t.find('port', b.lowest)!.expiresAt).toBe(r1.expiresAt);
    const rel = t.release(H1, 'port', b.lowest, { txid: 6 });
    expect(rel.status).toBe('ok');
    expect(t.release(H1, 'port', b.lowest, { txid: 6 })).toEqual(rel);
  });

  it('serves a different request that reuses a txid, and forgets answers after the ttl', () => {
    const { t, clock } = table({ answerCache: { ttlMs: 30_000 } });
    const a = t.request(H1, 'port', { txid: 9 });
    const b = t.request(H1, 'spi', { txid: 9 });
    expect(b.kind).toBe('spi');
    expect(t.request(H1, 'spi', { txid: 9 })).toEqual(b);
    clock.advance(30_001);
    expect(t.request(H1, 'port', { txid: 9 }).lowest).not.toBe(a.lowest);
  });

  it('keeps only a bounded number of answers per host', () => {
    const { t } = table({ answerCache: { perHost: 4 } });
    const first = t.request(H1, 'port', { txid: 100, count: 1 });
    for (let i = 1; i <= 4; i++) t.request(H1, 'port', { txid: 100 + i, count: 1 });
    // Txid 100 was pushed out: a repeat allocates anew (the cost of a bounded cache).
    expect(t.request(H1, 'port', { txid: 100, count: 1 }).lowest).not.toBe(first.lowest);
    const last = t.request(H1, 'port', { txid: 104, count: 1 });
    expect(last.lowest).toBe(1028);
  });
});

describe('LeaseTable epoch', () => {
  it('chooses a random non-zero epoch on a fresh start', () => {
    const clock = new FakeClock();
    const epochs = new Set<number>();
    for (let i = 0; i < 20; i++) epochs.add(new LeaseTable({ clock }).epoch);
    expect(epochs.size).toBe(20);
    for (const e of epochs) expect(e > 0 && e <= 0xffffffff).toBe(true);
    expect(() => new LeaseTable({ clock, randomEpoch: () => 0 })).toThrow(RangeError);
  });
});
