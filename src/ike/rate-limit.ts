/**
 * A token bucket: at most `burst` actions at once, refilled at `perSecond`.
 * The daemon paces the work it starts on its own (rekeys on schedule or by
 * volume, liveness checks) through one, so that many SAs due at the same
 * moment, after a restart or a clock jump, or a peer that makes every SA
 * look idle, cannot make it start thousands of exchanges in one go.
 */
import type { Clock } from '../util/clock.ts';

export class TokenBucket {
  readonly #clock: Clock;
  readonly #perSecond: number;
  readonly #burst: number;
  #tokens: number;
  #at: number;

  /** `perSecond` 0: no limit. */
  constructor(clock: Clock, perSecond: number, burst: number) {
    this.#clock = clock;
    this.#perSecond = perSecond;
    this.#burst = Math.max(1, burst);
    this.#tokens = this.#burst;
    this.#at = clock.now();
  }

  #refill(): void {
    const now = this.#clock.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#at) / 1000) * this.#perSecond);
    this.#at = now;
  }

  /** Takes one token if there is one. */
  take(): boolean {
    if (this.#perSecond <= 0) return true;
    this.#refill();
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** How long until a token is there (0 when one is). */
  waitMs(): number {
    if (this.#perSecond <= 0) return 0;
    this.#refill();
    return this.#tokens >= 1 ? 0 : Math.ceil(((1 - this.#tokens) / this.#perSecond) * 1000);
  }
}
