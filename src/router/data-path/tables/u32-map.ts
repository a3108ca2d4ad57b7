/**
 * An open-addressing hash from non-zero 32-bit keys to non-zero 32-bit
 * values, in two typed arrays. Lookups allocate nothing and touch one or a
 * few adjacent slots (linear probing, load factor at most 1/2).
 *
 * Deletion shifts later members of the probe run back into the hole instead
 * of leaving tombstones, so a long-lived table that sees many adds and
 * removes (SPI blocks come and go with leases) never degrades.
 *
 * Key 0 marks an empty slot; callers never store key 0 (SPI 0 is reserved by
 * RFC 4303 section 2.1) nor value 0 (0 means "absent" in `get`).
 */
export class U32Map {
  private keys: Uint32Array;
  private values: Uint32Array;
  private mask: number;
  private shift: number;
  private count = 0;
  private readonly maxCapacity: number;

  /** `initialCapacity` and `maxCapacity` are rounded up to powers of two; the map holds at most half of `maxCapacity`. */
  constructor(initialCapacity = 64, maxCapacity = 1 << 22) {
    this.maxCapacity = pow2AtLeast(Math.max(4, maxCapacity));
    const cap = Math.min(pow2AtLeast(Math.max(4, initialCapacity)), this.maxCapacity);
    this.keys = new Uint32Array(cap);
    this.values = new Uint32Array(cap);
    this.mask = cap - 1;
    this.shift = 32 - Math.log2(cap);
  }

  get size(): number {
    return this.count;
  }

  /** Most keys the map will ever hold. */
  get limit(): number {
    return this.maxCapacity >>> 1;
  }

  /** The value for `key`, or 0. */
  get(key: number): number {
    key >>>= 0;
    const keys = this.keys;
    const mask = this.mask;
    let i = this.slotOf(key);
    while (true) {
      const k = keys[i]!;
      if (k === key) return this.values[i]!;
      if (k === 0) return 0;
      i = (i + 1) & mask;
    }
  }

  /** Stores key -> value. False only when the map is at its limit and `key` is new. */
  set(key: number, value: number): boolean {
    key >>>= 0;
    if (key === 0) return false;
    const i = this.find(key);
    if (i >= 0) {
      this.values[i] = value;
      return true;
    }
    if (this.count + 1 > this.keys.length >>> 1) {
      if (this.keys.length >= this.maxCapacity) return false;
      this.grow();
    }
    this.insertNew(key, value);
    return true;
  }

  /** Removes `key`. True when it was present. */
  delete(key: number): boolean {
    let hole = this.find(key >>> 0);
    if (hole < 0) return false;
    const keys = this.keys;
    const values = this.values;
    const mask = this.mask;
    let j = hole;
    while (true) {
      j = (j + 1) & mask;
      const k = keys[j]!;
      if (k === 0) break;
      // k may move into the hole if the hole lies on its probe path, i.e. the
      // hole is no further from k's home slot than j is.
      const home = this.slotOf(k);
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        keys[hole] = k;
        values[hole] = values[j]!;
        hole = j;
      }
    }
    keys[hole] = 0;
    values[hole] = 0;
    this.count--;
    return true;
  }

  /** Room for `n` more keys without exceeding the limit. */
  hasRoomFor(n: number): boolean {
    return this.count + n <= this.limit;
  }

  /** Calls `f` for every entry, in no particular order. `f` must not change the map. */
  forEach(f: (key: number, value: number) => void): void {
    const keys = this.keys;
    for (let i = 0; i < keys.length; i++) if (keys[i] !== 0) f(keys[i]!, this.values[i]!);
  }

  clear(): void {
    this.keys.fill(0);
    this.values.fill(0);
    this.count = 0;
  }

  private slotOf(key: number): number {
    // Fibonacci hashing: SPI blocks are runs of consecutive keys, which the
    // multiply spreads over the whole table.
    return Math.imul(key, 0x9e3779b1) >>> this.shift;
  }

  private find(key: number): number {
    const keys = this.keys;
    let i = this.slotOf(key);
    while (true) {
      const k = keys[i]!;
      if (k === key) return i;
      if (k === 0) return -1;
      i = (i + 1) & this.mask;
    }
  }

  private insertNew(key: number, value: number): void {
    let i = this.slotOf(key);
    while (this.keys[i] !== 0) i = (i + 1) & this.mask;
    this.keys[i] = key;
    this.values[i] = value;
    this.count++;
  }

  private grow(): void {
    const oldKeys = this.keys;
    const oldValues = this.values;
    const cap = oldKeys.length * 2;
    this.keys = new Uint32Array(cap);
    this.values = new Uint32Array(cap);
    this.mask = cap - 1;
    this.shift--;
    this.count = 0;
    for (let i = 0; i < oldKeys.length; i++) {
      const k = oldKeys[i]!;
      if (k !== 0) this.insertNew(k, oldValues[i]!);
    }
  }
}

function pow2AtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}
