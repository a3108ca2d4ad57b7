/**
 * The lease table after a start that lost its state (docs/pap.md 6.3): no
 * new block during the hold-off, each host given back exactly what it still
 * holds and nothing anyone else reclaimed first, the hold-off surviving a
 * restart that now has state, and a first start (fresh) granting at once.
 */
import { describe, expect, it } from 'vitest';
import { holdOffSecondsFor } from '../../../src/pap/lease-config.ts';
import { parseJournal, parseSnapshot } from '../../../src/pap/journal.ts';
import { LeaseStore, MemoryFiles } from '../../../src/pap/lease-store.ts';
import type { LeaseTableOptions } from '../../../src/pap/lease-table.ts';
import { LeaseTable } from '../../../src/pap/lease-table.ts';
import type { LeaseOrigin } from '../../../src/pap/lease.ts';
import { FakeClock } from '../../../src/util/clock.ts';
import { overlapsIn, stateOf } from './lease-helpers.ts';

const H1 = '10.0.0.1';
const H2 = '10.0.0.3';
const H3 = '10.0.0.5';
const T0 = 1_700_000_000_000;

function lostState(extra: Partial<LeaseTableOptions> = {}) {
  const clock = new FakeClock(T0);
  const files = new MemoryFiles();
  const options = { clock, withoutState: 'state-lost' as const, randomEpoch: () => 0xe2, ...extra };
  const table = new LeaseTable({ ...options, store: new LeaseStore(files) });
  const restart = (): LeaseTable => {
    table.close();
    return new LeaseTable({ ...options, store: new LeaseStore(MemoryFiles.copyOf(files)) });
  };
  return { clock, files, table, restart };
}

describe('hold-off length', () => {
  it('is half the longest lease plus the quarantine', () => {
    expect(holdOffSecondsFor(300, 120)).toBe(270);
    expect(holdOffSecondsFor(3600, 120)).toBe(1920);
    expect(holdOffSecondsFor(45, 120)).toBe(143); // rounded up
    const { table } = lostState({ leaseSeconds: 300, maxLeaseSeconds: 300 });
    expect(table.holdOffUntil).toBe(T0 + 270_000);
    expect(table.stats()['hold_off_seconds_left']).toBe(270);
  });

  it('can be set outright', () => {
    const { table } = lostState({ holdOffSeconds: 10 });
    expect(table.holdOffUntil).toBe(T0 + 10_000);
  });

  it('is none on a first start (the default) and none when state is recovered', () => {
    const clock = new FakeClock(T0);
    const files = new MemoryFiles();
    const first = new LeaseTable({ clock, store: new LeaseStore(files) });
    expect(first.holdOffUntil).toBeUndefined();
    expect(first.request(H1, 'port')).toMatchObject({ status: 'ok', lowest: 1024 });
    first.close();
    const again = new LeaseTable({
      clock,
      store: new LeaseStore(MemoryFiles.copyOf(files)),
      withoutState: 'state-lost',
    });
    expect(again.recovered).toBe(true);
    expect(again.holdOffUntil).toBeUndefined();
    expect(again.request(H2, 'port')).toMatchObject({ status: 'ok', lowest: 1056 });
  });
});

