import { ipv4FromString } from '../../../wire/ipv4.ts';
import { FragmentTable } from './fragment-table.ts';
import type { FragmentTableOptions } from './fragment-table.ts';
import { FragmentHold } from './fragment-hold.ts';
import type { FragmentHoldOptions } from './fragment-hold.ts';
import { Iaptt, DEFAULT_IAPTT_IDLE } from './iaptt.ts';
import type { IapttIdle } from './iaptt.ts';
import { LeaseOwnership } from './lease-ownership.ts';
import type { LeasedBlock, OwnershipChange } from './lease-ownership.ts';
import { WithdrawnPorts } from './withdrawn-ports.ts';
import { WithdrawnSpis } from './withdrawn-spis.ts';

/** A leased block with its host as a number, as the second index takes it. */
export interface OwnedBlock {
  readonly host: number;
  readonly kind: 'port' | 'spi';
  readonly first: number;
  readonly count: number;
}

/**
 * A second per-value index that must never know an owner LeaseOwnership
 * does not (the eBPF fast path's maps). It hears a block after the index
 * accepted it and before the index lets it go, and is given the withdrawn
 * SPI ranges whole after every change to them, before the change returns.
 */
export interface OwnershipMirror {
  onLeaseAdded(block: OwnedBlock): unknown;
  onLeaseRemoved(block: OwnedBlock): unknown;
  onSpisWithdrawn?(ranges: readonly { first: number; end: number }[]): unknown;
}

/**
 * Who hears what the index did with each event after this thread's own
 * tables did (the forwarding workers, whose tables beside the index follow
 * by message: daemon/workers.ts).
 */
export interface TablesFollower {
  onAdded(lease: LeasedBlock, change: OwnershipChange): void;
  onRemoved(lease: LeasedBlock, withdrawn: boolean, change: OwnershipChange, at: number): void;
}

export interface RouterTablesOptions {
  readonly maxSpis?: number;
  readonly idle?: IapttIdle;
  readonly fragments?: FragmentTableOptions;
  readonly hold?: FragmentHoldOptions;
  /** When a withdrawal happened, for the drain of withdrawn ports (the data path's clock). Default Date. */
  readonly clock?: { now(): number };
  /**
   * The ownership index to use: LeaseOwnership.shared() on a main thread
   * whose workers read it, LeaseOwnership.reader() in a worker. Default: one
   * of this thread alone.
   */
  readonly ownership?: LeaseOwnership;
  /** The IAPTT to use (Iaptt.shared in a worker, whose rows the main thread merges). */
  readonly iaptt?: Iaptt;
}

/**
 * The tables the router's packets touch: who owns each port, ICMP id and
 * SPI (FIG. 8, FIG. 21: LeaseOwnership), the flows in use (FIG. 12: IAPTT)
 * and the fragment tables. This is the lease table's one listener on the
 * data path (register it with LeaseTable.addListener): a lease event enters
 * the ownership index, and a block that ends also leaves the IAPTT and, when
 * its host holds nothing more, the fragment table. A mirror (the fast
 * path's maps) follows the index: adds after it, removals before it.
 */
export class RouterTables {
  readonly ownership: LeaseOwnership;
  readonly iaptt: Iaptt;
  readonly fragments: FragmentTable;
  readonly held: FragmentHold;
  /** SPI blocks taken back from their hosts and not leased since: ESP/AH for them is `spi-withdrawn`. */
  readonly withdrawnSpis = new WithdrawnSpis();
  /** Port blocks taken back from their hosts, draining: the former owner's IKE from them still goes out. */
  readonly withdrawnPorts = new WithdrawnPorts();
  readonly #clock: { now(): number };
  #mirror: OwnershipMirror | undefined;
  #follower: TablesFollower | undefined;

  constructor(options: RouterTablesOptions = {}) {
    this.ownership = options.ownership ?? new LeaseOwnership(options.maxSpis);
    // FIG. 12 rows by port slot, as many addresses as the ownership index holds.
    this.iaptt =
      options.iaptt ?? new Iaptt(options.idle ?? DEFAULT_IAPTT_IDLE, undefined, this.ownership.addresses);
    this.fragments = new FragmentTable(options.fragments);
    this.held = new FragmentHold(options.hold);
    this.#clock = options.clock ?? Date;
  }

  /**
   * Makes `mirror` follow the index from now on; it is told every block the
   * index holds now first. undefined detaches it.
   */
  setMirror(mirror: OwnershipMirror | undefined): void {
    this.#mirror = mirror;
    if (mirror === undefined) return;
    for (const block of this.ownership.blocks()) mirror.onLeaseAdded(block);
    if (this.withdrawnSpis.size > 0) mirror.onSpisWithdrawn?.(this.withdrawnSpis.ranges());
  }

  /** Makes `follower` hear every event's outcome from now on; undefined detaches it. */
  setFollower(follower: TablesFollower | undefined): void {
    this.#follower = follower;
  }

  /** Enters a leased block. Returns what happened (the listener contract ignores it; the log and tests use it). */
  onLeaseAdded(lease: LeasedBlock): OwnershipChange {
    const change = this.ownership.onLeaseAdded(lease);
    this.afterAdded(lease, change);
    this.#follower?.onAdded(lease, change);
    return change;
  }

  /**
   * What follows an add in the tables beside the index. A worker, whose
   * index the main thread changes, hears the main thread's result and calls
   * this for its own tables.
   */
  afterAdded(lease: LeasedBlock, change: OwnershipChange): void {
    if (change !== 'added') return;
    if (lease.kind === 'spi' && this.withdrawnSpis.clear(lease)) this.#withdrawnChanged();
    if (lease.kind === 'port') this.withdrawnPorts.clear(lease);
    if (this.#mirror !== undefined) this.#mirror.onLeaseAdded(owned(lease));
  }

  /**
   * Withdraws a block, and for ports also the IAPTT rows the host had in it.
   * `withdrawn`: the router took it back (rather than it ending or being given back).
   */
  onLeaseRemoved(lease: LeasedBlock, withdrawn = false): OwnershipChange {
    // The mirror lets go first: it must not route what the index no longer does.
    if (this.#mirror !== undefined) this.#mirror.onLeaseRemoved(owned(lease));
    const change = this.ownership.onLeaseRemoved(lease);
    const at = this.#clock.now();
    this.afterRemoved(lease, withdrawn, change, at);
    this.#follower?.onRemoved(lease, withdrawn, change, at);
    return change;
  }

  /** What follows a removal beside the index (see afterAdded); `at`: when it happened. */
  afterRemoved(lease: LeasedBlock, withdrawn: boolean, change: OwnershipChange, at: number): void {
    if (change !== 'removed') return;
    if (withdrawn && lease.kind === 'spi') {
      this.withdrawnSpis.add(lease);
      this.#withdrawnChanged();
    }
    // The event names the host as text; the tables key it as a number, which
    // a removal that took something away proves it has.
    const host = ipv4FromString(lease.host)!;
    if (lease.kind === 'port') this.iaptt.clearPorts(lease.lowest, lease.count, host);
    if (withdrawn && lease.kind === 'port') this.withdrawnPorts.add(lease, host, at);
    // A host with nothing left has no datagram in flight worth finishing.
    if (!this.ownership.holds(host)) this.fragments.forgetOwner(host);
  }

  #withdrawnChanged(): void {
    this.#mirror?.onSpisWithdrawn?.(this.withdrawnSpis.ranges());
  }
}

function owned(lease: LeasedBlock): OwnedBlock {
  return { host: ipv4FromString(lease.host) ?? 0, kind: lease.kind, first: lease.lowest, count: lease.count };
}
