import type { NumericLeaseBlock, NumericLeaseSink } from '../../pap/router-link.ts';
import type { BlockChange } from './tables/block-ledger.ts';
import type { RouterTables } from './tables/router-tables.ts';

/**
 * The lease sink the router hands to PAP's numeric lease listener: passes
 * every lease event on to RouterTables (FIG. 8, FIG. 21) and keeps, beside
 * them, the set of hosts that hold at least one block of either kind.
 *
 * The forwarder asks "does this host hold any lease?" for packets that carry
 * no port it could check (ESP and AH sent out, non-first fragments); that is
 * one Map lookup per packet here instead of walking the tables' rows. The
 * count is recomputed from the tables after each event, so it follows what
 * the tables accepted, not what PAP asked.
 */
export class LeaseHolders implements NumericLeaseSink {
  readonly #blocks = new Map<number, number>();

  constructor(readonly tables: RouterTables) {}

  onLeaseAdded(lease: NumericLeaseBlock): BlockChange {
    const change = this.tables.onLeaseAdded(lease);
    this.#refresh(lease.host);
    return change;
  }

  onLeaseRemoved(lease: NumericLeaseBlock): BlockChange {
    const change = this.tables.onLeaseRemoved(lease);
    this.#refresh(lease.host);
    // A host with nothing left has no datagram in flight worth finishing.
    if (!this.#blocks.has(lease.host)) this.tables.fragments.forgetOwner(lease.host);
    return change;
  }

  /** True when `host` (an IPv4 address as u32) holds at least one port or SPI block. */
  holds(host: number): boolean {
    return this.#blocks.has(host);
  }

  /** Hosts holding any block. */
  get hostCount(): number {
    return this.#blocks.size;
  }

  #refresh(host: number): void {
    const n = this.tables.ports.blocksOf(host).length + this.tables.spis.blocksOf(host).length;
    if (n > 0) this.#blocks.set(host, n);
    else this.#blocks.delete(host);
  }
}
