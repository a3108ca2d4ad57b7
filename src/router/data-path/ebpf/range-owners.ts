/**
 * Who owns each value of a 32-bit space, as sorted disjoint ranges
 * [first, end) -> host: the fast path's control plane keeps FIG. 21 this way
 * to know, after a lease event, which SPI granules are owned whole by one
 * host (one map entry) and which are not (an entry per SPI). Lookups are a
 * binary search; adding or removing a range shifts the arrays, which is
 * fine at the rate leases change.
 */
export class RangeOwners {
  #first: number[] = [];
  #end: number[] = [];
  #host: number[] = [];

  get rangeCount(): number {
    return this.#first.length;
  }

  /** Index of the last range starting at or before `v`, or -1. */
  #at(v: number): number {
    let lo = 0;
    let hi = this.#first.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#first[mid]! <= v) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  /** Owner of `v`, or 0. */
  ownerOf(v: number): number {
    const i = this.#at(v);
    return i >= 0 && v < this.#end[i]! ? this.#host[i]! : 0;
  }

  /** True when some value of [first, end) is owned. */
  overlaps(first: number, end: number): boolean {
    const i = this.#at(end - 1);
    return i >= 0 && this.#end[i]! > first;
  }

  /** True when every value of [first, end) is owned by `host`. */
  ownedWholeBy(host: number, first: number, end: number): boolean {
    let v = first;
    let i = this.#at(v);
    while (v < end) {
      if (
        i < 0 ||
        i >= this.#first.length ||
        this.#first[i]! > v ||
        this.#end[i]! <= v ||
        this.#host[i] !== host
      )
        return false;
      v = this.#end[i]!;
      i++;
    }
    return true;
  }

  /**
   * The parts of [first, end) nobody owns, lowest first, or undefined when
   * some value of it belongs to a host other than `host`.
   */
  gapsFor(host: number, first: number, end: number): { first: number; end: number }[] | undefined {
    const gaps: { first: number; end: number }[] = [];
    let v = first;
    let i = Math.max(0, this.#at(first));
    for (; i < this.#first.length && this.#first[i]! < end; i++) {
      const s = this.#first[i]!;
      const e = this.#end[i]!;
      if (e <= v) continue;
      if (this.#host[i] !== host) return undefined;
      if (s > v) gaps.push({ first: v, end: s });
      v = e;
    }
    if (v < end) gaps.push({ first: v, end });
    return gaps;
  }

  /** Adds [first, end) for `host`; the caller has checked overlaps() is false. */
  add(host: number, first: number, end: number): void {
    const i = this.#at(first) + 1;
    this.#first.splice(i, 0, first);
    this.#end.splice(i, 0, end);
    this.#host.splice(i, 0, host);
  }

  /**
   * Removes `host`'s values in [first, end), splitting ranges at the edges;
   * other hosts' values stay. Returns the pieces removed, lowest first.
   */
  remove(host: number, first: number, end: number): { first: number; end: number }[] {
    const removed: { first: number; end: number }[] = [];
    let i = Math.max(0, this.#at(first));
    while (i < this.#first.length && this.#first[i]! < end) {
      const s = this.#first[i]!;
      const e = this.#end[i]!;
      if (this.#host[i] !== host || e <= first) {
        i++;
        continue;
      }
      const cutS = Math.max(s, first);
      const cutE = Math.min(e, end);
      removed.push({ first: cutS, end: cutE });
      const keepLeft = s < cutS;
      const keepRight = cutE < e;
      if (keepLeft && keepRight) {
        this.#end[i] = cutS;
        this.#first.splice(i + 1, 0, cutE);
        this.#end.splice(i + 1, 0, e);
        this.#host.splice(i + 1, 0, host);
        i += 2;
      } else if (keepLeft) {
        this.#end[i] = cutS;
        i++;
      } else if (keepRight) {
        this.#first[i] = cutE;
        i++;
      } else {
        this.#first.splice(i, 1);
        this.#end.splice(i, 1);
        this.#host.splice(i, 1);
      }
    }
    return removed;
  }

  /** `host`'s ranges, lowest first. */
  rangesOf(host: number): { first: number; end: number }[] {
    const out: { first: number; end: number }[] = [];
    for (let i = 0; i < this.#first.length; i++)
      if (this.#host[i] === host) out.push({ first: this.#first[i]!, end: this.#end[i]! });
    return out;
  }

  clear(): void {
    this.#first = [];
    this.#end = [];
    this.#host = [];
  }
}
