import type { BlockChange } from './block-ledger.ts';
import { FragmentTable } from './fragment-table.ts';
import type { FragmentTableOptions } from './fragment-table.ts';
import { FragmentHold } from './fragment-hold.ts';
import type { FragmentHoldOptions } from './fragment-hold.ts';
import { Iaptt, DEFAULT_IAPTT_IDLE } from './iaptt.ts';
import type { IapttIdle } from './iaptt.ts';
import { PortTable } from './port-table.ts';
import { SpiTable } from './spi-table.ts';

/**
 * A block leased or withdrawn by the PAP server. `host` is the internal IPv4
 * address as an unsigned 32-bit integer. (Declared here by shape; the PAP
 * module's lease events have the same fields.)
 */
export interface LeaseBlock {
  readonly host: number;
  readonly kind: 'port' | 'spi';
  readonly first: number;
  readonly count: number;
}

/** What the PAP server calls as leases come and go. */
export interface LeaseListener {
  onLeaseAdded(lease: LeaseBlock): void;
  onLeaseRemoved(lease: LeaseBlock): void;
}

export interface RouterTablesOptions {
  readonly maxSpis?: number;
  readonly idle?: IapttIdle;
  readonly fragments?: FragmentTableOptions;
  readonly hold?: FragmentHoldOptions;
}

export interface RouterTablesCounters {
  /** Lease events that changed nothing (overlap, out of range, full, or a removal of something not owned). */
  leaseRejected: number;
}

/**
 * The router's lookup tables, kept in step with PAP's leases: FIG. 8 (ports,
 * and ICMP ids), FIG. 21 (SPIs), FIG. 12 (IAPTT) and the fragment tables.
 * The forwarding loop reads the tables directly; this class only routes
 * lease events to them so that a withdrawn block also leaves the IAPTT.
 */
export class RouterTables implements LeaseListener {
  readonly ports = new PortTable();
  readonly spis: SpiTable;
  readonly iaptt: Iaptt;
  readonly fragments: FragmentTable;
  readonly held: FragmentHold;
  readonly counters: RouterTablesCounters = { leaseRejected: 0 };

  constructor(options: RouterTablesOptions = {}) {
    this.spis = new SpiTable(options.maxSpis);
    this.iaptt = new Iaptt(options.idle ?? DEFAULT_IAPTT_IDLE);
    this.fragments = new FragmentTable(options.fragments);
    this.held = new FragmentHold(options.hold);
  }

  /** Enters a leased block. Returns what happened (the listener contract ignores it; tests and logs use it). */
  onLeaseAdded(lease: LeaseBlock): BlockChange {
    const table = lease.kind === 'port' ? this.ports : this.spis;
    const change = table.addBlock(lease.host, lease.first, lease.count);
    if (change !== 'added' && change !== 'exists') this.counters.leaseRejected++;
    return change;
  }

  /** Withdraws a block, and for ports also the IAPTT rows the host had in it. */
  onLeaseRemoved(lease: LeaseBlock): BlockChange {
    const table = lease.kind === 'port' ? this.ports : this.spis;
    const change = table.removeBlock(lease.host, lease.first, lease.count);
    if (change !== 'removed') this.counters.leaseRejected++;
    else if (lease.kind === 'port') this.iaptt.clearPorts(lease.first, lease.count, lease.host);
    return change;
  }

  /** Forgets a host entirely (PAP saw it go). */
  removeHost(host: number): void {
    for (const row of this.ports.blocksOf(host)) this.iaptt.clearPorts(row.first, row.count, host);
    this.ports.removeHost(host);
    this.spis.removeHost(host);
    this.fragments.forgetOwner(host);
  }
}
