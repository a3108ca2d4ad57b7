/**
 * A vnet TUN device in memory for the offload tests: the test hands it
 * packets with the virtio_net_hdr the kernel would put before them, and it
 * records every write with the header that went before it.
 */
import { SlotBuffer } from '../../../src/io/slots.ts';
import { emptyStats, type BatchHandler, type IoStats } from '../../../src/io/types.ts';
import {
  newVirtioNetHdr,
  readVirtioNetHdr,
  VIRTIO_NET_HDR_LEN,
  writeVirtioNetHdr,
  type VirtioNetHdr,
} from '../../../src/io/virtio.ts';
import type { VnetTunDevice } from '../../../src/io/offload-tun.ts';
import { buildTcp4 } from '../../../scripts/bench/io-packets.ts';

export interface Written {
  hdr: VirtioNetHdr;
  packet: Uint8Array;
}

export class VnetTunDouble implements VnetTunDevice {
  readonly name = 'vnet0';
  readonly vnetHdr = true;
  readonly slots = new SlotBuffer(8, 65536 + 128, 64);
  readonly written: Written[] = [];
  /** Writes the kernel takes before refusing the rest of a batch. */
  acceptLimit = Infinity;
  closed = false;
  #handler: BatchHandler | null = null;

  onBatch(handler: BatchHandler | null): void {
    this.#handler = handler;
  }

  /** The kernel hands over a batch: each packet with its header (none: a zero header). */
  read(...packets: { packet: Uint8Array; hdr?: Partial<VirtioNetHdr> }[]): void {
    packets.forEach(({ packet, hdr }, i) => {
      if (!this.slots.put(i, packet)) throw new Error('packet does not fit a slot');
      writeVirtioNetHdr(this.slots.bytes, this.slots.offset(i) - VIRTIO_NET_HDR_LEN, {
        ...newVirtioNetHdr(),
        ...hdr,
      });
    });
    this.#handler?.(packets.length);
  }

  #write(bytes: Uint8Array, pairs: Int32Array, count: number, withHdr: boolean): number {
    let n = 0;
    for (let i = 0; i < count && this.written.length < this.acceptLimit; i++, n++) {
      const off = pairs[2 * i]!;
      const len = pairs[2 * i + 1]!;
      this.written.push({
        hdr: withHdr
          ? readVirtioNetHdr(bytes, off - VIRTIO_NET_HDR_LEN, newVirtioNetHdr())
          : newVirtioNetHdr(),
        packet: bytes.slice(off, off + len),
      });
    }
    return n;
  }

  sendBatch(bytes: Uint8Array, pairs: Int32Array, count: number): number {
    return this.#write(bytes, pairs, count, false);
  }

  sendBatchWithVnetHdr(bytes: Uint8Array, pairs: Int32Array, count: number): number {
    return this.#write(bytes, pairs, count, true);
  }

  send(bytes: Uint8Array, offset = 0, length = bytes.length - offset): boolean {
    return this.sendBatch(bytes, Int32Array.of(offset, length), 1) === 1;
  }

  stats(): IoStats {
    return emptyStats();
  }

  close(): void {
    this.closed = true;
  }
}

export const be16 = (b: Uint8Array, o: number): number => (b[o]! << 8) | b[o + 1]!;
export const be32 = (b: Uint8Array, o: number): number =>
  ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;

/** Payload bytes 0, 1, 2, ... (mod 251, so no segment boundary lines up with the pattern). */
export function pattern(length: number, from = 0): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i + from) % 251);
}

export interface Flow {
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
}

/** A TCP super-packet as the local stack hands it to a TSO TUN: pseudo-header sum only. */
export function superPacket(f: Flow, seq: number, payload: Uint8Array, flags = 0x18): Uint8Array {
  return buildTcp4({ ...f, seq, ack: 1000, flags, id: 0x100, partialChecksum: true }, payload);
}

/** One wire segment of a flow with full checksums. */
export function segment(f: Flow, seq: number, payload: Uint8Array, flags = 0x10): Uint8Array {
  return buildTcp4({ ...f, seq, ack: 1000, flags, id: 0x200 }, payload);
}

/** The TCPV4 header the kernel gives a super-packet of `mss`-byte segments. */
export const gsoHdr = (mss: number): Partial<VirtioNetHdr> => ({
  flags: 1,
  gsoType: 1,
  hdrLen: 40,
  gsoSize: mss,
  csumStart: 20,
  csumOffset: 16,
});
