import { ipv4FromString } from '../../../wire/ipv4.ts';
import { FragmentTable } from './fragment-table.ts';
import type { FragmentTableOptions } from './fragment-table.ts';
import { FragmentHold } from './fragment-hold.ts';
import type { FragmentHoldOptions } from './fragment-hold.ts';
import { Iaptt, DEFAULT_IAPTT_IDLE } from './iaptt.ts';
import type { IapttIdle } from './iaptt.ts';
import { LeaseOwnership } from './lease-ownership.ts';
import type { LeasedBlock, OwnershipChange } from './lease-ownership.ts';

export interface RouterTablesOptions {
  readonly maxSpis?: number;
  readonly idle?: IapttIdle;
  readonly fragments?: FragmentTableOptions;
  readonly hold?: FragmentHoldOptions;
}

/**
 * The tables the router's packets touch: who owns each port, ICMP id and
 * SPI (FIG. 8, FIG. 21: LeaseOwnership), the flows in use (FIG. 12: IAPTT)
 * and the fragment tables. This is the lease table's one listener on the
 * data path (register it with LeaseTable.addListener): a lease event enters
 * the ownership index, and a block that ends also leaves the IAPTT and, when
 * its host holds nothing more, the fragment table.
 */
export class RouterTables {
  readonly ownership: LeaseOwnership;
  readonly iaptt: Iaptt;
  readonly fragments: FragmentTable;
  readonly held: FragmentHold;

  constructor(options: RouterTablesOptions = {}) {
    this.ownership = new LeaseOwnership(options.maxSpis);
    this.iaptt = new Iaptt(options.idle ?? DEFAULT_IAPTT_IDLE);
    this.fragments = new FragmentTable(options.fragments);
    this.held = new FragmentHold(options.hold);
  }

  /** Enters a leased block. Returns what happened (the listener contract ignores it; the log and tests use it). */
  onLeaseAdded(lease: LeasedBlock): OwnershipChange {
    return this.ownership.onLeaseAdded(lease);
  }

  /** Withdraws a block, and for ports also the IAPTT rows the host had in it. */
  onLeaseRemoved(lease: LeasedBlock): OwnershipChange {
    const change = this.ownership.onLeaseRemoved(lease);
    if (change !== 'removed') return change;
    const own = this.ownership;
    // The event names the host as text; the tables key it as a number, which
    // a removal that took something away proves it has.
    const host = ipv4FromString(lease.host)!;
    if (lease.kind === 'port') this.iaptt.clearPorts(lease.lowest, lease.count, host);
    // A host with nothing left has no datagram in flight worth finishing.
    if (!own.holds(host)) this.fragments.forgetOwner(host);
    return change;
  }
}
