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
 *
 * Shared between threads (U32Map.shared, U32Map.reader): one thread writes,
 * others only `get`, with no lock. The arrays live in SharedArrayBuffers at
 * their largest size from the start (a reader cannot follow a reallocation)
 * and every access is an Atomics one. Why a reader never answers wrongly:
 * - an insert writes the value before the key into a slot that was empty and
 *   moves nothing, so a reader sees either no key (not yet present) or the
 *   key with its value;
 * - a changed value is one word;
 * - a delete moves later members of the run back into the hole, so a reader
 *   probing meanwhile could pass the hole before a key lands there and reach
 *   the key's old slot after it left: it would miss a key that stays. The
 *   writer makes a sequence word odd before a delete and even after it; a
 *   reader that saw it odd, or changed by the end of its probe, probes again
 *   (a sequence lock: readers never write, the writer never waits).
 */
export class U32Map {
  private keys: Uint32Array;
  private values: Uint32Array;
  private mask: number;
  private shift: number;
  private count = 0;
  private readonly maxCapacity: number;
  /** [0]: the delete sequence when shared, else undefined. */
  private readonly seq: Int32Array | undefined;

  /** `initialCapacity` and `maxCapacity` are rounded up to powers of two; the map holds at most half of `maxCapacity`. */
  constructor(initialCapacity = 64, maxCapacity = 1 << 22, memory?: U32MapMemory) {
    this.maxCapacity = pow2AtLeast(Math.max(4, maxCapacity));
    if (memory !== undefined) {
      this.keys = new Uint32Array(memory.keys);
      this.values = new Uint32Array(memory.values);
      this.seq = new Int32Array(memory.seq);
      if (this.keys.length !== this.maxCapacity || this.values.length !== this.maxCapacity)
        throw new RangeError('shared U32Map memory does not match its capacity');
      let n = 0;
      for (let i = 0; i < this.keys.length; i++) if (Atomics.load(this.keys, i) !== 0) n++;
      this.count = n;
    } else {
      const cap = Math.min(pow2AtLeast(Math.max(4, initialCapacity)), this.maxCapacity);
      this.keys = new Uint32Array(cap);
      this.values = new Uint32Array(cap);
      this.seq = undefined;
    }
    this.mask = this.keys.length - 1;
    this.shift = 32 - Math.log2(this.keys.length);
  }

  /** A map whose arrays other threads can read (U32Map.reader on `memory`), at `maxCapacity` from the start. */
  static shared(maxCapacity = 1 << 22): U32Map {
    const cap = pow2AtLeast(Math.max(4, maxCapacity));
    return new U32Map(cap, cap, {
      keys: new SharedArrayBuffer(cap * 4),
      values: new SharedArrayBuffer(cap * 4),
      seq: new SharedArrayBuffer(4),
    });
  }

  /** Another thread's view of a shared map: `get` only. */
  static reader(memory: U32MapMemory): U32Map {
    const cap = memory.keys.byteLength / 4;
    return new U32Map(cap, cap, memory);
  }

  /** The shared arrays, to post to a reader; undefined for a map of this thread alone. */
  get memory(): U32MapMemory | undefined {
    if (this.seq === undefined) return undefined;
    return {
      keys: this.keys.buffer as SharedArrayBuffer,
      values: this.values.buffer as SharedArrayBuffer,
      seq: this.seq.buffer as SharedArrayBuffer,
    };
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
    const seq = this.seq;
    if (seq === undefined) return this.probe(key);
    while (true) {
      const before = Atomics.load(seq, 0);
      if ((before & 1) === 0) {
        const v = this.probe(key);
        if (Atomics.load(seq, 0) === before) return v;
      }
    }
  }

  private probe(key: number): number {
    const keys = this.keys;
    const mask = this.mask;
    let i = this.slotOf(key);
    // At most every slot: a reader racing a delete may see a run end late, never a table without an empty slot.
    for (let n = 0; n <= mask; n++) {
      const k = Atomics.load(keys, i);
      if (k === key) return Atomics.load(this.values, i);
      if (k === 0) return 0;
      i = (i + 1) & mask;
    }
    return 0;
  }

  /** Stores key -> value. False only when the map is at its limit and `key` is new. */
  set(key: number, value: number): boolean {
    key >>>= 0;
    if (key === 0) return false;
    const i = this.find(key);
    if (i >= 0) {
      Atomics.store(this.values, i, value);
      return true;
    }
    if (this.count + 1 > this.keys.length >>> 1) {
      // A shared map never grows: its readers hold the arrays.
      if (this.keys.length >= this.maxCapacity || this.seq !== undefined) return false;
      this.grow();
    }
    this.insertNew(key, value);
    return true;
  }

  /** Removes `key`. True when it was present. */
  delete(key: number): boolean {
    let hole = this.find(key >>> 0);
    if (hole < 0) return false;
    const seq = this.seq;
    if (seq !== undefined) Atomics.add(seq, 0, 1);
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
        Atomics.store(values, hole, values[j]!);
        Atomics.store(keys, hole, k);
        hole = j;
      }
    }
    Atomics.store(keys, hole, 0);
    Atomics.store(values, hole, 0);
    this.count--;
    if (seq !== undefined) Atomics.add(seq, 0, 1);
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
    const seq = this.seq;
    if (seq !== undefined) Atomics.add(seq, 0, 1);
    this.keys.fill(0);
    this.values.fill(0);
    this.count = 0;
    if (seq !== undefined) Atomics.add(seq, 0, 1);
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
    // Value first: a reader that finds the key finds its value.
    Atomics.store(this.values, i, value);
    Atomics.store(this.keys, i, key);
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

/** The arrays of a shared U32Map, as posted to a reader. */
export interface U32MapMemory {
  readonly keys: SharedArrayBuffer;
  readonly values: SharedArrayBuffer;
  readonly seq: SharedArrayBuffer;
}

function pow2AtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}
