import type { Block } from '../util/block.ts';
import type { ValueRange } from './block.ts';

/**
 * Free values of one range, kept as maximal free extents in a treap ordered by
 * start and augmented with the longest extent in each subtree. That gives, in
 * O(log n) for n free extents:
 *
 * - first fit: the lowest-addressed extent long enough for a request (low
 *   addresses are used first, so the top of the range stays unfragmented);
 * - the longest free extent, for the patent's "success, but fewer ports than
 *   requested" when no extent is long enough;
 * - release with coalescing of both neighbours, and reserve of a given block
 *   (recovery from disk).
 *
 * Priorities come from a seeded generator, so a pool behaves identically from
 * run to run.
 */

interface Extent {
  start: number;
  len: number;
  readonly prio: number;
  /** Longest len in this subtree. */
  longest: number;
  left: Extent | null;
  right: Extent | null;
}

type Tree = Extent | null;

const longestOf = (t: Tree): number => (t === null ? 0 : t.longest);

function update(n: Extent): Extent {
  n.longest = Math.max(n.len, longestOf(n.left), longestOf(n.right));
  return n;
}

/** Joins two trees where every start in a is below every start in b. */
function merge(a: Tree, b: Tree): Tree {
  if (a === null) return b;
  if (b === null) return a;
  if (a.prio > b.prio) {
    a.right = merge(a.right, b);
    return update(a);
  }
  b.left = merge(a, b.left);
  return update(b);
}

/** Splits into extents starting below key and extents starting at or above it. */
function split(t: Tree, key: number): [Tree, Tree] {
  if (t === null) return [null, null];
  if (t.start < key) {
    const [l, r] = split(t.right, key);
    t.right = l;
    return [update(t), r];
  }
  const [l, r] = split(t.left, key);
  t.left = r;
  return [l, update(t)];
}

function leftmost(t: Tree): Extent | null {
  if (t === null) return null;
  while (t.left !== null) t = t.left;
  return t;
}

function rightmost(t: Tree): Extent | null {
  if (t === null) return null;
  while (t.right !== null) t = t.right;
  return t;
}

/** The lowest-starting extent with len >= count, or null. */
function firstFit(t: Tree, count: number): Extent | null {
  while (t !== null && t.longest >= count) {
    if (longestOf(t.left) >= count) t = t.left;
    else if (t.len >= count) return t;
    else t = t.right;
  }
  return null;
}

export class BlockPool {
  readonly range: ValueRange;
  #root: Tree = null;
  #free = 0;
  #extents = 0;
  #rng: number;

  constructor(range: ValueRange, seed = 0x9e3779b9) {
    if (
      !Number.isInteger(range.min) ||
      !Number.isInteger(range.max) ||
      range.min > range.max ||
      range.min < 0
    ) {
      throw new RangeError(
        `BlockPool range ${range.min}-${range.max} is not a range of non-negative integers`,
      );
    }
    this.range = { min: range.min, max: range.max };
    this.#rng = seed >>> 0 || 1;
    this.#root = this.#node(range.min, range.max - range.min + 1);
    this.#free = range.max - range.min + 1;
    this.#extents = 1;
  }

  /** Number of free values. */
  get free(): number {
    return this.#free;
  }

