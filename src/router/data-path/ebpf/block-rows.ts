/**
 * The rows of the patent's block tables: FIG. 8 (port-to-internal address
 * table 118) and FIG. 21 (SPI-to-internal address table 292). Both have the
 * same three columns:
 *
 *   +--------------------------+-------------------+----------------------+
 *   | INTERNAL NETWORK ADDRESS | LOWEST PORT / SPI | NUMBER OF PORTS/SPIs |
 *   +--------------------------+-------------------+----------------------+
 *   | 10.0.0.1                 | 1027              | 32                   |
 *   | 10.0.0.3                 | 1058              | 16                   |
 *   +--------------------------+-------------------+----------------------+
 *
 * and an internal address may have several rows. The ledger only keeps the
 * rows; the per-value owner index used on the packet path lives in the table
 * that owns the ledger (a dense array for ports, a hash for SPIs), and the
 * two are kept in step by that table.
 *
 * Rows are kept as leased, one per lease event, and are not merged with
 * neighbours, so `distnat status` shows the blocks PAP handed out. A partial
 * removal (PAP can invalidate part of a block) splits a row.
 */

/** One row of FIG. 8 or FIG. 21. `host` is the internal IPv4 address as an unsigned 32-bit integer. */
export interface BlockRow {
  readonly host: number;
  readonly first: number;
  readonly count: number;
}

/** What a block add or remove did. The packet path never sees these; PAP and status do. */
export type BlockChange =
  | 'added' // the whole block is now owned by the host
  | 'exists' // the same host already owned exactly this block: nothing changed
  | 'overlap' // some value in the block belongs to a row already: nothing changed
  | 'out-of-range' // bad host, count or range for this table: nothing changed
  | 'full' // the index has no room for the block: nothing changed
  | 'removed' // at least one value of the range was owned by the host and is now free
  | 'not-owned'; // no value of the range belonged to the host: nothing changed

interface MutableRow {
  host: number;
  count: number;
}

export class BlockLedger {
  /** Keyed by the row's first value. */
  private readonly byFirst = new Map<number, MutableRow>();
  private units = 0;

  /** Number of rows. */
  get rowCount(): number {
    return this.byFirst.size;
  }

  /** Sum of the rows' counts. */
  get unitCount(): number {
    return this.units;
  }

  /** The row starting exactly at `first`, if any. */
  rowAt(first: number): BlockRow | undefined {
    const row = this.byFirst.get(first);
    return row === undefined ? undefined : { host: row.host, first, count: row.count };
  }

  /** Records a row. The caller has checked that it overlaps no other row. */
  add(host: number, first: number, count: number): void {
    this.byFirst.set(first, { host, count });
    this.units += count;
  }

  /**
   * Removes the part of the host's rows that lies in [first, first + count),
   * splitting rows that straddle an edge of the range. Returns the number of
   * values removed. Rows of other hosts are left alone.
   */
  removeRange(host: number, first: number, count: number): number {
    const end = first + count;
    let removed = 0;
    // Collect first: the map is edited below.
    const hits: number[] = [];
    for (const [start, row] of this.byFirst) {
      if (row.host === host && start < end && start + row.count > first) hits.push(start);
    }
    for (const start of hits) {
      const row = this.byFirst.get(start)!;
      const rowEnd = start + row.count;
      const cutStart = Math.max(start, first);
      const cutEnd = Math.min(rowEnd, end);
      this.byFirst.delete(start);
      if (start < cutStart) this.byFirst.set(start, { host, count: cutStart - start });
      if (cutEnd < rowEnd) this.byFirst.set(cutEnd, { host, count: rowEnd - cutEnd });
      removed += cutEnd - cutStart;
    }
    this.units -= removed;
    return removed;
  }

  /** All rows of one host. */
  rowsOf(host: number): BlockRow[] {
    const out: BlockRow[] = [];
    for (const [first, row] of this.byFirst)
      if (row.host === host) out.push({ host, first, count: row.count });
    return out.sort((a, b) => a.first - b.first);
  }

  /** All rows, lowest value first (the order of FIG. 8 and FIG. 21). */
  rows(): BlockRow[] {
    const out: BlockRow[] = [];
    for (const [first, row] of this.byFirst) out.push({ host: row.host, first, count: row.count });
    return out.sort((a, b) => a.first - b.first);
  }

  clear(): void {
    this.byFirst.clear();
    this.units = 0;
  }
}

/** Dotted-quad text of an IPv4 address held as an unsigned 32-bit integer (status output only). */
export function formatIpv4(addr: number): string {
  return `${addr >>> 24}.${(addr >>> 16) & 0xff}.${(addr >>> 8) & 0xff}.${addr & 0xff}`;
}

/** True for a usable owner: a non-zero unsigned 32-bit integer (0 means "no owner" in every index). */
export function isHost(host: number): boolean {
  return Number.isInteger(host) && host > 0 && host <= 0xffffffff;
}
