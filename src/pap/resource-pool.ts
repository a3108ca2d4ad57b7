import { BlockPool } from './block-pool.ts';
import type { Block, ResourceKind } from '../util/block.ts';
import type { PortPreference, ValueRange } from './block.ts';
import { PORT_PREFERENCE_SPLIT } from './block.ts';

/**
 * The router's free ports or SPIs. Ports are kept in two BlockPools split at
 * 10000 so that the request's code (0: below 10000, 1: 10000 or above) can be
 * honoured without ever handing out a block that straddles the line.
 *
 * The code is a preference, not a demand: when the preferred side has no
 * extent long enough, the other side is tried for the full count before
 * anyone gets fewer than asked for, because a short block costs the host
 * another round trip while the side of 10000 rarely matters to it.
 *
 * Values outside the configured range are treated as never free: restoring a
 * lease from before a range change reserves nothing for them and releasing
 * such a lease returns nothing, so a narrowed range takes effect as old leases
 * end.
 */
export class ResourcePool {
  readonly kind: ResourceKind;
  readonly range: ValueRange;
  readonly #low: BlockPool | undefined;
  readonly #high: BlockPool | undefined;

  /** `base`: the first slot of the shared address whose ports these are (util/block.ts portSlot); `range` is in slots. */
  constructor(kind: ResourceKind, range: ValueRange, seed = 1, base = 0) {
    this.kind = kind;
    this.range = range;
    const split = kind === 'port' ? base + PORT_PREFERENCE_SPLIT : Infinity;
    this.#low =
      range.min < split
        ? new BlockPool({ min: range.min, max: Math.min(range.max, split - 1) }, seed)
        : undefined;
    this.#high =
      range.max >= split
        ? new BlockPool({ min: Math.max(range.min, split), max: range.max }, seed + 1)
        : undefined;
  }

  get free(): number {
    return (this.#low?.free ?? 0) + (this.#high?.free ?? 0);
  }

  get largest(): number {
    return Math.max(this.#low?.largest ?? 0, this.#high?.largest ?? 0);
  }

  /**
   * A block of `count` values, or fewer (the longest free extent) when no
   * extent is long enough; undefined only when nothing at all is free.
   * `searchFrom` (0 to 1, default 0): how far into each side's range the
   * first-fit search starts before it wraps round (BlockPool.allocate).
   */
  allocate(count: number, preference: PortPreference = 'low', searchFrom = 0): Block | undefined {
    const [first, second] = preference === 'low' ? [this.#low, this.#high] : [this.#high, this.#low];
    const take = (pool: BlockPool): Block | undefined =>
      pool.allocate(count, 1, searchFrom > 0 ? startOf(pool, searchFrom) : undefined);
    if (first !== undefined && first.largest >= count) return take(first);
    if (second !== undefined && second.largest >= count) return take(second);
    // Nobody has the full count: the longer of the two, preferred side on a tie.
    const a = first?.largest ?? 0;
    const b = second?.largest ?? 0;
    if (a === 0 && b === 0) return undefined;
    return a >= b ? take(first!) : take(second!);
  }

  /** Takes exactly this block (all of its in-range values) if all of it is free. */
  reserve(lowest: number, count: number): boolean {
    const parts = this.#parts(lowest, count);
    if (!parts.every(([pool, b]) => rangeIsFree(pool, b))) return false;
    for (const [pool, b] of parts) pool.reserve(b.lowest, b.count);
    return true;
  }

  /** Gives a block back; its out-of-range values are dropped. */
  release(lowest: number, count: number): void {
    for (const [pool, b] of this.#parts(lowest, count)) pool.release(b.lowest, b.count);
  }

  isFree(value: number): boolean {
    return this.#poolOf(value)?.isFree(value) ?? false;
  }

  /** Free extents in ascending order (two adjacent ones may meet at 10000). */
  *extents(): IterableIterator<Block> {
    if (this.#low !== undefined) yield* this.#low.extents();
    if (this.#high !== undefined) yield* this.#high.extents();
  }

  #poolOf(value: number): BlockPool | undefined {
    for (const pool of [this.#low, this.#high]) {
      if (pool !== undefined && value >= pool.range.min && value <= pool.range.max) return pool;
    }
    return undefined;
  }

  #parts(lowest: number, count: number): Array<[BlockPool, Block]> {
    const out: Array<[BlockPool, Block]> = [];
    for (const pool of [this.#low, this.#high]) {
      if (pool === undefined) continue;
      const lo = Math.max(lowest, pool.range.min);
      const hi = Math.min(lowest + count - 1, pool.range.max);
      if (lo <= hi) out.push([pool, { lowest: lo, count: hi - lo + 1 }]);
    }
    return out;
  }
}

/** The value `fraction` of the way into the pool's range. */
function startOf(pool: BlockPool, fraction: number): number {
  const { min, max } = pool.range;
  return min + Math.floor(Math.min(Math.max(fraction, 0), 1) * (max - min + 1));
}

function rangeIsFree(pool: BlockPool, b: Block): boolean {
  // Free extents are maximal, so the whole block is free iff one extent holds it.
  const e = pool.extentAt(b.lowest);
  return e !== undefined && e.lowest + e.count >= b.lowest + b.count;
}
