/**
 * Packet buffers shared with the kernel side: one ArrayBuffer cut into fixed
 * slots, and lists of (offset, length) spans for sending.
 *
 *   slot i  [ i*slotSize                                  (i+1)*slotSize )
 *           [ headroom        ][ packet (lengths[i] bytes)       ...      ]
 *                              ^ offset(i) = i*slotSize + headroom
 *
 * A reader fills slots 0..count-1 and reports the count; the packets stay
 * valid until the handler returns, when the next batch overwrites them. The
 * headroom lets a forwarder write an outer header in front of a packet in
 * place (an IP-in-IP header is 20 bytes) and send from the same slot.
 */

/** Bytes before each packet: room for an outer IPv4 header plus a virtio_net_hdr, cache-line aligned. */
export const DEFAULT_HEADROOM = 64;
/** Holds any packet up to a 1500-byte MTU (and up to 1984 with the default headroom). */
export const DEFAULT_SLOT_SIZE = 2048;
export const DEFAULT_SLOT_COUNT = 64;

export class SlotBuffer {
  readonly bytes: Uint8Array;
  /** lengths[i] is the length of the packet in slot i (valid for i < the batch's count). */
  readonly lengths: Int32Array;

  constructor(
    readonly slotCount = DEFAULT_SLOT_COUNT,
    readonly slotSize = DEFAULT_SLOT_SIZE,
    readonly headroom = DEFAULT_HEADROOM,
  ) {
    if (!Number.isInteger(slotCount) || slotCount < 1 || slotCount > 1024) {
      throw new RangeError(`slotCount must be 1..1024, got ${slotCount}`);
    }
    if (
      !Number.isInteger(headroom) ||
      headroom < 0 ||
      !Number.isInteger(slotSize) ||
      slotSize <= headroom + 64
    ) {
      throw new RangeError(`slotSize (${slotSize}) must exceed headroom (${headroom}) by more than 64`);
    }
    this.bytes = new Uint8Array(new ArrayBuffer(slotCount * slotSize));
    this.lengths = new Int32Array(slotCount);
  }

  /** Offset in `bytes` of the packet in slot i. */
  offset(i: number): number {
    return i * this.slotSize + this.headroom;
  }

  /** Largest packet a slot holds. */
  get capacity(): number {
    return this.slotSize - this.headroom;
  }

  /** A view of the packet in slot i (allocates a view: for tests and slow paths). */
  packet(i: number): Uint8Array {
    const start = this.offset(i);
    return this.bytes.subarray(start, start + this.lengths[i]!);
  }

  /**
   * Copies a packet into slot i and records its length; false if it does not
   * fit. Used by doubles and by code that builds packets in slots.
   */
  put(i: number, src: Uint8Array, srcOffset = 0, length = src.length - srcOffset): boolean {
    if (i < 0 || i >= this.slotCount || length < 0 || length > this.capacity) return false;
    this.bytes.set(src.subarray(srcOffset, srcOffset + length), this.offset(i));
    this.lengths[i] = length;
    return true;
  }
}

/**
 * A list of packets to send as (offset, length) pairs into one buffer, in the
 * layout `PacketSink.sendBatch` takes. Reused across batches: `clear()` and
 * fill again; nothing is allocated per packet.
 */
export class SpanList {
  readonly pairs: Int32Array;
  count = 0;

  constructor(readonly capacity = DEFAULT_SLOT_COUNT) {
    this.pairs = new Int32Array(capacity * 2);
  }

  /** Appends a span; false when the list is full. */
  push(offset: number, length: number): boolean {
    if (this.count >= this.capacity) return false;
    this.pairs[2 * this.count] = offset;
    this.pairs[2 * this.count + 1] = length;
    this.count++;
    return true;
  }

  clear(): void {
    this.count = 0;
  }

  offset(i: number): number {
    return this.pairs[2 * i]!;
  }

  length(i: number): number {
    return this.pairs[2 * i + 1]!;
  }
}
