import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { REPLAY_DUPLICATE, REPLAY_TOO_OLD, ReplayWindow } from '../../../src/ipsec/replay-window.ts';

const TWO_32 = 0x1_0000_0000;

/** The window as RFC 4303 3.4.3 states it: a set of seen numbers and a right edge. */
class ModelWindow {
  top = 0;
  readonly seen = new Set<number>();
  constructor(readonly size: number) {}
  check(seq: number): number {
    if (seq < 1) return REPLAY_TOO_OLD;
    if (seq > this.top) return seq;
    if (seq <= this.top - this.size) return REPLAY_TOO_OLD;
    return this.seen.has(seq) ? REPLAY_DUPLICATE : seq;
  }
  accept(seq: number): void {
    this.top = Math.max(this.top, seq);
    this.seen.add(seq);
  }
}

describe('anti-replay window', () => {
  it('accepts new numbers, rejects a duplicate, and check alone changes nothing', () => {
    const w = new ReplayWindow(64);
    expect(w.check(1)).toBe(1);
    expect(w.check(1)).toBe(1);
    w.accept(1);
    expect(w.check(1)).toBe(REPLAY_DUPLICATE);
    expect(w.check(2)).toBe(2);
    expect(w.highest).toBe(1);
  });

  it('rejects sequence number 0 without ESN (the counter starts at 1)', () => {
    expect(new ReplayWindow(64).check(0)).toBe(REPLAY_TOO_OLD);
  });

  for (const size of [32, 64, 100, 1024, 4096]) {
    it(`window ${size}: exactly at the left edge is inside, one past it is too old`, () => {
      const w = new ReplayWindow(size);
      const top = 10_000;
      w.accept(top);
      expect(w.check(top - size + 1)).toBe(top - size + 1);
      expect(w.check(top - size)).toBe(REPLAY_TOO_OLD);
      w.accept(top - size + 1);
      expect(w.check(top - size + 1)).toBe(REPLAY_DUPLICATE);
      // Moving the edge by one pushes that number out.
      w.accept(top + 1);
      expect(w.check(top - size + 1)).toBe(REPLAY_TOO_OLD);
      expect(w.check(top - size + 2)).toBe(top - size + 2);
    });

    it(`window ${size}: every number inside is tracked on its own`, () => {
      const w = new ReplayWindow(size);
      const top = 3 * size + 17;
      w.accept(top);
      for (let s = top - size + 1; s < top; s += 2) w.accept(s);
      for (let s = top - size + 1; s < top; s++) {
        expect(w.check(s)).toBe((s - (top - size + 1)) % 2 === 0 ? REPLAY_DUPLICATE : s);
      }
    });
  }

  it('a far jump ahead forgets everything behind the new window', () => {
    const w = new ReplayWindow(1024);
    for (let s = 1; s <= 1024; s++) w.accept(s);
    w.accept(1_000_000);
    expect(w.check(1024)).toBe(REPLAY_TOO_OLD);
    // Numbers in the new window were never received, even where the ring's words were reused.
    for (let s = 1_000_000 - 1023; s < 1_000_000; s++) expect(w.check(s)).toBe(s);
    expect(w.check(1_000_000)).toBe(REPLAY_DUPLICATE);
  });

  it('a jump of less than one ring keeps the numbers still inside', () => {
    const w = new ReplayWindow(64);
    w.accept(100);
    w.accept(90);
    w.accept(140);
    expect(w.check(90)).toBe(REPLAY_DUPLICATE);
    expect(w.check(100)).toBe(REPLAY_DUPLICATE);
    expect(w.check(95)).toBe(95);
    expect(w.check(76)).toBe(REPLAY_TOO_OLD);
  });

  it('refuses sizes outside 32..65536', () => {
    expect(() => new ReplayWindow(31)).toThrow(RangeError);
    expect(() => new ReplayWindow(65537)).toThrow(RangeError);
    expect(() => new ReplayWindow(64.5)).toThrow(RangeError);
  });

  for (const size of [32, 64, 1024, 4096]) {
    it(`window ${size} agrees with the set model on random traffic`, () => {
      fc.assert(
        fc.property(
          fc.array(
            fc.tuple(
              // Mostly near the left edge, where words are reused; sometimes far jumps.
              fc.oneof(
                { arbitrary: fc.integer({ min: -size - 40, max: 40 }), weight: 4 },
                { arbitrary: fc.integer({ min: -size * 3, max: size * 2 }), weight: 1 },
              ),
              fc.boolean(),
            ),
            { minLength: 200, maxLength: 400 },
          ),
          (steps) => {
            const w = new ReplayWindow(size);
            const m = new ModelWindow(size);
            let top = 1;
            for (const [delta, pass] of steps) {
              const seq = Math.max(0, top + delta);
              const got = w.check(seq);
              expect(got).toBe(m.check(seq));
              // Only authenticated packets move the window.
              if (pass && got > 0) {
                w.accept(got);
                m.accept(got);
                top = m.top;
              }
            }
          },
        ),
        { seed: 4303 + size, numRuns: 200 },
      );
    });
  }
});

describe('anti-replay window with extended sequence numbers', () => {
  it('infers the high half across a 2^32 boundary', () => {
    const w = new ReplayWindow(64, true);
    w.accept(TWO_32 - 10);
    // Just past the boundary: the next cycle.
    expect(w.check(5)).toBe(TWO_32 + 5);
    // Still inside the window below the boundary: this cycle.
    expect(w.check(0xffff_fff0)).toBe(0xffff_fff0);
    w.accept(TWO_32 + 5);
    // Now the window straddles the boundary (case B of RFC 4303 A2.1).
    expect(w.check(0xffff_fff8)).toBe(0xffff_fff8);
    expect(w.check(0xffff_fff6)).toBe(REPLAY_DUPLICATE);
    expect(w.check(3)).toBe(TWO_32 + 3);
    expect(w.check(5)).toBe(REPLAY_DUPLICATE);
  });

  it('a fresh window places a number from the top of the first cycle before 1, so too old', () => {
    const w = new ReplayWindow(64, true);
    expect(w.check(0xffff_fff0)).toBe(REPLAY_TOO_OLD);
    expect(w.check(1)).toBe(1);
  });

  it('returns the true number for any packet inside the window or up to 2^31 ahead', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2 ** 40 }),
        fc.integer({ min: -1023, max: 2 ** 31 - 1 }),
        (top, delta) => {
          const w = new ReplayWindow(1024, true);
          w.accept(top);
          const seq = top + delta;
          fc.pre(seq >= 1 && delta !== 0);
          expect(w.check(seq % TWO_32)).toBe(seq);
        },
      ),
      { seed: 6479, numRuns: 2000 },
    );
  });
});
