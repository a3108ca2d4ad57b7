import { describe, expect, it } from 'vitest';
import type { ResourceKind } from '../../../src/util/block.ts';
import type { HeldBlock } from '../../../src/pap/held-block.ts';
import type { BlockLossReason, HostLeasesOptions } from '../../../src/pap/host-leases.ts';
import { HostLeases } from '../../../src/pap/host-leases.ts';
import { FakeClock } from '../../../src/util/clock.ts';

const E1 = 0x1111;
const E2 = 0x2222;

function setup(options: Partial<HostLeasesOptions> = {}) {
  const clock = new FakeClock(0);
  const leases = new HostLeases({ clock, ...options });
  const events: string[] = [];
  leases.addListener({
    onBlockAdded: (b: HeldBlock) => events.push(`added ${b.kind} ${b.lowest}+${b.count}`),
    onRenewDue: (b: HeldBlock, attempt: number) =>
      events.push(`renew ${b.lowest} #${attempt} @${clock.now()}`),
    onMoreNeeded: (kind: ResourceKind, n: number) => events.push(`more ${kind} ${n}`),
    onBlockLost: (b: HeldBlock, why: BlockLossReason, inUse: readonly number[]) =>
      events.push(`lost ${b.lowest} ${why} [${inUse.join(',')}] @${clock.now()}`),
  });
  return { clock, leases, events };
}

describe('HostLeases timing', () => {
  it('asks for renewal at 1/2 and 7/8 of the lease and drops the block at its end', () => {
    const { clock, leases, events } = setup();
    leases.grant('port', 1024, 32, 300, E1, 0);
    leases.acquire('port');
    clock.advance(400_000);
    expect(events).toEqual([
      'added port 1024+32',
      'renew 1024 #1 @150000',
      'renew 1024 #2 @262500',
      'lost 1024 expired [1024] @300000',
      'more port 32',
    ]);
    expect(leases.blocks()).toEqual([]);
  });

  it('counts the lease from when the request was sent', () => {
    const { clock, leases, events } = setup();
    clock.advance(4_000); // the answer took 4 s (retransmissions)
    const b = leases.grant('port', 1024, 32, 300, E1, 0);
    expect(b.expiresAt).toBe(300_000);
    clock.advance(295_999);
    expect(leases.blocks()).toHaveLength(1);
    clock.advance(1);
    expect(events).toContain('lost 1024 expired [] @300000');
  });

  it('a renewal restarts the schedule from when it was sent', () => {
    const { clock, leases, events } = setup();
    leases.grant('port', 1024, 32, 300, E1, 0);
    clock.advance(150_000);
    expect(leases.renewed('port', 1024, 600, E1, 150_000)).toBe(true);
    clock.advance(1_000_000);
    expect(events).toEqual([
      'added port 1024+32',
      'renew 1024 #1 @150000',
      'renew 1024 #1 @450000',
      'renew 1024 #2 @675000',
      'lost 1024 expired [] @750000',
      'more port 32',
    ]);
  });

  it('ignores a renewal of a block it no longer holds', () => {
    const { leases } = setup();
    expect(leases.renewed('port', 1024, 300, E1, 0)).toBe(false);
  });
});

describe('HostLeases values (Table 1)', () => {
  it('hands out each value once, in FIFO order of return', () => {
    const { leases } = setup();
    leases.grant('port', 2000, 4, 300, E1, 0);
    expect([leases.acquire('port'), leases.acquire('port'), leases.acquire('port')]).toEqual([
      2000, 2001, 2002,
    ]);
    expect(leases.isAllocated('port', 2001)).toBe(true);
    expect(leases.giveBack('port', 2001)).toBe(true);
    expect(leases.giveBack('port', 2001)).toBe(false);
    expect(leases.isAllocated('port', 2001)).toBe(false);
    // 2003 has waited longer than 2001.
    expect(leases.acquire('port')).toBe(2003);
    expect(leases.acquire('port')).toBe(2001);
    expect(leases.acquire('port')).toBeUndefined();
    expect(leases.giveBack('port', 5000)).toBe(false);
  });

  it('prefers the block whose lease runs longest', () => {
    const { clock, leases } = setup();
    leases.grant('port', 1024, 32, 300, E1, 0);
    clock.advance(100_000);
    leases.grant('port', 3000, 32, 300, E1, 100_000);
    expect(leases.acquire('port')).toBe(3000);
    leases.renewed('port', 1024, 300, E1, clock.now() + 1);
    expect(leases.acquire('port')).toBe(1024);
  });

  it('claims a value the kernel chose (native mode)', () => {
    const { leases } = setup();
    leases.grant('port', 2000, 8, 300, E1, 0);
    expect(leases.claim('port', 2005)).toBe(true);
    expect(leases.claim('port', 2005)).toBe(false);
    expect(leases.claim('port', 1999)).toBe(false);
    const got = new Set<number>();
    for (let i = 0; i < 7; i++) got.add(leases.acquire('port')!);
    expect(got.has(2005)).toBe(false);
    expect(got.size).toBe(7);
    expect(leases.acquire('port')).toBeUndefined();
  });

  it('keeps SPIs apart from ports', () => {
    const { leases } = setup({ want: { port: 32, spi: 64 } });
    leases.grant('spi', 256, 64, 300, E1, 0);
    expect(leases.acquire('port')).toBeUndefined();
    expect(leases.acquire('spi')).toBe(256);
    expect(leases.isAllocated('port', 256)).toBe(false);
  });
});

