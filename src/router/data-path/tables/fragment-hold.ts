/**
 * A few non-first fragments that arrived before their datagram's first
 * fragment, kept until the first one tells the router whose they are.
 *
 * Decision: hold a few, briefly, rather than drop. Fragments are reordered
 * in practice (parallel links, some senders emit the last fragment first),
 * and dropping a fragment loses the whole datagram, which for UDP is not
 * retransmitted. Holding is bounded so it cannot become a memory lever: a
 * fixed arena of `slots` x `slotBytes` bytes, preallocated; a fragment that
 * does not fit is dropped and counted, a full arena evicts its oldest
 * fragment (counted), and a held fragment is dropped (counted) if its first
 * fragment has not come within `timeoutMs` (2 s by default: reordering is a
 * matter of milliseconds; a first fragment later than that was lost).
 *
 * Holding copies the fragment (the receive slot it came in is reused), which
 * is acceptable on this rare path; releasing allocates nothing: each held
 * fragment is handed to the caller's callback as (arena, offset, length).
 * Slots are searched linearly; `slots` is small (16 by default) so this is
 * a bounded constant, not a scan that grows with traffic.
 */

export interface FragmentHoldOptions {
  /** Fragments held at most. Default 16. */
  readonly slots?: number;
  /** Largest fragment held, bytes. Default 1500 (the router's TUN MTU is 1480). */
  readonly slotBytes?: number;
  /** How long a fragment waits for its first fragment, ms. Default 2000. */
  readonly timeoutMs?: number;
}

export interface FragmentHoldCounters {
  held: number;
  released: number;
  /** Waited longer than the timeout and were dropped. */
  expired: number;
  /** Pushed out of a full arena by a newer fragment. */
  evicted: number;
  /** Larger than a slot; dropped. */
  tooBig: number;
}

/**
 * Receives a released fragment: bytes [offset, offset + length) of `arena`,
 * valid only during the call. The sink sends or copies them; it must not
 * call `hold` on the same FragmentHold.
 */
export type HeldFragmentSink = (arena: Uint8Array, offset: number, length: number) => void;

export class FragmentHold {
  readonly timeoutMs: number;
  readonly slotBytes: number;
  readonly counters: FragmentHoldCounters = { held: 0, released: 0, expired: 0, evicted: 0, tooBig: 0 };
  private readonly arena: Uint8Array;
  private readonly src: Uint32Array;
  private readonly dst: Uint32Array;
  private readonly pid: Uint32Array;
  private readonly length: Int32Array; // -1 = free slot
  private readonly since: Float64Array;
  private occupied = 0;

  constructor(options: FragmentHoldOptions = {}) {
    const slots = Math.max(1, options.slots ?? 16);
    this.slotBytes = Math.max(20, options.slotBytes ?? 1500);
    this.timeoutMs = options.timeoutMs ?? 2000;
    this.arena = new Uint8Array(slots * this.slotBytes);
    this.src = new Uint32Array(slots);
    this.dst = new Uint32Array(slots);
    this.pid = new Uint32Array(slots);
    this.length = new Int32Array(slots).fill(-1);
    this.since = new Float64Array(slots);
  }

  /** Fragments currently held. */
  get size(): number {
    return this.occupied;
  }

  /**
   * Copies `packet[offset, offset + length)`, a non-first fragment of the
   * datagram (src, dst, protocol, id), into the arena. False when it was
   * dropped because it is larger than a slot.
   */
  hold(
    src: number,
    dst: number,
    protocol: number,
    id: number,
    packet: Uint8Array,
    offset: number,
    length: number,
    now: number,
  ): boolean {
    if (length > this.slotBytes || length < 0 || offset < 0 || offset + length > packet.length) {
      this.counters.tooBig++;
      return false;
    }
    this.expire(now);
    let slot = -1;
    let oldest = -1;
    for (let i = 0; i < this.length.length; i++) {
      if (this.length[i] === -1) {
        slot = i;
        break;
      }
      if (oldest < 0 || this.since[i]! < this.since[oldest]!) oldest = i;
    }
    if (slot < 0) {
      slot = oldest;
      this.length[slot] = -1;
      this.occupied--;
      this.counters.evicted++;
    }
    const base = slot * this.slotBytes;
    const arena = this.arena;
    for (let k = 0; k < length; k++) arena[base + k] = packet[offset + k]!;
    this.src[slot] = src;
    this.dst[slot] = dst;
    this.pid[slot] = ((protocol & 0xff) << 16) | (id & 0xffff);
    this.length[slot] = length;
    this.since[slot] = now;
    this.occupied++;
    this.counters.held++;
    return true;
  }

  /**
   * Hands every held fragment of datagram (src, dst, protocol, id) to `sink`,
   * oldest first, and frees their slots. Returns how many were released.
   */
  release(
    src: number,
    dst: number,
    protocol: number,
    id: number,
    now: number,
    sink: HeldFragmentSink,
  ): number {
    if (this.occupied === 0) return 0;
    this.expire(now);
    const key = ((protocol & 0xff) << 16) | (id & 0xffff);
    src >>>= 0;
    dst >>>= 0;
    let released = 0;
    while (true) {
      let pick = -1;
      for (let i = 0; i < this.length.length; i++) {
        if (this.length[i] === -1 || this.pid[i] !== key || this.src[i] !== src || this.dst[i] !== dst)
          continue;
        if (pick < 0 || this.since[i]! < this.since[pick]!) pick = i;
      }
      if (pick < 0) return released;
      // Free the slot only after the sink has the bytes, so a sink that holds
      // another fragment cannot overwrite them mid-call.
      sink(this.arena, pick * this.slotBytes, this.length[pick]!);
      this.length[pick] = -1;
      this.occupied--;
      this.counters.released++;
      released++;
    }
  }

  /** Drops fragments that waited longer than the timeout. */
  expire(now: number): number {
    if (this.occupied === 0) return 0;
    let n = 0;
    for (let i = 0; i < this.length.length; i++) {
      if (this.length[i] !== -1 && now - this.since[i]! >= this.timeoutMs) {
        this.length[i] = -1;
        this.occupied--;
        n++;
      }
    }
    this.counters.expired += n;
    return n;
  }
}
