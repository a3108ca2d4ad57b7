import { randomInt } from 'node:crypto';
import type { Clock, Timer } from '../util/clock.ts';
import type { PapMessage } from '../wire/pap.ts';
import { PAP_MESSAGE_LENGTH, papStatusName, emitPap, parsePap, type PapStatusName } from '../wire/pap.ts';
import type { ResourceKind } from '../util/block.ts';
import type { PortPreference } from './block.ts';
import { MAX_BLOCK } from './block.ts';
import type { HeldBlock } from './held-block.ts';
import type { HostLeases, HostLeasesListener } from './host-leases.ts';
import type { PapPeer, PapTransport } from './transport.ts';

/** How an exchange ended: the router's status, or no answer at all. */
export type PapOutcomeStatus = PapStatusName | 'unknown-status' | 'timeout' | 'abandoned' | 'stopped';

export interface PapOutcome {
  readonly status: PapOutcomeStatus;
  /** The router's response, when there was one. */
  readonly response?: PapMessage;
}

export interface RetransmitPolicy {
  /** First wait for an answer. Default 1000 ms. */
  readonly initialMs?: number;
  /** Longest wait between two sends. Default 16000 ms. */
  readonly maxMs?: number;
  /** Sends in all, the first included. Default 5 (about 31 s before giving up). */
  readonly attempts?: number;
  /** Each wait is scaled by a random factor in [1 - jitter, 1 + jitter]. Default 0.1. */
  readonly jitter?: number;
}

/** The retransmission a host uses unless told otherwise; src/config/router-config.ts sizes leases by it. */
export const DEFAULT_RETRANSMIT: Required<RetransmitPolicy> = {
  initialMs: 1000,
  maxMs: 16_000,
  attempts: 5,
  jitter: 0.1,
};

export interface PapClientOptions {
  readonly transport: PapTransport;
  /** The router's PAP address (LAN address, and UDP port 7032 over UDP); switchRouter() changes it. */
  readonly router: PapPeer;
  readonly clock: Clock;
  readonly leases: HostLeases;
  readonly retransmit?: RetransmitPolicy;
  /** Lease to ask for, in seconds; 0 = the router's default. */
  readonly leaseSeconds?: number;
  /** Port request code: 0 (below 10000) or 1 (10000 and above). Default low. */
  readonly portPreference?: PortPreference;
  /** Wait before asking again after a refused or unanswered request. Default 30 s. */
  readonly retryAfterMs?: number;
  /** Uniform [0, 1) source for jitter and the first transaction id. Default Math.random. */
  readonly random?: () => number;
  /**
   * The shared address this host uses (unsigned 32-bit), named in every port
   * message so that a router with several grants ports on this one. Absent:
   * named as 0, the router's first.
   */
  readonly sharedAddress?: number;
}

export interface PapClientCounters {
  sent: number;
  retransmitted: number;
  timeouts: number;
  /** Messages that matched nothing we sent, or did not come from the router. */
  unmatched: number;
  malformed: number;
  withdrawals: number;
}

interface Exchange {
  readonly txid: number;
  readonly kind: ResourceKind;
  readonly op: 'request' | 'renew' | 'invalidate';
  /** The block a renewal names. */
  readonly lowest: number;
  /** The epoch the message carried: for a renew, the block's (an earlier one makes it a reclaim). */
  readonly epoch: number;
  readonly bytes: Uint8Array;
  /** When the first copy went out: leases count from here. */
  readonly sentAt: number;
  attempt: number;
  timer: Timer | undefined;
  readonly resolve: (o: PapOutcome) => void;
}

/**
 * The host's end of PAP. Builds requests, retransmits each with exponential
 * back-off under one transaction id until the matching answer arrives, and
 * keeps HostLeases current: new blocks when it runs low, renewals when they
 * fall due (T1 and T2 each a transaction of its own; a renew still
 * unanswered at T2 is abandoned for the new one, and every renew of a block
 * ends when the block does), and, when an answer shows the router restarted
 * without its leases (a new epoch), a reclaim of every block still held:
 * a renew carrying the block's own epoch, which the router grants during its
 * hold-off if nobody else reclaimed the values first.
 */
