/**
 * SPI blocks the router took back from their hosts (`distnat withdraw`, a
 * PAP withdraw), kept until the block is leased again, so that ESP and AH
 * still arriving for them are counted as `spi-withdrawn` rather than as
 * traffic for nobody (`no-owner`).
 *
 * The ownership index already forgets a withdrawn block before the lease
 * table answers, so nothing is forwarded either way; the separate count is
 * for the operator, who sees peers still sending on SAs the router has cut
 * (the host deletes them and tells its peers: docs/ike.md "Revocation").
 *
 * A fixed ring of `capacity` ranges, the oldest forgotten first: a
 * withdrawal is rare, and a range that fell out of the ring only makes the
 * count fall back to `no-owner`. The lookup is a scan of at most `capacity`
 * pairs of numbers, only for ESP/AH that found no owner (and ESP in UDP).
 * The eBPF fast path keeps a copy, rewritten from `ranges()` after every
 * change (src/router/data-path/ebpf/fast-path-withdrawn.ts).
 */
import type { Block } from '../../../util/block.ts';

export class WithdrawnSpis {
  readonly #first: Float64Array;
  readonly #end: Float64Array;
  #next = 0;
  #size = 0;

  constructor(readonly capacity = 64) {
    this.#first = new Float64Array(capacity);
    this.#end = new Float64Array(capacity);
  }

  get size(): number {
    return this.#size;
  }

  /** The block was withdrawn from its host. */
  add(block: Block): void {
    if (this.capacity === 0 || block.count <= 0) return;
    this.#first[this.#next] = block.lowest;
    this.#end[this.#next] = block.lowest + block.count;
    this.#next = (this.#next + 1) % this.capacity;
    this.#size = Math.min(this.#size + 1, this.capacity);
  }

  /**
   * Values of `block` are leased again: a range they touch is forgotten whole
   * (the count falls back to `no-owner`). True when one was.
   */
  clear(block: Block): boolean {
    const lo = block.lowest;
    const hi = block.lowest + block.count;
    let cleared = false;
    for (let i = 0; i < this.#size; i++)
      if (this.#first[i]! < hi && lo < this.#end[i]!) {
        this.#first[i] = this.#end[i] = 0;
        cleared = true;
      }
    return cleared;
  }

  /** The ranges remembered now, [first, end), in no particular order. */
  ranges(): { first: number; end: number }[] {
    const out: { first: number; end: number }[] = [];
    for (let i = 0; i < this.#size; i++)
      if (this.#end[i]! > this.#first[i]!) out.push({ first: this.#first[i]!, end: this.#end[i]! });
    return out;
  }

  /** True when `spi` lies in a block withdrawn and not leased since. */
  has(spi: number): boolean {
    for (let i = 0; i < this.#size; i++) if (spi >= this.#first[i]! && spi < this.#end[i]!) return true;
    return false;
  }
}
