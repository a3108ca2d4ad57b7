import { describe, expect, it } from 'vitest';
import { LeasedPortPool } from '../../../src/host/data-path/leased-ports.ts';
import { formatPortList, kernelPortSettings, parsePortList } from '../../../src/host/daemon/native-ports.ts';
import { HostLeases } from '../../../src/pap/host-leases.ts';
import { FakeClock } from '../../../src/util/clock.ts';

function setup() {
  const clock = new FakeClock(0);
  const leases = new HostLeases({ clock, want: { port: 8 }, lowWater: { port: 2 } });
  const asked: number[] = [];
  leases.addListener({ onMoreNeeded: (_k, n) => asked.push(n) });
  const pool = new LeasedPortPool(leases, 2);
  return { clock, leases, pool, asked };
}

describe('LeasedPortPool', () => {
  it('hands out ports of held blocks only and takes them back', () => {
    const { leases, pool } = setup();
    expect(pool.takePort()).toBe(-1);
    leases.grant('port', 2000, 8, 300, 1, 0);
    expect(pool.held).toBe(8);
    expect(pool.isLeased(2000)).toBe(true);
    expect(pool.isLeased(2008)).toBe(false);
    const taken = Array.from({ length: 8 }, () => pool.takePort());
    expect(taken.sort()).toEqual([2000, 2001, 2002, 2003, 2004, 2005, 2006, 2007]);
    expect(pool.takePort()).toBe(-1);
    expect(pool.unused).toBe(0);
    pool.returnPort(2003);
    expect(leases.isAllocated('port', 2003)).toBe(false);
    expect(pool.takePort()).toBe(2003);
    pool.returnPort(9999); // not ours: ignored
    expect(pool.unused).toBe(0);
  });

  it('prefers the block whose lease runs longest', () => {
    const { leases, pool } = setup();
    leases.grant('port', 2000, 8, 60, 1, 0);
    leases.grant('port', 3000, 8, 600, 1, 0);
    expect(pool.takePort()).toBe(3000);
  });

  it('asks for more once when crossing the low-water mark', () => {
    const { leases, pool, asked } = setup();
    leases.grant('port', 2000, 8, 300, 1, 0);
    asked.length = 0;
    for (let i = 0; i < 6; i++) pool.takePort();
    expect(asked).toEqual([]);
    pool.takePort(); // 1 unused left, below 2
    expect(asked).toEqual([8]);
    pool.takePort();
    expect(asked).toEqual([8]);
  });

  it('forgets a lost block at once: its ports are no longer leased, returns are ignored', () => {
    const { leases, pool } = setup();
    leases.grant('port', 2000, 8, 300, 1, 0);
    const p = pool.takePort();
    leases.lose('port', 2000, 'withdrawn');
    expect(pool.isLeased(p)).toBe(false);
    expect(pool.held).toBe(0);
    pool.returnPort(p);
    expect(pool.takePort()).toBe(-1);
  });
});

describe('kernel port settings for native mode', () => {
  it('is the block itself for one block', () => {
    expect(kernelPortSettings([{ lowest: 1024, count: 32 }])).toEqual({ range: [1024, 1055], reserved: '' });
    expect(kernelPortSettings([])).toBeUndefined();
  });

  it('spans several blocks and reserves the gaps, keeping what was reserved before', () => {
    const s = kernelPortSettings(
      [
        { lowest: 5000, count: 32 },
        { lowest: 1024, count: 32 },
        { lowest: 1056, count: 32 },
      ],
      parsePortList('8080, 3000-3001'),
    );
    expect(s).toEqual({ range: [1024, 5031], reserved: '1088-4999,8080' });
  });

  it('reads and writes the kernel list format', () => {
    expect(parsePortList('')).toEqual([]);
    expect(parsePortList('1,5-7,x,9')).toEqual([
      [1, 1],
      [5, 7],
      [9, 9],
    ]);
    expect(
      formatPortList([
        [9, 9],
        [1, 3],
        [4, 6],
      ]),
    ).toBe('1-6,9');
  });
});
