import type { Clock, Timer } from '../util/clock.ts';
import type { ResourceKind } from '../util/block.ts';
import { blocksOverlap } from '../util/block.ts';
import { HeldBlock } from './held-block.ts';

/** Why a host stopped using a block. */
export type BlockLossReason =
  | 'expired' // the lease ran out before a renewal was answered
  | 'epoch-changed' // the router restarted without its leases and would not give this one back
  | 'refused' // the router answered a renewal (or a reclaim) with a failure
  | 'withdrawn' // the router invalidated it (code 2, R=1)
  | 'released'; // the host gave it back

export interface HostLeasesListener {
  onBlockAdded?(block: HeldBlock): void;
  /** Half (attempt 1) or seven eighths (attempt 2) of the block's lease has passed: renew it. */
  onRenewDue?(block: HeldBlock, attempt: 1 | 2): void;
  /**
   * The router has a new epoch (it restarted without its lease state) and
   * the block was granted in an earlier one: ask for it again now, with a
   * renew carrying the block's epoch (a reclaim, docs/pap.md 6.3).
   */
  onReclaimDue?(block: HeldBlock): void;
  /** An answer carried a new router epoch; `reclaiming` blocks of earlier ones are still held. */
  onEpochChanged?(epoch: number, previous: number, reclaiming: number): void;
  /** Unused values of kind fell below the low-water mark: ask for `count` more. */
  onMoreNeeded?(kind: ResourceKind, count: number): void;
  /** The block is gone; `inUse` are the values that were still allocated (their flows must go too). */
  onBlockLost?(block: HeldBlock, reason: BlockLossReason, inUse: readonly number[]): void;
}

export interface HostLeasesOptions {
  readonly clock: Clock;
  /** Values to ask for per request; 0: this kind is not wanted. Default 32 ports, no SPIs. */
  readonly want?: Partial<Record<ResourceKind, number>>;
  /** Ask for more when fewer unused values than this remain. Default: a quarter of `want`. */
  readonly lowWater?: Partial<Record<ResourceKind, number>>;
}

/** Fractions of the lease after which to renew (as DHCP's T1 and T2, RFC 2131 4.4.5). */
export const RENEW_AT = [1 / 2, 7 / 8] as const;

const KINDS: readonly ResourceKind[] = ['port', 'spi'];

/**
 * The host side of PAP: the blocks this host holds, when to renew them, when
 * to ask for more, and which of their values are in use (the patent's
 * Table 1). A block's lease counts from when its request was sent, not from
 * when the answer arrived, so the host always stops using a block no later
 * than the router frees it.
 */
export class HostLeases {
  readonly #clock: Clock;
  readonly #want: Record<ResourceKind, number>;
  readonly #lowWater: Record<ResourceKind, number>;
  readonly #blocks: Record<ResourceKind, HeldBlock[]> = { port: [], spi: [] };
  readonly #timers = new Map<HeldBlock, Timer[]>();
  readonly #listeners = new Set<HostLeasesListener>();
  #epoch = 0;

