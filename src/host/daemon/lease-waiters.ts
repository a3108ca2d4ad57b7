/** Callers of the host agent's whenLeased(), woken when a port block is gained or their time is up. */
import type { Clock } from '../../util/clock.ts';

export class LeaseWaiters {
  readonly #waiters = new Set<() => void>();

  constructor(
    private readonly clock: Clock,
    /** Whether a port block is held now. */
    private readonly leased: () => boolean,
  ) {}

  /** A port block was gained: every waiter resolves true. */
  notify(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Resolves true once a port block is held, false after `timeoutMs` without one. */
  wait(timeoutMs: number): Promise<boolean> {
    if (this.leased()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (result: boolean): void => {
        this.#waiters.delete(onLease);
        timer.cancel();
        resolve(result);
      };
      const onLease = (): void => done(true);
      const timer = this.clock.setTimeout(() => done(false), timeoutMs);
      this.#waiters.add(onLease);
    });
  }
}
