/**
 * A binary min-heap of (deadline, item). Deadlines that change (a renewed
 * lease) are handled lazily: push the new one and let the caller skip stale
 * entries when they surface, which keeps every operation O(log n).
 */
export class DeadlineHeap<T> {
  readonly #at: number[] = [];
  readonly #items: T[] = [];

  get size(): number {
    return this.#at.length;
  }

  /** The earliest deadline, or undefined when empty. */
  peekTime(): number | undefined {
    return this.#at[0];
  }

  peek(): T | undefined {
    return this.#items[0];
  }

  push(at: number, item: T): void {
    let i = this.#at.length;
    this.#at.push(at);
    this.#items.push(item);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.#at[parent]! <= at) break;
      this.#swap(i, parent);
      i = parent;
    }
  }

  pop(): T | undefined {
    const n = this.#at.length;
    if (n === 0) return undefined;
    const top = this.#items[0];
    this.#swap(0, n - 1);
    this.#at.pop();
    this.#items.pop();
    let i = 0;
    const size = n - 1;
    while (true) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < size && this.#at[l]! < this.#at[m]!) m = l;
      if (r < size && this.#at[r]! < this.#at[m]!) m = r;
      if (m === i) break;
      this.#swap(i, m);
      i = m;
    }
    return top;
  }

  #swap(a: number, b: number): void {
    const t = this.#at[a]!;
    this.#at[a] = this.#at[b]!;
    this.#at[b] = t;
    const u = this.#items[a]!;
    this.#items[a] = this.#items[b]!;
    this.#items[b] = u;
  }
}
