/**
 * Time behind an interface, so lease expiry, renewal and retransmission can be
 * tested by advancing a fake clock instead of waiting.
 *
 * now() is wall-clock milliseconds since the Unix epoch, not a monotonic
 * counter: lease expiries are written to disk and must still mean the same
 * instant after a restart.
 */

/** A scheduled callback; cancel() is idempotent and safe after it has fired. */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Runs callback once, delayMs (clamped to >= 0) from now. */
  setTimeout(callback: () => void, delayMs: number): Timer;
}

/** Node's timers fire at once (with a warning) past this delay, so longer waits are chained. */
const MAX_NODE_DELAY = 0x7fffffff;

export interface SystemClockOptions {
  /** Let the process exit while timers are pending (for one-shot commands). Default false. */
  unref?: boolean;
}

export class SystemClock implements Clock {
  readonly #unref: boolean;

  constructor(options: SystemClockOptions = {}) {
    this.#unref = options.unref ?? false;
  }

  now(): number {
    return Date.now();
  }

  setTimeout(callback: () => void, delayMs: number): Timer {
    const due = Date.now() + Math.max(0, delayMs);
    let handle: NodeJS.Timeout | undefined;
    let cancelled = false;
    const arm = (): void => {
      const left = due - Date.now();
      if (left > MAX_NODE_DELAY) {
        handle = setTimeout(arm, MAX_NODE_DELAY);
      } else {
        handle = setTimeout(
          () => {
            if (!cancelled) callback();
          },
          Math.max(0, left),
        );
      }
      if (this.#unref) handle.unref();
    };
    arm();
    return {
      cancel: () => {
        cancelled = true;
        if (handle !== undefined) clearTimeout(handle);
      },
    };
  }
}

interface FakeTimer {
  readonly due: number;
  readonly seq: number;
  readonly callback: () => void;
  cancelled: boolean;
}

/**
 * A clock that only moves when told. Timers fire in due order (ties in the
 * order they were set), with now() equal to their due time while they run, and
 * timers set by a firing callback inside the advanced window fire too.
 */
export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  // A sorted array is plenty for tests: a few hundred timers at most.
  #timers: FakeTimer[] = [];

  constructor(startMs = 1_700_000_000_000) {
    this.#now = startMs;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(callback: () => void, delayMs: number): Timer {
    const timer: FakeTimer = {
      due: this.#now + Math.max(0, delayMs),
      seq: this.#seq++,
      callback,
      cancelled: false,
    };
    // Insert after every timer due at or before this one: stable for ties.
    let lo = 0;
    let hi = this.#timers.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#timers[mid]!.due <= timer.due) lo = mid + 1;
      else hi = mid;
    }
    this.#timers.splice(lo, 0, timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }

  /** Number of timers not yet fired or cancelled. */
  get pending(): number {
    return this.#timers.filter((t) => !t.cancelled).length;
  }

  /** Due time of the next live timer, or undefined. */
  nextDue(): number | undefined {
    return this.#timers.find((t) => !t.cancelled)?.due;
  }

  /** Moves time forward by ms, firing every timer that falls due on the way. */
  advance(ms: number): void {
    if (ms < 0) throw new RangeError(`FakeClock cannot go back (${ms} ms)`);
    this.advanceTo(this.#now + ms);
  }

  /** Moves time forward to an absolute instant, firing timers on the way. */
  advanceTo(target: number): void {
    if (target < this.#now) throw new RangeError(`FakeClock cannot go back to ${target}`);
    while (true) {
      const next = this.#timers[0];
      if (next === undefined || next.due > target) break;
      this.#timers.shift();
      if (next.cancelled) continue;
      this.#now = next.due;
      next.callback();
    }
    this.#now = target;
  }

  /** Fires timers already due without moving time. */
  runDue(): void {
    this.advanceTo(this.#now);
  }
}
