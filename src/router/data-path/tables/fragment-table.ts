/**
 * Which host an inbound fragmented datagram belongs to.
 *
 * Only the first fragment (offset 0) carries the transport header, so only
 * it can be demultiplexed by port, ICMP id or SPI. The router remembers the
 * owner it found under the datagram's identity, the tuple that RFC 791 uses
 * for reassembly,
 *
 *     (source address, destination address, protocol, identification)
 *
 * and sends the later fragments, which carry no ports, to the same host. The
 * router does not reassemble: the host's kernel does, so the router stays a
 * forwarder that changes nothing.
 *
 * An entry lives `timeoutMs` from the first fragment, 30 s by default, the
 * order of RFC 791's reassembly timer lower bound (15 s) and of Linux's
 * ipfrag_time (30 s); a datagram whose fragments are further apart than that
 * would not be reassembled by the host anyway. An entry is not removed at
 * the last fragment (MF = 0): fragments can be reordered or duplicated, and
 * the entry is cheap.
 *
 * Storage is preallocated: a ring of `capacity` entries in insertion order
 * plus an open-addressing index over it (load <= 1/2, linear probing,
 * backward-shift deletion). Insertion order is also age order, so expiry
 * and eviction both take the ring's head: O(1), no allocation. When the ring
 * is full the oldest entry is evicted (counted), so a flood of first
 * fragments can cost fragment delivery but never memory. The index is
 * seeded per instance so that an outsider choosing IP ids cannot aim at one
 * probe run.
 */

export interface FragmentTableOptions {
  /** Entries kept; rounded up to a power of two. Default 1024. */
  readonly capacity?: number;
  /** Entry lifetime from the first fragment, ms. Default 30000. */
  readonly timeoutMs?: number;
  /** Hash seed; random by default. Tests fix it. */
  readonly seed?: number;
}

export interface FragmentTableCounters {
  /** First fragments recorded. */
  recorded: number;
  /** Non-first fragments whose datagram was found. */
  hits: number;
  /** Non-first fragments whose datagram was unknown or whose entry had expired. */
  misses: number;
  /** Live entries pushed out by newer ones because the ring was full. */
  evicted: number;
}

export class FragmentTable {
  readonly timeoutMs: number;
  readonly counters: FragmentTableCounters = { recorded: 0, hits: 0, misses: 0, evicted: 0 };

  // Ring of entries, in insertion (= age) order.
  private readonly src: Uint32Array;
  private readonly dst: Uint32Array;
  /** protocol << 16 | identification */
  private readonly pid: Uint32Array;
  private readonly owner: Uint32Array;
  private readonly born: Float64Array;
  /** Index slot holding the entry, or -1 once the entry is dead. */
  private readonly slotOf: Int32Array;
  /** The entry's home slot (its hash), kept so deletion need not rehash. */
  private readonly homeOf: Int32Array;
  private head = 0;
  private used = 0;
  private live = 0;

  // Index: entry number per slot, -1 empty.
  private readonly index: Int32Array;
  private readonly mask: number;
  private readonly seed: number;

  constructor(options: FragmentTableOptions = {}) {
    let cap = 1;
    while (cap < Math.max(2, options.capacity ?? 1024)) cap *= 2;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.src = new Uint32Array(cap);
    this.dst = new Uint32Array(cap);
    this.pid = new Uint32Array(cap);
    this.owner = new Uint32Array(cap);
    this.born = new Float64Array(cap);
    this.slotOf = new Int32Array(cap).fill(-1);
    this.homeOf = new Int32Array(cap);
    this.index = new Int32Array(cap * 2).fill(-1);
    this.mask = cap * 2 - 1;
    this.seed = (options.seed ?? (Math.random() * 0x1_0000_0000) >>> 0) | 1;
  }

  get capacity(): number {
    return this.src.length;
  }

  /** Live entries (recorded, not expired by the last record, not evicted). */
  get size(): number {
    return this.live;
  }

  /** Records the owner found for a first fragment (offset 0, MF = 1). */
  record(src: number, dst: number, protocol: number, id: number, owner: number, now: number): void {
    const key = ((protocol & 0xff) << 16) | (id & 0xffff);
    this.expireHead(now);
    // A repeated first fragment starts the entry afresh at the ring's tail,
    // which keeps the ring in age order.
    const old = this.find(src >>> 0, dst >>> 0, key);
    if (old >= 0) this.kill(old);
    if (this.used === this.capacity) this.dropHead(true);
    const e = (this.head + this.used) & (this.capacity - 1);
    this.used++;
    this.src[e] = src;
    this.dst[e] = dst;
    this.pid[e] = key;
    this.owner[e] = owner;
    this.born[e] = now;
    let s = this.hash(src >>> 0, dst >>> 0, key);
    this.homeOf[e] = s;
    while (this.index[s] !== -1) s = (s + 1) & this.mask;
    this.index[s] = e;
    this.slotOf[e] = s;
    this.live++;
    this.counters.recorded++;
  }

  /** Owner of a non-first fragment's datagram, or 0 when unknown or expired. */
  lookup(src: number, dst: number, protocol: number, id: number, now: number): number {
    const e = this.find(src >>> 0, dst >>> 0, ((protocol & 0xff) << 16) | (id & 0xffff));
    if (e < 0 || now - this.born[e]! >= this.timeoutMs) {
      this.counters.misses++;
      return 0;
    }
    this.counters.hits++;
    return this.owner[e]!;
  }

  /** Forgets every datagram of `owner` (its leases are gone). Walks the ring: management path. */
  forgetOwner(owner: number): number {
    let n = 0;
    for (let k = 0; k < this.used; k++) {
      const e = (this.head + k) & (this.capacity - 1);
      if (this.slotOf[e] !== -1 && this.owner[e] === owner) {
        this.kill(e);
        n++;
      }
    }
    return n;
  }

  /** Drops entries older than the timeout from the ring's head. */
  expireHead(now: number): void {
    while (this.used > 0) {
      const e = this.head;
      if (this.slotOf[e] !== -1 && now - this.born[e]! < this.timeoutMs) return;
      this.dropHead(false);
    }
  }

  private dropHead(evicting: boolean): void {
    const e = this.head;
    if (this.slotOf[e] !== -1) {
      if (evicting) this.counters.evicted++;
      this.kill(e);
    }
    this.head = (this.head + 1) & (this.capacity - 1);
    this.used--;
  }

  private hash(src: number, dst: number, key: number): number {
    let h = Math.imul(src ^ this.seed, 0x9e3779b1);
    h = Math.imul(h ^ dst ^ (h >>> 15), 0x85ebca6b);
    h = Math.imul(h ^ key ^ (h >>> 13), 0xc2b2ae35);
    return (h ^ (h >>> 16)) & this.mask;
  }

  private find(src: number, dst: number, key: number): number {
    let s = this.hash(src, dst, key);
    while (true) {
      const e = this.index[s]!;
      if (e === -1) return -1;
      if (this.pid[e] === key && this.src[e] === src && this.dst[e] === dst) return e;
      s = (s + 1) & this.mask;
    }
  }

  /** Removes entry `e` from the index (its ring place is reclaimed when it reaches the head). */
  private kill(e: number): void {
    let hole = this.slotOf[e]!;
    this.slotOf[e] = -1;
    this.live--;
    const index = this.index;
    const mask = this.mask;
    let j = hole;
    while (true) {
      j = (j + 1) & mask;
      const f = index[j]!;
      if (f === -1) break;
      const home = this.homeOf[f]!;
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        index[hole] = f;
        this.slotOf[f] = hole;
        hole = j;
      }
    }
    index[hole] = -1;
  }
}
