import { describe, expect, it } from 'vitest';
import { FakeClock, SystemClock } from '../../../src/util/clock.ts';

describe('FakeClock', () => {
  it('fires timers in due order with now() at their due time', () => {
    const clock = new FakeClock(1000);
    const seen: Array<[string, number]> = [];
    clock.setTimeout(() => seen.push(['b', clock.now()]), 200);
    clock.setTimeout(() => seen.push(['a', clock.now()]), 100);
    clock.setTimeout(() => seen.push(['c', clock.now()]), 200);
    clock.advance(150);
    expect(seen).toEqual([['a', 1100]]);
    expect(clock.now()).toBe(1150);
    clock.advance(100);
    expect(seen).toEqual([
      ['a', 1100],
      ['b', 1200],
      ['c', 1200],
    ]);
    expect(clock.now()).toBe(1250);
  });

  it('fires timers set by a callback inside the advanced window', () => {
    const clock = new FakeClock(0);
    const seen: number[] = [];
    const tick = (): void => {
      seen.push(clock.now());
      if (seen.length < 5) clock.setTimeout(tick, 10);
    };
    clock.setTimeout(tick, 10);
    clock.advance(35);
    expect(seen).toEqual([10, 20, 30]);
    clock.advance(100);
    expect(seen).toEqual([10, 20, 30, 40, 50]);
  });

  it('does not fire cancelled timers and refuses to go back', () => {
    const clock = new FakeClock(0);
    let fired = false;
    const t = clock.setTimeout(() => (fired = true), 5);
    expect(clock.pending).toBe(1);
    t.cancel();
    expect(clock.pending).toBe(0);
    clock.advance(10);
    expect(fired).toBe(false);
    expect(() => clock.advance(-1)).toThrow(RangeError);
  });
});

describe('SystemClock', () => {
  it('reads wall time and runs a timer', async () => {
    const clock = new SystemClock({ unref: true });
    expect(Math.abs(clock.now() - Date.now())).toBeLessThan(50);
    const t0 = Date.now();
    await new Promise<void>((resolve) => clock.setTimeout(resolve, 20));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(19);
  });

  it('cancel prevents the callback', async () => {
    const clock = new SystemClock({ unref: true });
    let fired = false;
    clock.setTimeout(() => (fired = true), 5).cancel();
    await new Promise((r) => setTimeout(r, 20));
    expect(fired).toBe(false);
  });
});
