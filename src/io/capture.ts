/**
 * Tees a device's traffic into a pcap file: every batch read (before the
 * handler sees it, so in-place rewrites do not show) and every batch sent
 * (as offered, accepted or not).
 */
import type { PcapWriter } from './pcap.ts';
import type { BatchHandler, IoStats, PacketDevice } from './types.ts';

export class CapturedDevice implements PacketDevice {
  constructor(
    readonly inner: PacketDevice,
    readonly writer: PcapWriter,
  ) {}

  get name(): string {
    return this.inner.name;
  }

  get slots() {
    return this.inner.slots;
  }

  onBatch(handler: BatchHandler | null): void {
    if (!handler) {
      this.inner.onBatch(null);
      return;
    }
    const slots = this.inner.slots;
    this.inner.onBatch((count) => {
      this.writer.writeSlots(slots, count);
      handler(count);
    });
  }

  sendBatch(bytes: Uint8Array, pairs: Int32Array, count: number): number {
    this.writer.writeBatch(bytes, pairs, count);
    return this.inner.sendBatch(bytes, pairs, count);
  }

  send(bytes: Uint8Array, offset = 0, length = bytes.length - offset): boolean {
    this.writer.write(bytes, offset, length);
    return this.inner.send(bytes, offset, length);
  }

  stats(): IoStats {
    return this.inner.stats();
  }

  /** Closes the device; the writer is flushed but left open (it may be shared). */
  close(): void {
    this.inner.close();
    this.writer.flush();
  }
}

/** Wraps `device` so its traffic is also written to `writer`. */
export function capture(device: PacketDevice, writer: PcapWriter): CapturedDevice {
  return new CapturedDevice(device, writer);
}
