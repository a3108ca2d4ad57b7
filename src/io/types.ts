/**
 * The small interfaces packet-moving code depends on. The router and host
 * logic take these, so they run against the in-memory doubles of memory.ts in
 * unit tests and against TUN devices and raw sockets (tun.ts, raw.ts) for real.
 */
import type { SlotBuffer } from './slots.ts';

/**
 * Called with the number of packets now in slots 0..count-1 of the source's
 * SlotBuffer. The packets are overwritten after it returns: copy what must
 * outlive the call. It runs synchronously on the event loop; a throw is an
 * uncaught exception (a bug), not a dropped packet.
 */
export type BatchHandler = (count: number) => void;

export interface PacketSource {
  /** Where received packets land; fixed for the source's lifetime. */
  readonly slots: SlotBuffer;
  /** Starts delivering batches to `handler`; `null` pauses reading (the kernel queues, then drops). */
  onBatch(handler: BatchHandler | null): void;
}

export interface PacketSink {
  /**
   * Sends `count` packets; packet i is bytes[pairs[2i], pairs[2i] + pairs[2i+1]).
   * Returns how many were accepted. Per-packet failures never throw: they are
   * counted in stats() as dropped (queue full), errors or invalid spans.
   */
  sendBatch(bytes: Uint8Array, pairs: Int32Array, count: number): number;
  /** One packet; true if accepted. For control traffic, not the data path. */
  send(bytes: Uint8Array, offset?: number, length?: number): boolean;
}

/** Counters kept by every device; monotonic from open. */
export interface IoStats {
  /** Wake-ups that found the fd readable (reads that came back empty included). */
  rxWakeups: number;
  rxBatches: number;
  rxPackets: number;
  rxBytes: number;
  /** Read errors other than EAGAIN. */
  rxErrors: number;
  /** Packets longer than a slot, dropped. */
  rxTruncated: number;
  /** Packets lost before the reader saw them: TUN queue drops, raw socket buffer drops, full double queues. */
  rxDropped: number;
  txBatches: number;
  txPackets: number;
  txBytes: number;
  /** Packets refused because a queue was full (EAGAIN, ENOBUFS). */
  txDropped: number;
  /** Packets refused for any other reason (EMSGSIZE, ENETUNREACH, EPERM, ...). */
  txErrors: number;
  /** Spans outside the buffer or too short to be a packet. */
  txInvalid: number;
  /** errno of the last rx or tx error, 0 if none. */
  lastErrno: number;
}

export interface PacketDevice extends PacketSource, PacketSink {
  readonly name: string;
  stats(): IoStats;
  /** Stops reading and releases the fd; idempotent. */
  close(): void;
}

export function emptyStats(): IoStats {
  return {
    rxWakeups: 0,
    rxBatches: 0,
    rxPackets: 0,
    rxBytes: 0,
    rxErrors: 0,
    rxTruncated: 0,
    rxDropped: 0,
    txBatches: 0,
    txPackets: 0,
    txBytes: 0,
    txDropped: 0,
    txErrors: 0,
    txInvalid: 0,
    lastErrno: 0,
  };
}
