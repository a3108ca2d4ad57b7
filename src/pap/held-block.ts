import type { ResourceKind } from '../util/block.ts';

/**
 * One block a host holds, with the patent's Table 1 flag per value
 * (0 = unused, 1 = allocated to a protocol or application).
 *
 * Unused values are handed out in FIFO order: a value given back is the last
 * to be handed out again, so a port just freed by one connection is not
 * reused at once towards a peer that may still hold it in TIME_WAIT.
 */
export class HeldBlock {
  readonly kind: ResourceKind;
  readonly lowest: number;
  readonly count: number;
  /** Lease granted, in seconds. */
  leaseSeconds: number;
  /** When the host stops using the block unless renewed: counted from when the request was sent. */
  expiresAt: number;
  /** When the current lease period began (the request or renewal was sent). */
  leaseStart: number;
  /** The router epoch the block was granted in. */
  epoch: number;

  readonly #allocated: Uint8Array;
  // Ring of unused offsets.
  readonly #ring: Int32Array;
  #head = 0;
  #unused: number;

  constructor(
    kind: ResourceKind,
    lowest: number,
    count: number,
    leaseSeconds: number,
    leaseStart: number,
    epoch: number,
  ) {
    this.kind = kind;
    this.lowest = lowest;
    this.count = count;
    this.leaseSeconds = leaseSeconds;
    this.leaseStart = leaseStart;
    this.expiresAt = leaseStart + leaseSeconds * 1000;
    this.epoch = epoch;
    this.#allocated = new Uint8Array(count);
    this.#ring = new Int32Array(count);
    for (let i = 0; i < count; i++) this.#ring[i] = i;
    this.#unused = count;
  }

  /** Values not allocated. */
  get unused(): number {
    return this.#unused;
  }

  /** Values allocated. */
  get inUse(): number {
    return this.count - this.#unused;
  }

  contains(value: number): boolean {
    return value >= this.lowest && value < this.lowest + this.count;
  }

  isAllocated(value: number): boolean {
    return this.contains(value) && this.#allocated[value - this.lowest] === 1;
  }

  /** Flags the longest-unused value allocated and returns it, or undefined if all are in use. */
  take(): number | undefined {
    if (this.#unused === 0) return undefined;
    const off = this.#ring[this.#head]!;
    this.#head = (this.#head + 1) % this.count;
    this.#unused--;
    this.#allocated[off] = 1;
    return this.lowest + off;
  }

  /** Flags a specific value allocated (native mode: the kernel chose it). False if taken or outside. */
  claim(value: number): boolean {
    if (!this.contains(value) || this.#allocated[value - this.lowest] === 1) return false;
    // Remove it from the ring by swapping it with the head entry.
    const off = value - this.lowest;
    for (let i = 0; i < this.#unused; i++) {
      const at = (this.#head + i) % this.count;
      if (this.#ring[at] === off) {
        this.#ring[at] = this.#ring[this.#head]!;
        this.#ring[this.#head] = off;
        break;
      }
    }
    return this.take() === value;
  }

  /** Flags value unused again. False if it was not allocated. */
  give(value: number): boolean {
    if (!this.isAllocated(value)) return false;
    const off = value - this.lowest;
    this.#allocated[off] = 0;
    this.#ring[(this.#head + this.#unused) % this.count] = off;
    this.#unused++;
    return true;
  }

  /** Every allocated value, ascending. */
  allocated(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.count; i++) if (this.#allocated[i] === 1) out.push(this.lowest + i);
    return out;
  }
}