describe('during the hold-off', () => {
  it('answers every request try-later with the seconds left, whatever else holds', () => {
    const { clock, table } = lostState({ holdOffSeconds: 100 });
    expect(table.request(H1, 'port', { count: 32 })).toEqual({
      status: 'try-later',
      kind: 'port',
      lowest: 0,
      count: 0,
      leaseSeconds: 100,
      expiresAt: 0,
      epoch: 0xe2,
    });
    clock.advance(40_500);
    expect(table.request(H1, 'spi')).toMatchObject({ status: 'try-later', leaseSeconds: 60 });
    expect(table.leases()).toEqual([]);
    expect(table.free('port')).toBe(65535 - 1024 + 1);
  });

  it('gives each host back exactly the block it names, from now, and tells listeners it was reclaimed', () => {
    const { clock, table } = lostState({ holdOffSeconds: 100 });
    const added: [string, number, LeaseOrigin | undefined][] = [];
    table.addListener({
      onLeaseAdded: (l, o) => added.push([l.host, l.lowest, o]),
      onLeaseRemoved: () => {},
    });
    clock.advance(5_000);
    expect(table.reclaim(H1, 'port', 1056, 32, { leaseSeconds: 300, txid: 9 })).toEqual({
      status: 'ok',
      kind: 'port',
      lowest: 1056,
      count: 32,
      leaseSeconds: 300,
      expiresAt: T0 + 5_000 + 300_000,
      epoch: 0xe2,
    });
    expect(table.reclaim(H2, 'spi', 4096, 64)).toMatchObject({ status: 'ok', lowest: 4096, count: 64 });
    expect(table.ownerOf('port', 1087)).toBe(H1);
    expect(table.ownerOf('port', 1088)).toBeUndefined();
    expect(table.ownerOf('spi', 4100)).toBe(H2);
    expect(added).toEqual([
      [H1, 1056, 'reclaimed'],
      [H2, 4096, 'reclaimed'],
    ]);
  });

  it('refuses a block another host reclaimed first, even in part, and anything outside the pool', () => {
    const { table } = lostState({ portRange: { min: 2000, max: 2999 } });
    expect(table.reclaim(H1, 'port', 2000, 32).status).toBe('ok');
    expect(table.reclaim(H2, 'port', 2031, 2)).toEqual({
      status: 'unknown-lease',
      kind: 'port',
      lowest: 2031,
      count: 2,
      leaseSeconds: 0,
      expiresAt: 0,
      epoch: 0xe2,
    });
    expect(table.reclaim(H2, 'port', 1990, 20).status).toBe('unknown-lease'); // starts below the pool
    expect(table.reclaim(H2, 'port', 2990, 20).status).toBe('unknown-lease'); // runs past it
    expect(table.reclaim(H2, 'port', 2032, 0).status).toBe('unknown-lease');
    expect(table.reclaim(H2, 'port', 2032, 256).status).toBe('unknown-lease'); // more than a port block holds
    expect(table.reclaim(H2, 'port', 2032, 32).status).toBe('ok');
    expect(overlapsIn(stateOf(table))).toEqual([]);
  });

  it('holds a reclaim to the quota', () => {
    const { table } = lostState({ maxPerHost: { port: 64 } });
    expect(table.reclaim(H1, 'port', 1024, 32).status).toBe('ok');
    expect(table.reclaim(H1, 'port', 1056, 32).status).toBe('ok');
    expect(table.reclaim(H1, 'port', 1088, 32)).toMatchObject({
      status: 'quota-exceeded',
      lowest: 1088,
      count: 32,
    });
    expect(table.held(H1, 'port')).toBe(64);
  });

  it('renews a block its holder reclaims again, and repeats the answer to a repeated transaction', () => {
    const { clock, table } = lostState();
    const first = table.reclaim(H1, 'port', 1024, 32, { txid: 1 });
    clock.advance(2_000);
    expect(table.reclaim(H1, 'port', 1024, 32, { txid: 1 })).toEqual(first);
    expect(table.reclaim(H1, 'port', 1024, 32, { txid: 2 })).toMatchObject({
      status: 'ok',
      expiresAt: first.expiresAt + 2_000,
    });
    expect(table.leasesOf(H1)).toHaveLength(1);
  });

  it('treats a reclaimed block as any other: renewed, released into quarantine, withdrawn', () => {
    const { clock, table } = lostState({ holdOffSeconds: 1000 });
    table.reclaim(H1, 'port', 1024, 32);
    table.reclaim(H1, 'port', 1056, 32);
    clock.advance(10_000);
    expect(table.renew(H1, 'port', 1024, 32).status).toBe('ok');
    expect(table.release(H1, 'port', 1060).status).toBe('ok');
    expect(table.quarantined()).toMatchObject([{ lowest: 1056, until: T0 + 10_000 + 120_000 }]);
    expect(table.reclaim(H2, 'port', 1056, 32).status).toBe('unknown-lease'); // quarantined
    expect(table.withdraw('port', 1024)?.host).toBe(H1);
  });
});

describe('after the hold-off', () => {
  it('grants again, around what was reclaimed, and refuses reclaims', () => {
    const { clock, table } = lostState({ holdOffSeconds: 100 });
    table.reclaim(H1, 'port', 1024, 32, { leaseSeconds: 300 });
    table.reclaim(H2, 'port', 1088, 32, { leaseSeconds: 300 });
    clock.advance(99_999);
    expect(table.request(H3, 'port').status).toBe('try-later');
    clock.advance(1);
    expect(table.holdOffUntil).toBeUndefined();
    expect(table.stats()['hold_off_seconds_left']).toBe(0);
    expect(table.request(H3, 'port', { count: 64 })).toMatchObject({ status: 'ok', lowest: 1120 });
    expect(table.request(H3, 'port', { count: 32 })).toMatchObject({ status: 'ok', lowest: 1056 });
    expect(table.reclaim(H3, 'port', 2000, 32).status).toBe('unknown-lease');
    expect(overlapsIn(stateOf(table))).toEqual([]);
  });
});

describe('hold-off on disk', () => {
  it('survives a restart during it, with what was reclaimed, and ends on time', () => {
    const { clock, table, restart } = lostState({ holdOffSeconds: 100 });
    table.reclaim(H1, 'port', 1024, 32, { leaseSeconds: 300 });
    clock.advance(30_000);
    const again = restart();
    expect(again.recovered).toBe(true);
    expect(again.epoch).toBe(0xe2);
    expect(again.holdOffUntil).toBe(T0 + 100_000);
    expect(again.ownerOf('port', 1024)).toBe(H1);
    expect(again.request(H2, 'port')).toMatchObject({ status: 'try-later', leaseSeconds: 70 });
    expect(again.reclaim(H2, 'port', 2048, 32).status).toBe('ok');
    clock.advance(70_000);
    expect(again.request(H2, 'port')).toMatchObject({ status: 'ok', lowest: 1056 });
  });

  it('writes the end into the snapshot at once, and marks reclaims in the journal', () => {
    const { files, table } = lostState({ holdOffSeconds: 100 });
    expect(parseSnapshot(files.snapshot!)?.holdOffUntil).toBe(T0 + 100_000);
    table.reclaim(H1, 'port', 1024, 32);
    table.compact();
    table.request(H1, 'port');
    table.reclaim(H1, 'port', 2048, 32);
    expect(parseJournal(files.journal).entries.map((e) => [e.op, e.op === 'grant' && e.reclaim])).toEqual([
      ['grant', true],
    ]);
  });

  it('leaves the end out of snapshots written after it', () => {
    const { clock, files, table } = lostState({ holdOffSeconds: 100 });
    clock.advance(100_000);
    table.compact();
    expect(parseSnapshot(files.snapshot!)?.holdOffUntil).toBeUndefined();
  });
});
