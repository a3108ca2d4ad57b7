/**
 * The SAs a daemon keeps up on its own initiative: for each configured peer
 * with `initiate`, one IKE SA with its child SA, started at once and started
 * again, after a pause that doubles up to a minute, whenever the attempt
 * fails or the SA goes down (strongSwan's start_action=start with
 * dpd_action=restart). Peers without `initiate` are waited for.
 */
import type { Clock, Timer } from '../util/clock.ts';
import type { ChildRequest } from './config.ts';
import type { IkeDaemon } from './daemon.ts';
import type { IkeSa } from './ike-sa.ts';
import type { Endpoint } from './nat.ts';

export interface KeptConnection {
  readonly remote: Endpoint;
  /** Asked at each attempt: what a host may offer changes with its leases. */
  readonly child: ChildRequest | (() => ChildRequest);
}

export type ConnectionState = 'connecting' | 'up' | 'waiting';

interface Entry {
  readonly want: KeptConnection;
  state: ConnectionState;
  sa: IkeSa | undefined;
  delayMs: number;
  timer: Timer | undefined;
  attempts: number;
  lastError: string | undefined;
}

const MAX_DELAY_MS = 60_000;

export class KeptConnections {
  readonly #daemon: IkeDaemon;
  readonly #clock: Clock;
  readonly #firstDelayMs: number;
  readonly #entries: Entry[] = [];
  readonly #log: (level: 'info' | 'warn', message: string) => void;
  #closed = false;
  /** Held: attempts wait for resume() (a host whose certificate was just revoked waits for its next). */
  #held = false;

  constructor(
    daemon: IkeDaemon,
    clock: Clock,
    o: { firstDelayMs: number; log?: (level: 'info' | 'warn', message: string) => void },
  ) {
    this.#daemon = daemon;
    this.#clock = clock;
    this.#firstDelayMs = o.firstDelayMs;
    this.#log = o.log ?? (() => {});
    daemon.on((e) => {
      if (e.type !== 'ike-down' && e.type !== 'ike-rekeyed') return;
      const entry = this.#entries.find((x) => x.sa === (e.type === 'ike-rekeyed' ? e.old : e.sa));
      if (entry === undefined) return;
      if (e.type === 'ike-rekeyed') {
        entry.sa = e.sa;
        return;
      }
      entry.sa = undefined;
      this.#log('warn', `IKE SA with ${where(entry.want.remote)} went down (${e.reason}): starting again`);
      this.#schedule(entry, this.#firstDelayMs);
    });
  }

  /** Starts keeping `want` up. */
  add(want: KeptConnection): void {
    const entry: Entry = {
      want,
      state: 'waiting',
      sa: undefined,
      delayMs: this.#firstDelayMs,
      timer: undefined,
      attempts: 0,
      lastError: undefined,
    };
    this.#entries.push(entry);
    this.#start(entry);
  }

  /** For status: one line per kept connection. */
  describe(): { remote: string; state: ConnectionState; attempts: number; lastError: string }[] {
    return this.#entries.map((e) => ({
      remote: where(e.want.remote),
      state: e.state,
      attempts: e.attempts,
      lastError: e.lastError ?? '',
    }));
  }

  /** Holds every new attempt until resume(); SAs up now stay up. */
  hold(): void {
    this.#held = true;
  }

  /** Lets attempts go again: connections that are down start at once. */
  resume(): void {
    if (!this.#held) return;
    this.#held = false;
    for (const e of this.#entries)
      if (e.state === 'waiting' && e.sa === undefined) {
        e.timer?.cancel();
        e.delayMs = this.#firstDelayMs;
        this.#start(e);
      }
  }

  get held(): boolean {
    return this.#held;
  }

  close(): void {
    this.#closed = true;
    for (const e of this.#entries) e.timer?.cancel();
  }

  #schedule(entry: Entry, delayMs: number): void {
    if (this.#closed) return;
    entry.state = 'waiting';
    entry.timer?.cancel();
    entry.timer = this.#clock.setTimeout(() => this.#start(entry), delayMs);
  }

  #start(entry: Entry): void {
    if (this.#closed) return;
    if (this.#held) {
      entry.state = 'waiting';
      return;
    }
    entry.state = 'connecting';
    entry.attempts++;
    const child = typeof entry.want.child === 'function' ? entry.want.child() : entry.want.child;
    this.#daemon.initiate(entry.want.remote, child).then(
      (sa) => {
        entry.sa = sa;
        entry.state = 'up';
        entry.delayMs = this.#firstDelayMs;
        entry.lastError = undefined;
        this.#log('info', `IKE SA with ${where(entry.want.remote)} is up`);
      },
      (err: Error) => {
        entry.lastError = err.message;
        this.#log(
          'warn',
          `IKE with ${where(entry.want.remote)} failed: ${err.message}; again in ${entry.delayMs / 1000} s`,
        );
        this.#schedule(entry, entry.delayMs);
        entry.delayMs = Math.min(entry.delayMs * 2, MAX_DELAY_MS);
      },
    );
  }
}

const where = (e: Endpoint): string => `${e.address}:${e.port}`;