  /** Length of the longest free extent: the largest block allocate() can return. */
  get largest(): number {
    return longestOf(this.#root);
  }

  /** Number of free extents (a measure of fragmentation). */
  get extentCount(): number {
    return this.#extents;
  }

  /**
   * Takes a block of `count` values from the lowest-addressed extent that holds
   * them. When no extent is that long, takes the longest extent there is,
   * provided it holds at least `minimum` values; otherwise returns undefined.
   * With `from`, the search starts there and wraps round to the bottom:
   * routers sharing one lease table each start at their own place, so they
   * do not all reach for the same lowest free block (docs/multi-router.md).
   */
  allocate(count: number, minimum = 1, from?: number): Block | undefined {
    checkCount(count);
    const want = Math.min(count, this.largest);
    if (want < Math.max(1, minimum) || want === 0) return undefined;
    if (from !== undefined && from > this.range.min) {
      const at = this.#fitFrom(from, want);
      if (at !== undefined) {
        this.#take(at.extent, at.lowest, want);
        return { lowest: at.lowest, count: want };
      }
    }
    const found = firstFit(this.#root, want)!;
    const lowest = found.start;
    this.#take(found, lowest, want);
    return { lowest, count: want };
  }

  /**
   * First fit at or above `from`: the free run starting at `from` itself
   * when the extent holding it is long enough there, else the lowest extent
   * above it; undefined when nothing above fits (the caller wraps round to
   * the bottom of the range).
   */
  #fitFrom(from: number, count: number): { extent: Extent; lowest: number } | undefined {
    const holder = this.#floor(from);
    if (holder !== null && holder.start + holder.len >= from + count) return { extent: holder, lowest: from };
    const [below, above] = split(this.#root, from + 1);
    const found = firstFit(above, count);
    this.#root = merge(below, above);
    return found === null ? undefined : { extent: found, lowest: found.start };
  }

  /** Takes exactly [lowest, lowest + count) if every value in it is free. */
  reserve(lowest: number, count: number): boolean {
    checkCount(count);
    if (lowest < this.range.min || lowest + count - 1 > this.range.max) return false;
    const host = this.#floor(lowest);
    if (host === null || host.start + host.len < lowest + count) return false;
    this.#take(host, lowest, count);
    return true;
  }

  /**
   * Returns [lowest, lowest + count) to the pool. Throws if any of it is
   * already free or outside the range: that is a bookkeeping bug, and
   * silently double-freeing would later hand one value to two owners.
   */
  release(lowest: number, count: number): void {
    checkCount(count);
    const end = lowest + count;
    if (lowest < this.range.min || end - 1 > this.range.max) {
      throw new RangeError(`release ${lowest}+${count} outside ${this.range.min}-${this.range.max}`);
    }
    const [below, above] = split(this.#root, lowest);
    const pred = rightmost(below);
    const succ = leftmost(above);
    if ((pred !== null && pred.start + pred.len > lowest) || (succ !== null && succ.start < end)) {
      this.#root = merge(below, above);
      throw new RangeError(`release ${lowest}+${count}: part of it is already free`);
    }
    let start = lowest;
    let len = count;
    let left = below;
    let right = above;
    if (pred !== null && pred.start + pred.len === lowest) {
      left = split(below, pred.start)[0];
      start = pred.start;
      len += pred.len;
      this.#extents--;
    }
    if (succ !== null && succ.start === end) {
      right = split(above, end + 1)[1];
      len += succ.len;
      this.#extents--;
    }
    this.#root = merge(merge(left, this.#node(start, len)), right);
    this.#free += count;
    this.#extents++;
  }

  isFree(value: number): boolean {
    const e = this.#floor(value);
    return e !== null && value < e.start + e.len;
  }

  /** The free extent that contains value, if value is free. */
  extentAt(value: number): Block | undefined {
    const e = this.#floor(value);
    return e !== null && value < e.start + e.len ? { lowest: e.start, count: e.len } : undefined;
  }

  /** Free extents in ascending order. */
  *extents(): IterableIterator<Block> {
    const stack: Extent[] = [];
    let t = this.#root;
    while (t !== null || stack.length > 0) {
      while (t !== null) {
        stack.push(t);
        t = t.left;
      }
      const n = stack.pop()!;
      yield { lowest: n.start, count: n.len };
      t = n.right;
    }
  }

  /** Removes [lowest, lowest + count) from extent e, which contains it. */
  #take(e: Extent, lowest: number, count: number): void {
    const eStart = e.start;
    const eEnd = e.start + e.len;
    const end = lowest + count;
    if (lowest === eStart) {
      if (end === eEnd) {
        // Whole extent: cut it out.
        const [below, rest] = split(this.#root, eStart);
        const above = split(rest, eStart + 1)[1];
        this.#root = merge(below, above);
        this.#extents--;
      } else {
        // Shrinking from the front keeps the order (the new start stays below
        // the successor's), so only the augmented lengths need refreshing.
        const [below, rest] = split(this.#root, eStart);
        const [mid, above] = split(rest, eStart + 1);
        mid!.start = end;
        mid!.len = eEnd - end;
        this.#root = merge(merge(below, update(mid!)), above);
      }
    } else {
      const [below, rest] = split(this.#root, eStart);
      const [mid, above] = split(rest, eStart + 1);
      mid!.len = lowest - eStart;
      let t = merge(below, update(mid!));
      if (end < eEnd) {
        t = merge(t, this.#node(end, eEnd - end));
        this.#extents++;
      }
      this.#root = merge(t, above);
    }
    this.#free -= count;
  }

  /** The extent with the greatest start <= value. */
  #floor(value: number): Extent | null {
    let t = this.#root;
    let best: Extent | null = null;
    while (t !== null) {
      if (t.start <= value) {
        best = t;
        t = t.right;
      } else {
        t = t.left;
      }
    }
    return best;
  }

  #node(start: number, len: number): Extent {
    // xorshift32: cheap, deterministic, good enough for treap balance.
    let x = this.#rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#rng = x >>> 0;
    return { start, len, prio: this.#rng, longest: len, left: null, right: null };
  }
}

function checkCount(count: number): void {
  if (!Number.isInteger(count) || count < 1)
    throw new RangeError(`block size ${count} is not a positive integer`);
}
