import type { Block, ResourceKind } from '../util/block.ts';

/**
 * Which block (and so which host) holds a given port or SPI: the lookup
 * behind FIG. 8 and FIG. 21. Ports use a dense table for O(1) lookups (64 Ki
 * slots); SPIs span 2^32 values, so they use a sorted array of blocks with a
 * binary search, O(log n) in the number of blocks.
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

export function createOwnerIndex<T extends Block>(kind: ResourceKind): OwnerIndex<T> {
  return kind === 'port' ? new DenseOwnerIndex<T>(0x10000) : new SortedOwnerIndex<T>();
}

export class DenseOwnerIndex<T extends Block> implements OwnerIndex<T> {
  readonly #slots: Array<T | undefined>;
  #size = 0;

  constructor(capacity: number) {
    this.#slots = new Array<T | undefined>(capacity).fill(undefined);
  }

  get size(): number {
    return this.#size;
  }

  find(value: number): T | undefined {
    return this.#slots[value];
  }

  add(block: T): void {
    const end = block.lowest + block.count;
    if (block.lowest < 0 || end > this.#slots.length)
      throw new RangeError(`block ${block.lowest}+${block.count} out of range`);
    for (let v = block.lowest; v < end; v++) {
      if (this.#slots[v] !== undefined) throw new Error(`value ${v} already owned`);
    }
    this.#slots.fill(block, block.lowest, end);
    this.#size++;
  }

  remove(block: T): void {
    if (this.#slots[block.lowest] !== block) return;
    this.#slots.fill(undefined, block.lowest, block.lowest + block.count);
    this.#size--;
  }
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
