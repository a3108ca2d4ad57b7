/**
 * Receive-side coalescing for a vnet TUN (GRO in userspace): consecutive
 * in-order TCP/IPv4 segments of a flow are merged into one super-packet with
 * a TCPV4 virtio_net_hdr before they are written into the TUN, so the stack
 * behind it handles one packet (and sends one ACK) where it would handle
 * dozens. The rules are those of the kernel's tcp_gro_receive. With `udp`,
 * consecutive UDP/IPv4 datagrams of a flow that the kernel would split back
 * into the very same datagrams are merged into one UDP_L4 super-packet too:
 * one write and one IP input for a burst (Linux 6.2 and later take these
 * from a TUN; TunDevice.udpSegmentation says whether this one does). See
 * native-setup/addon/src/coalesce.cc for both sets of rules. Everything
 * else passes through in order with a zero header.
 *
 *   const co = new Ipv4Coalescer(64, { udp: tun.udpSegmentation });
 *   const n = co.run(rx.slots.bytes, spans.pairs, spans.count);
 *   tun.sendBatchWithVnetHdr(co.out.bytes, co.pairs, n);
 */
import { COALESCE_COUNTERS, CoalesceCounter, CoalesceFlag, loadNative } from './native.ts';
import type { NativeBinding } from './native.ts';
import { SlotBuffer } from './slots.ts';

export interface CoalesceStats {
  /** Segments (and, with `udp`, datagrams) that qualified for merging. */
  segmentsIn: number;
  superPackets: number;
  /** Segments inside those super-packets. */
  segmentsMerged: number;
  /** Segments or datagrams whose TCP or UDP checksum failed (passed through for the kernel to drop). */
  badChecksum: number;
}

/** 64 KiB plus room for the header, rounded to a page multiple. */
const OUT_SLOT_SIZE = 65536 + 4096;

export interface CoalescerOptions {
  /** Merge UDP datagrams too (the TUN must take UDP_L4 super-packets); default false. */
  udp?: boolean;
}

export class Ipv4Coalescer {
  /** Output packets: packet i at pairs[2i] in out.bytes, its virtio_net_hdr in the 10 bytes before. */
  readonly out: SlotBuffer;
  readonly pairs: Int32Array;
  private readonly counters = new Float64Array(COALESCE_COUNTERS);
  private readonly native: NativeBinding;
  readonly #flags: number;

  /** `capacity`: the largest input batch (one output slot per input packet, worst case). */
  constructor(
    readonly capacity = 64,
    options: CoalescerOptions = {},
  ) {
    this.native = loadNative();
    this.#flags = options.udp ? CoalesceFlag.Udp : 0;
    this.out = new SlotBuffer(capacity, OUT_SLOT_SIZE, 64);
    this.pairs = new Int32Array(capacity * 2);
  }

  /** Coalesces `count` IPv4 packets at `pairs` in `src`; returns how many packets are in `pairs` now. */
  run(src: Uint8Array, pairs: Int32Array, count: number): number {
    const o = this.out;
    return this.native.ipv4Coalesce(
      src,
      pairs,
      count,
      o.bytes,
      o.slotSize,
      o.headroom,
      o.slotCount,
      this.pairs,
      this.counters,
      this.#flags,
    );
  }

  stats(): CoalesceStats {
    const c = this.counters;
    return {
      segmentsIn: c[CoalesceCounter.SegmentsIn]!,
      superPackets: c[CoalesceCounter.SuperPackets]!,
      segmentsMerged: c[CoalesceCounter.SegmentsMerged]!,
      badChecksum: c[CoalesceCounter.BadChecksum]!,
    };
  }
}
