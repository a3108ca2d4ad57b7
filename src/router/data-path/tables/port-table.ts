import { BlockLedger, formatIpv4, isHost } from './block-ledger.ts';
import type { BlockChange, BlockRow } from './block-ledger.ts';

/** A FIG. 8 row with the address also as text, for `distnat status`. */
export interface PortBlockRow extends BlockRow {
  readonly address: string;
}

/**
 * The router's port-to-internal address table (FIG. 8, table 118): which
 * internal host owns each locally unique port.
 *
 * Rows are the blocks PAP leased; the packet path instead reads a dense
 * owner-by-port index, `Uint32Array(65536)`, holding the owner's internal
 * IPv4 address (0 = no owner; 0.0.0.0 is never a host). A lookup is one
 * array read, with no hashing and no allocation.
 *
 * ICMP query identifiers share the port blocks. A host that leased ports
 * 1026-1057 also owns echo (and timestamp) identifiers 1026-1057: the host
 * translates its echo ids into its leased range exactly as it translates
 * source ports, and the router demultiplexes an echo reply by identifier
 * through this same index. A NAPT likewise maps the ICMP query
 * identifier as it maps a port (RFC 5508 section 3), and sharing
 * means one PAP lease covers TCP, UDP and ICMP alike, so the patent's
 * protocol needs no separate identifier allocation. Leased ports are
 * likewise shared by TCP and UDP: a port belongs to a host, not to a flow.
 */
export class PortTable {
  private readonly owners = new Uint32Array(65536);
  private readonly ledger = new BlockLedger();

  /** Owner of a destination (inbound) or source (outbound) port, or 0. */
  ownerOf(port: number): number {
    return this.owners[port & 0xffff]!;
  }

  /** Owner of an ICMP query identifier: the port blocks double as identifier blocks (see the class note). */
  ownerOfIcmpId(id: number): number {
    return this.owners[id & 0xffff]!;
  }

  /** Whether `host` may use `port` as a source: the router's outbound check (patent, after Table 8). */
  owns(host: number, port: number): boolean {
    return host !== 0 && this.owners[port & 0xffff] === host;
  }

  /**
   * Gives ports [first, first + count) to `host`. All-or-nothing: a block
   * that touches a port owned by anyone else changes nothing.
   */
  addBlock(host: number, first: number, count: number): BlockChange {
    if (!isHost(host) || !Number.isInteger(first) || !Number.isInteger(count)) return 'out-of-range';
    // Port 0 is not a port a host can send from or be reached on.
    if (count < 1 || first < 1 || first + count > 65536) return 'out-of-range';
    const existing = this.ledger.rowAt(first);
    if (existing !== undefined && existing.host === host && existing.count === count) return 'exists';
    const end = first + count;
    for (let p = first; p < end; p++) if (this.owners[p] !== 0) return 'overlap';
    this.owners.fill(host, first, end);
    this.ledger.add(host, first, count);
    return 'added';
  }

  /**
   * Takes ports [first, first + count) away from `host`. Ports in the range
   * owned by another host stay theirs; a range that cuts a row splits it.
   */
  removeBlock(host: number, first: number, count: number): BlockChange {
    if (!isHost(host) || !Number.isInteger(first) || !Number.isInteger(count)) return 'out-of-range';
    if (count < 1 || first < 1 || first + count > 65536) return 'out-of-range';
    const removed = this.ledger.removeRange(host, first, count);
    if (removed === 0) return 'not-owned';
    const end = first + count;
    for (let p = first; p < end; p++) if (this.owners[p] === host) this.owners[p] = 0;
    return 'removed';
  }

  /** Takes every port away from `host` (it left, or the router forgot it). Returns the ports freed. */
  removeHost(host: number): number {
    let freed = 0;
    for (const row of this.ledger.rowsOf(host)) {
      this.removeBlock(host, row.first, row.count);
      freed += row.count;
    }
    return freed;
  }

  /** The host's rows, lowest port first. */
  blocksOf(host: number): BlockRow[] {
    return this.ledger.rowsOf(host);
  }

  /** FIG. 8 as rows, lowest port first. */
  rows(): PortBlockRow[] {
    return this.ledger.rows().map((r) => ({ ...r, address: formatIpv4(r.host) }));
  }

  /** Number of rows (leased blocks). */
  get blockCount(): number {
    return this.ledger.rowCount;
  }

  /** Number of leased ports. */
  get portCount(): number {
    return this.ledger.unitCount;
  }

  clear(): void {
    this.owners.fill(0);
    this.ledger.clear();
  }
}