describe('HostLeases low water', () => {
  it('asks for more once, as unused values fall below the mark', () => {
    const { leases, events } = setup({ want: { port: 16 }, lowWater: { port: 4 } });
    leases.grant('port', 1024, 16, 300, E1, 0);
    for (let i = 0; i < 12; i++) leases.acquire('port');
    expect(events.filter((e) => e.startsWith('more'))).toEqual([]);
    expect(leases.shortfall('port')).toBe(0);
    leases.acquire('port'); // 3 left: below 4
    expect(events.filter((e) => e.startsWith('more'))).toEqual(['more port 16']);
    leases.acquire('port');
    expect(events.filter((e) => e.startsWith('more'))).toHaveLength(1);
    expect(leases.shortfall('port')).toBe(16);
    leases.grant('port', 1040, 16, 300, E1, 0);
    expect(leases.shortfall('port')).toBe(0);
  });

  it('asks at start for a wanted kind and never for an unwanted one', () => {
    const { leases, events } = setup({ want: { port: 32, spi: 0 } });
    leases.checkWater();
    expect(events).toEqual(['more port 32']);
    expect(leases.shortfall('spi')).toBe(0);
  });

  it('asks again after a grant that was fewer than needed', () => {
    const { leases, events } = setup({ want: { port: 32 }, lowWater: { port: 8 } });
    leases.grant('port', 1024, 4, 300, E1, 0);
    expect(events).toEqual(['added port 1024+4', 'more port 32']);
  });
});

describe('HostLeases epoch and losses', () => {
  it('drops every block when the router epoch changes, and re-leases', () => {
    const { leases, events } = setup({ want: { port: 32, spi: 64 } });
    leases.grant('port', 1024, 32, 300, E1, 0);
    leases.grant('spi', 256, 64, 300, E1, 0);
    leases.acquire('port');
    leases.acquire('spi');
    events.length = 0;
    expect(leases.observeEpoch(E1)).toBe(false);
    expect(leases.observeEpoch(E2)).toBe(true);
    expect(events).toEqual([
      'lost 1024 epoch-changed [1024] @0',
      'lost 256 epoch-changed [256] @0',
      'more port 32',
      'more spi 64',
    ]);
    expect(leases.epoch).toBe(E2);
    expect(leases.blocks()).toEqual([]);
  });

  it('a grant in a new epoch replaces the old blocks without asking twice', () => {
    const { leases, events } = setup();
    leases.grant('port', 1024, 32, 300, E1, 0);
    events.length = 0;
    leases.grant('port', 1024, 32, 300, E2, 0);
    expect(events).toEqual(['lost 1024 epoch-changed [] @0', 'added port 1024+32']);
    expect(leases.blocks('port').map((b) => b.epoch)).toEqual([E2]);
  });

  it('a renewal answered in a new epoch drops everything', () => {
    const { leases } = setup();
    leases.grant('port', 1024, 32, 300, E1, 0);
    expect(leases.renewed('port', 1024, 300, E2, 0)).toBe(false);
    expect(leases.blocks()).toEqual([]);
  });

  it('drops refused and withdrawn blocks and gives blocks back on request', () => {
    const { leases, events } = setup();
    leases.grant('port', 1024, 32, 300, E1, 0);
    leases.grant('port', 2048, 32, 300, E1, 0);
    leases.grant('port', 4096, 32, 300, E1, 0);
    leases.acquire('port');
    events.length = 0;
    expect(leases.lose('port', 1030, 'refused')?.lowest).toBe(1024);
    expect(leases.lose('port', 2048, 'withdrawn')?.lowest).toBe(2048);
    expect(leases.release('port', 4100)?.lowest).toBe(4096);
    expect(leases.release('port', 4100)).toBeUndefined();
    expect(events).toEqual([
      'lost 1024 refused [1024] @0',
      'lost 2048 withdrawn [] @0',
      'lost 4096 released [] @0',
    ]);
  });

  it('a grant overlapping a held block replaces it', () => {
    const { leases, events } = setup();
    leases.grant('port', 1024, 32, 300, E1, 0);
    events.length = 0;
    leases.grant('port', 1040, 32, 300, E1, 0);
    expect(events).toEqual(['lost 1024 withdrawn [] @0', 'added port 1040+32']);
  });

  it('close cancels every timer', () => {
    const { clock, leases, events } = setup();
    leases.grant('port', 1024, 32, 300, E1, 0);
    leases.close();
    clock.advance(1_000_000);
    expect(events).toEqual(['added port 1024+32']);
    expect(clock.pending).toBe(0);
  });
});