  constructor(options: HostLeasesOptions) {
    this.#clock = options.clock;
    this.#want = { port: 32, spi: 0, ...options.want };
    this.#lowWater = {
      port: options.lowWater?.port ?? Math.ceil(this.#want.port / 4),
      spi: options.lowWater?.spi ?? Math.ceil(this.#want.spi / 4),
    };
  }

  /**
   * The router epoch last seen in an answer; 0 before the first. Blocks keep
   * the epoch they were granted (or last renewed) in, which may be older
   * while they are being reclaimed.
   */
  get epoch(): number {
    return this.#epoch;
  }

  addListener(listener: HostLeasesListener): void {
    this.#listeners.add(listener);
  }

  removeListener(listener: HostLeasesListener): void {
    this.#listeners.delete(listener);
  }

  /** Blocks held, oldest first. */
  blocks(kind?: ResourceKind): HeldBlock[] {
    return kind === undefined ? [...this.#blocks.port, ...this.#blocks.spi] : [...this.#blocks[kind]];
  }

  find(kind: ResourceKind, value: number): HeldBlock | undefined {
    return this.#blocks[kind].find((b) => b.contains(value));
  }

  /** Unused values of kind across all blocks. */
  unused(kind: ResourceKind): number {
    return this.#blocks[kind].reduce((n, b) => n + b.unused, 0);
  }

  held(kind: ResourceKind): number {
    return this.#blocks[kind].reduce((n, b) => n + b.count, 0);
  }

  /** How many values to ask for now: the block size when below the low-water mark, else 0. */
  shortfall(kind: ResourceKind): number {
    if (this.#want[kind] === 0) return 0;
    return this.unused(kind) < Math.max(1, this.#lowWater[kind]) ? this.#want[kind] : 0;
  }

  /** Tells listeners about every kind that is short (at start, or after a failed request's back-off). */
  checkWater(): void {
    for (const kind of KINDS) this.#askIfShort(kind);
  }

  /**
   * Notes the router epoch of an answer. A different one than before means
   * the router restarted without its lease state. The blocks are kept (the
   * router holds off, and gives each back to the host that still holds it),
   * and listeners hear onReclaimDue for every block of an earlier epoch.
   * Returns true when the epoch changed.
   */
  observeEpoch(epoch: number): boolean {
    return this.#observeEpoch(epoch);
  }

  /**
   * Drops every block granted in `epoch`: the router answered stale-epoch, so
   * that router life is over for good and nothing of it is given back.
   */
  forgetEpoch(epoch: number): void {
    for (const kind of KINDS) {
      for (const b of [...this.#blocks[kind]]) if (b.epoch === epoch) this.#drop(b, 'epoch-changed');
    }
    this.checkWater();
  }

  /** Takes a granted block into use. `sentAt` is when the request was first sent. */
  grant(
    kind: ResourceKind,
    lowest: number,
    count: number,
    leaseSeconds: number,
    epoch: number,
    sentAt: number,
  ): HeldBlock {
    const same = this.#blocks[kind].find((b) => b.lowest === lowest && b.count === count);
    if (same !== undefined) {
      // Granted again what the host holds (from an earlier router life): carry on with it.
      this.#restart(same, leaseSeconds, sentAt, epoch);
      this.#observeEpoch(epoch);
      return same;
    }
    // The router's newest word wins over anything it overlaps.
    for (const b of [...this.#blocks[kind]]) {
      if (blocksOverlap(b, { lowest, count })) this.#drop(b, 'withdrawn');
    }
    const block = new HeldBlock(kind, lowest, count, leaseSeconds, sentAt, epoch);
    this.#blocks[kind].push(block);
    this.#schedule(block);
    for (const l of this.#listeners) l.onBlockAdded?.(block);
    this.#observeEpoch(epoch);
    this.checkWater();
    return block;
  }

  /**
   * Applies a successful renewal (or reclaim: the answer may carry a new
   * epoch, which the block takes). False if the block is no longer held.
   */
  renewed(kind: ResourceKind, lowest: number, leaseSeconds: number, epoch: number, sentAt: number): boolean {
    const b = this.#blocks[kind].find((x) => x.lowest === lowest);
    if (b !== undefined) this.#restart(b, leaseSeconds, sentAt, epoch);
    this.#observeEpoch(epoch);
    return b !== undefined;
  }

  /**
   * Drops a block the router refused to renew or withdrew. With `epoch`, only
   * a block granted in that epoch (a withdraw names blocks of its own epoch).
   */
  lose(
    kind: ResourceKind,
    value: number,
    reason: 'refused' | 'withdrawn',
    epoch?: number,
  ): HeldBlock | undefined {
    const found = this.find(kind, value);
    const b = epoch === undefined || found?.epoch === epoch ? found : undefined;
    if (b !== undefined) this.#drop(b, reason);
    this.#askIfShort(kind);
    return b;
  }

  /** Stops using a block to give it back (the caller sends the invalidate). */
  release(kind: ResourceKind, value: number): HeldBlock | undefined {
    const b = this.find(kind, value);
    if (b !== undefined) this.#drop(b, 'released');
    return b;
  }

  /**
   * Hands out an unused value for a new flow or SA, from the block whose lease
   * runs longest (a block about to lapse is a poor home for a new flow).
   */
  acquire(kind: ResourceKind): number | undefined {
    let best: HeldBlock | undefined;
    for (const b of this.#blocks[kind]) {
      if (b.unused > 0 && (best === undefined || b.expiresAt > best.expiresAt)) best = b;
    }
    const value = best?.take();
    if (value !== undefined) this.#askIfShort(kind, true);
    return value;
  }

  /** Marks a specific value in use (native mode, where the kernel picks the port). */
  claim(kind: ResourceKind, value: number): boolean {
    const ok = this.find(kind, value)?.claim(value) ?? false;
    if (ok) this.#askIfShort(kind, true);
    return ok;
  }

  /** Returns a value to its block's unused set. False if it was not in use (or its block is gone). */
  giveBack(kind: ResourceKind, value: number): boolean {
    return this.find(kind, value)?.give(value) ?? false;
  }

  isAllocated(kind: ResourceKind, value: number): boolean {
    return this.find(kind, value)?.isAllocated(value) ?? false;
  }

  /** Cancels every timer (shutting down). */
  close(): void {
    for (const timers of this.#timers.values()) for (const t of timers) t.cancel();
    this.#timers.clear();
  }

  #observeEpoch(epoch: number): boolean {
    if (epoch === 0 || epoch === this.#epoch) return false;
    const previous = this.#epoch;
    this.#epoch = epoch;
    if (previous === 0) return false;
    const older = this.blocks().filter((b) => b.epoch !== epoch);
    for (const l of this.#listeners) l.onEpochChanged?.(epoch, previous, older.length);
    for (const b of older) for (const l of this.#listeners) l.onReclaimDue?.(b);
    return true;
  }

  #restart(b: HeldBlock, leaseSeconds: number, sentAt: number, epoch: number): void {
    b.leaseSeconds = leaseSeconds;
    b.leaseStart = sentAt;
    b.expiresAt = sentAt + leaseSeconds * 1000;
    b.epoch = epoch;
    this.#schedule(b);
  }

  #schedule(b: HeldBlock): void {
    for (const t of this.#timers.get(b) ?? []) t.cancel();
    const now = this.#clock.now();
    const lease = b.leaseSeconds * 1000;
    const timers: Timer[] = RENEW_AT.map((f, i) =>
      this.#clock.setTimeout(
        () => {
          for (const l of this.#listeners) l.onRenewDue?.(b, (i + 1) as 1 | 2);
        },
        b.leaseStart + lease * f - now,
      ),
    );
    timers.push(this.#clock.setTimeout(() => this.#expire(b), b.expiresAt - now));
    this.#timers.set(b, timers);
  }

  #expire(b: HeldBlock): void {
    this.#drop(b, 'expired');
    this.#askIfShort(b.kind);
  }

  #drop(b: HeldBlock, reason: BlockLossReason): void {
    const list = this.#blocks[b.kind];
    const i = list.indexOf(b);
    if (i < 0) return;
    list.splice(i, 1);
    for (const t of this.#timers.get(b) ?? []) t.cancel();
    this.#timers.delete(b);
    const inUse = b.allocated();
    for (const l of this.#listeners) l.onBlockLost?.(b, reason, inUse);
  }

  /** Emits onMoreNeeded when kind is short; with `crossing`, only when the last take made it so. */
  #askIfShort(kind: ResourceKind, crossing = false): void {
    const count = this.shortfall(kind);
    if (count === 0) return;
    if (crossing && this.unused(kind) !== Math.max(1, this.#lowWater[kind]) - 1) return;
    for (const l of this.#listeners) l.onMoreNeeded?.(kind, count);
  }
}