export class PapClient {
  readonly counters: PapClientCounters = {
    sent: 0,
    retransmitted: 0,
    timeouts: 0,
    unmatched: 0,
    malformed: 0,
    withdrawals: 0,
  };
  readonly #o: PapClientOptions;
  readonly #policy: Required<RetransmitPolicy>;
  readonly #random: () => number;
  readonly #pending = new Map<number, Exchange>();
  readonly #retryTimers: Record<ResourceKind, Timer | undefined> = { port: undefined, spi: undefined };
  #nextTxid: number;
  #router: PapPeer;
  /** When the oldest message still without any answer from the router after it went out; undefined: none. */
  #unansweredSince: number | undefined;
  #lastAnswerAt: number;
  #started = false;
  #stopped = false;
  readonly #driver: HostLeasesListener = {
    onMoreNeeded: (kind, count) => this.#askFor(kind, count),
    onRenewDue: (block: HeldBlock, attempt) => {
      const pending = this.#renewsOf(block);
      if (pending.length > 0) {
        if (attempt === 1) return;
        // T2 is a transaction of its own (docs/pap.md 6.2), not more copies of T1's.
        for (const ex of pending) this.#finish(ex, { status: 'abandoned' });
      }
      void this.renew(block.kind, block.lowest, block.count);
    },
    onReclaimDue: (block: HeldBlock) => {
      // A renewal already carrying the block's epoch is a reclaim itself.
      if (!this.#renewsOf(block).some((ex) => ex.epoch === block.epoch))
        void this.renew(block.kind, block.lowest, block.count);
    },
    onBlockLost: (block: HeldBlock) => {
      // The lease ran out (or the block went otherwise): its renewals have nothing left to save.
      for (const ex of this.#renewsOf(block)) this.#finish(ex, { status: 'abandoned' });
    },
  };

  constructor(options: PapClientOptions) {
    this.#o = options;
    this.#policy = { ...DEFAULT_RETRANSMIT, ...options.retransmit };
    this.#random = options.random ?? Math.random;
    this.#router = options.router;
    this.#lastAnswerAt = options.clock.now();
    this.#nextTxid = options.random
      ? Math.floor(options.random() * 0xffffffff) + 1
      : randomInt(1, 0x100000000);
    options.transport.onMessage((bytes, peer) => this.receive(bytes, peer));
  }

  /** Starts driving the leases: asks for what is short now and renews as blocks fall due. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#o.leases.addListener(this.#driver);
    this.#o.leases.checkWater();
  }

  /** Stops retransmitting and driving; pending exchanges end with 'stopped'. */
  stop(): void {
    this.#stopped = true;
    this.#o.leases.removeListener(this.#driver);
    for (const k of ['port', 'spi'] as const) this.#retryTimers[k]?.cancel();
    for (const ex of [...this.#pending.values()]) this.#finish(ex, { status: 'stopped' });
  }

  /** Asks the router for a block of `count` values (0: the router's default). */
  request(kind: ResourceKind, count = 0): Promise<PapOutcome> {
    const n = Math.min(count, MAX_BLOCK[kind]);
    const ext = this.#ext();
    const address = this.#address();
    const msg: PapMessage =
      kind === 'port'
        ? {
            kind: 'port-request',
            highPorts: this.#o.portPreference === 'high',
            portsRequested: n,
            ...ext,
            ...address,
          }
        : { kind: 'spi-request', spisRequested: n, ...ext };
    return this.#exchange(kind, 'request', msg, 0);
  }

  /** Renews a held block, naming the epoch it was granted in (an earlier one than the router's: a reclaim). */
  renew(kind: ResourceKind, lowest: number, count: number): Promise<PapOutcome> {
    const held = this.#o.leases.find(kind, lowest);
    const ext = held === undefined ? this.#ext() : { ...this.#ext(), epoch: held.epoch };
    const msg: PapMessage =
      kind === 'port'
        ? { kind: 'port-renew', lowestPort: lowest, portCount: count, ...ext, ...this.#address() }
        : { kind: 'spi-renew', lowestSpi: lowest, spiCount: count, ...ext };
    return this.#exchange(kind, 'renew', msg, lowest);
  }

  /** Stops using the block containing value and tells the router (the patent's invalidate). */
  release(kind: ResourceKind, value: number): Promise<PapOutcome> {
    const held = this.#o.leases.release(kind, value);
    const ext = { ...this.#ext(), epoch: held?.epoch ?? this.#o.leases.epoch, leaseTime: 0 };
    const msg: PapMessage =
      kind === 'port'
        ? { kind: 'port-invalidate', port: value, ...ext, ...this.#address() }
        : { kind: 'spi-invalidate', spi: value, ...ext };
    return this.#exchange(kind, 'invalidate', msg, value);
  }

  #address(): { address?: number } {
    const a = this.#o.sharedAddress;
    return a === undefined || a === 0 ? {} : { address: a >>> 0 };
  }

  /** The router messages go to now. */
  get router(): PapPeer {
    return this.#router;
  }

  /** When the router last sent anything that parsed. */
  get lastAnswerAt(): number {
    return this.#lastAnswerAt;
  }

  /** How long the router has left a message of ours without any answer (0: nothing unanswered). */
  silentFor(now: number): number {
    return this.#unansweredSince === undefined ? 0 : now - this.#unansweredSince;
  }

  /**
   * Sends through another router from now on (routers sharing one lease
   * table: it renews the blocks the last one granted). Every exchange still
   * waiting goes to it at once, with its back-off started again, under its
   * transaction id; the old router's late answers are ignored.
   */
  switchRouter(router: PapPeer): void {
    this.#router = router;
    this.#unansweredSince = undefined;
    if (this.#stopped) return;
    for (const ex of this.#pending.values()) {
      ex.timer?.cancel();
      ex.attempt = 0;
      this.#send(ex);
    }
  }

  /** Handles one message from the network (the transport calls this). */
  receive(bytes: Uint8Array, peer: PapPeer): void {
    if (peer.address !== this.#router.address) {
      this.counters.unmatched++;
      return;
    }
    const parsed = parsePap(bytes, 0, bytes.length);
    if (!parsed.ok) {
      this.counters.malformed++;
      return;
    }
    // Any answer at all says the router is alive, whatever it answers.
    this.#lastAnswerAt = this.#o.clock.now();
    this.#unansweredSince = undefined;
    const msg = parsed.value;
    const leases = this.#o.leases;
    if (msg.kind === 'port-withdraw' || msg.kind === 'spi-withdraw') {
      if (msg.epoch !== leases.epoch) return; // a withdraw from another router life names nothing we hold
      // Ports of another of the router's addresses are not this host's, whatever their numbers.
      const mine = this.#o.sharedAddress;
      if (
        msg.kind === 'port-withdraw' &&
        msg.address !== undefined &&
        mine !== undefined &&
        msg.address !== mine
      )
        return;
      this.counters.withdrawals++;
      const [kind, lowest] = msg.kind === 'port-withdraw' ? ['port', msg.lowestPort] : ['spi', msg.lowestSpi];
      leases.lose(kind as ResourceKind, lowest, 'withdrawn', msg.epoch);
      return;
    }
    if (msg.kind !== 'port-response' && msg.kind !== 'spi-response') {
      this.counters.unmatched++;
      return;
    }
    const kind: ResourceKind = msg.kind === 'port-response' ? 'port' : 'spi';
    const ex = this.#pending.get(msg.transactionId);
    if (ex === undefined || ex.kind !== kind) {
      this.counters.unmatched++; // a late duplicate, or not ours
      return;
    }
    const [lowest, count] =
      msg.kind === 'port-response' ? [msg.lowestPort, msg.portCount] : [msg.lowestSpi, msg.spiCount];
    const status: PapOutcomeStatus = msg.success ? 'ok' : (papStatusName(msg.status) ?? 'unknown-status');
    // Settle first, so that HostLeases asking for more from inside grant() starts a new exchange.
    this.#finish(ex, { status, response: msg });
    switch (ex.op) {
      case 'request':
        if (status === 'ok' && count > 0) {
          leases.grant(kind, lowest, count, msg.leaseTime, msg.epoch, ex.sentAt);
        } else {
          leases.observeEpoch(msg.epoch);
          // try-later carries the seconds until the router grants again; spread the hosts a little.
          const wait = status === 'try-later' ? msg.leaseTime * 1000 + 1000 * this.#random() : undefined;
          this.#retryLater(kind, wait);
        }
        break;
      case 'renew':
        if (status === 'ok') {
          leases.renewed(kind, lowest, msg.leaseTime, msg.epoch, ex.sentAt);
        } else if (status === 'stale-epoch') {
          // That router life is over for good: nothing granted in it comes back.
          leases.forgetEpoch(ex.epoch);
          leases.observeEpoch(msg.epoch);
        } else {
          // unknown-lease, or a reclaim over quota: this block is not ours any more.
          if (status === 'unknown-lease' || status === 'quota-exceeded') leases.lose(kind, lowest, 'refused');
          leases.observeEpoch(msg.epoch);
        }
        break;
      case 'invalidate':
        if (status === 'stale-epoch') leases.forgetEpoch(ex.epoch);
        leases.observeEpoch(msg.epoch);
        break;
    }
  }

  /** Transactions awaiting an answer. */
  get pending(): number {
    return this.#pending.size;
  }

  #askFor(kind: ResourceKind, count: number): void {
    if (this.#stopped || this.#inFlight(kind, 'request') || this.#retryTimers[kind] !== undefined) return;
    void this.request(kind, count);
  }

  /** Whether an exchange of this kind and op awaits its answer. */
  #inFlight(kind: ResourceKind, op: Exchange['op']): boolean {
    for (const ex of this.#pending.values()) if (ex.kind === kind && ex.op === op) return true;
    return false;
  }

  /** The renewals of this block awaiting their answers. */
  #renewsOf(block: HeldBlock): Exchange[] {
    return [...this.#pending.values()].filter(
      (ex) => ex.kind === block.kind && ex.op === 'renew' && ex.lowest === block.lowest,
    );
  }

  #retryLater(kind: ResourceKind, waitMs?: number): void {
    if (this.#stopped || this.#retryTimers[kind] !== undefined) return;
    this.#retryTimers[kind] = this.#o.clock.setTimeout(
      () => {
        this.#retryTimers[kind] = undefined;
        const short = this.#o.leases.shortfall(kind);
        if (short > 0) this.#askFor(kind, short);
      },
      waitMs ?? this.#o.retryAfterMs ?? 30_000,
    );
  }

  #ext(): { status: number; transactionId: number; epoch: number; leaseTime: number } {
    return { status: 0, transactionId: 0, epoch: this.#o.leases.epoch, leaseTime: this.#o.leaseSeconds ?? 0 };
  }

  #exchange(kind: ResourceKind, op: Exchange['op'], msg: PapMessage, lowest: number): Promise<PapOutcome> {
    if (this.#stopped) return Promise.resolve({ status: 'stopped' });
    const txid = this.#takeTxid();
    const bytes = new Uint8Array(PAP_MESSAGE_LENGTH);
    emitPap({ ...msg, transactionId: txid }, bytes, 0);
    return new Promise<PapOutcome>((resolve) => {
      const ex: Exchange = {
        txid,
        kind,
        op,
        lowest,
        epoch: msg.epoch,
        bytes,
        sentAt: this.#o.clock.now(),
        attempt: 0,
        timer: undefined,
        resolve,
      };
      this.#pending.set(txid, ex);
      this.#send(ex);
    });
  }

  #send(ex: Exchange): void {
    this.#o.transport.send(ex.bytes, this.#router);
    this.#unansweredSince ??= this.#o.clock.now();
    this.counters.sent++;
    if (ex.attempt > 0) this.counters.retransmitted++;
    const p = this.#policy;
    const base = Math.min(p.maxMs, p.initialMs * 2 ** ex.attempt);
    const wait = base * (1 + p.jitter * (2 * this.#random() - 1));
    ex.attempt++;
    ex.timer = this.#o.clock.setTimeout(() => {
      if (ex.attempt >= p.attempts) {
        this.counters.timeouts++;
        this.#finish(ex, { status: 'timeout' });
        if (ex.op === 'request') this.#retryLater(ex.kind);
      } else {
        this.#send(ex);
      }
    }, wait);
  }

  #finish(ex: Exchange, outcome: PapOutcome): void {
    ex.timer?.cancel();
    this.#pending.delete(ex.txid);
    ex.resolve(outcome);
  }

  #takeTxid(): number {
    const t = this.#nextTxid;
    this.#nextTxid = (this.#nextTxid % 0xffffffff) + 1; // 1 .. 2^32-1, never 0
    return t;
  }
}
