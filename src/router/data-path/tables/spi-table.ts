import { BlockLedger, formatIpv4, isHost } from './block-ledger.ts';
import type { BlockChange, BlockRow } from './block-ledger.ts';
import { U32Map } from './u32-map.ts';

/** A FIG. 21 row with the address also as text, for `distnat status`. */
export interface SpiBlockRow extends BlockRow {
  readonly address: string;
}

/**
 * The router's SPI-to-internal address table (FIG. 21, table 292): which
 * internal host owns each locally unique SPI, so that an inbound ESP or AH
 * packet can be tunnelled to the host whose SA it belongs to without the
 * router decrypting or changing anything.
 *
 * SPIs are 32 bits, so a dense array is out of the question; the packet path
 * reads an open-addressing hash with one entry per leased SPI (expected O(1),
 * no allocation). A block of 32 SPIs costs 32 entries, 256 bytes; with the
 * default limit of 2^21 entries the index stays below 17 MiB even if PAP
 * leased that many.
 */
export class SpiTable {
  private readonly owners: U32Map;
  private readonly ledger = new BlockLedger();

  /** `maxSpis`: most SPIs the table will hold across all hosts. */
  constructor(maxSpis = 1 << 21) {
    this.owners = new U32Map(256, maxSpis * 2);
  }

  /** Owner of a SPI taken from an inbound ESP/AH header, or 0. */
  ownerOf(spi: number): number {
    return this.owners.get(spi);
  }

  /** Gives SPIs [first, first + count) to `host`; all-or-nothing like `PortTable.addBlock`. */
  addBlock(host: number, first: number, count: number): BlockChange {
    if (!isHost(host) || !Number.isInteger(first) || !Number.isInteger(count)) return 'out-of-range';
    // SPI 0 is reserved for local use and never on the wire (RFC 4303 section 2.1).
    if (count < 1 || first < 1 || first + count > 0x1_0000_0000) return 'out-of-range';
    const existing = this.ledger.rowAt(first);
    if (existing !== undefined && existing.host === host && existing.count === count) return 'exists';
    if (!this.owners.hasRoomFor(count)) return 'full';
    const end = first + count;
    for (let s = first; s < end; s++) if (this.owners.get(s) !== 0) return 'overlap';
    for (let s = first; s < end; s++) this.owners.set(s, host);
    this.ledger.add(host, first, count);
    return 'added';
  }

  /** Takes SPIs [first, first + count) away from `host`; other hosts' SPIs in the range stay. */
  removeBlock(host: number, first: number, count: number): BlockChange {
    if (!isHost(host) || !Number.isInteger(first) || !Number.isInteger(count)) return 'out-of-range';
    if (count < 1 || first < 1 || first + count > 0x1_0000_0000) return 'out-of-range';
    // Walk the host's rows rather than the range: a removal range may be huge
    // (a whole pool) while the rows it hits are small.
    const rows = this.ledger.rowsOf(host);
    const removed = this.ledger.removeRange(host, first, count);
    if (removed === 0) return 'not-owned';
    const end = first + count;
    for (const row of rows) {
      const from = Math.max(first, row.first);
      const to = Math.min(end, row.first + row.count);
      for (let s = from; s < to; s++) this.owners.delete(s);
    }
    return 'removed';
  }

  /** Takes every SPI away from `host`. Returns the SPIs freed. */
  removeHost(host: number): number {
    let freed = 0;
    for (const row of this.ledger.rowsOf(host)) {
      this.removeBlock(host, row.first, row.count);
      freed += row.count;
    }
    return freed;
  }

  blocksOf(host: number): BlockRow[] {
    return this.ledger.rowsOf(host);
  }

  /** FIG. 21 as rows, lowest SPI first. */
  rows(): SpiBlockRow[] {
    return this.ledger.rows().map((r) => ({ ...r, address: formatIpv4(r.host) }));
  }

  get blockCount(): number {
    return this.ledger.rowCount;
  }

  get spiCount(): number {
    return this.ledger.unitCount;
  }

  clear(): void {
    this.owners.clear();
    this.ledger.clear();
  }
}
