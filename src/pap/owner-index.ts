import type { Block } from '../util/block.ts';

/**
 * Which lease holds a given port or SPI, for the lease table's own requests
 * (a renewal or invalidation names a value): a sorted array of blocks with a
 * binary search, O(log n) in the number of blocks, for ports and SPIs alike.
 * PAP messages are rare next to packets, so this is not the packet path's
 * index: the router's data path reads its own dense one, fed by the lease
 * table's events (src/router/data-path/tables/lease-ownership.ts).
 */
export interface OwnerIndex<T extends Block> {
  /** The block containing value, if any. */
  find(value: number): T | undefined;
  /** Adds a block; throws if any of its values is already indexed. */
  add(block: T): void;
  /** Removes a block previously added. */
  remove(block: T): void;
  readonly size: number;
}

export class SortedOwnerIndex<T extends Block> implements OwnerIndex<T> {
  // Blocks by ascending lowest; insertion shifts the array, which is cheap at
  // the hundreds to thousands of leases a LAN has.
  readonly #blocks: T[] = [];

  get size(): number {
    return this.#blocks.length;
  }

  find(value: number): T | undefined {
    const i = this.#floor(value);
    const b = i >= 0 ? this.#blocks[i] : undefined;
    return b !== undefined && value < b.lowest + b.count ? b : undefined;
  }

  add(block: T): void {
    const i = this.#floor(block.lowest);
    const prev = i >= 0 ? this.#blocks[i] : undefined;
    const next = this.#blocks[i + 1];
    if (
      (prev !== undefined && prev.lowest + prev.count > block.lowest) ||
      (next !== undefined && next.lowest < block.lowest + block.count)
    ) {
      throw new Error(`block ${block.lowest}+${block.count} overlaps an indexed block`);
    }
    this.#blocks.splice(i + 1, 0, block);
  }

  remove(block: T): void {
    const i = this.#floor(block.lowest);
    if (i >= 0 && this.#blocks[i] === block) this.#blocks.splice(i, 1);
  }

  /** Index of the last block with lowest <= value, or -1. */
  #floor(value: number): number {
    let lo = 0;
    let hi = this.#blocks.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#blocks[mid]!.lowest <= value) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  }
}
