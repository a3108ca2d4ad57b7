/**
 * A TUN device with TCP offloads (IFF_VNET_HDR, csum + tso4) seen as a plain
 * packet device, so the forwarding loops stay as they are and never meet a
 * super-packet:
 *
 *   read   vnet TUN ──▶ [virtio hdr | packet ≤ 64 KiB] ──▶ segment (native, MSS = gso_size)
 *                                                     or complete a partial checksum
 *                                                     ──▶ slots of ≤ MTU packets ──▶ handler(count)
 *   write  sendBatch(packets) ──▶ Ipv4Coalescer ──▶ [TCPV4/UDP_L4 hdr | super-packet] ──▶ vnet TUN
 *
 * Why: virtio has no GSO type for IP-in-IP and a raw socket sends nothing
 * larger than the LAN MTU, so a super-packet must be cut before it is
 * tunnelled; and on the way in, one write and one pass through the kernel's
 * TCP per 64 KiB instead of per segment is what lifts single-stream TCP
 * (docs/io.md). Whatever runs between read and write (port translation,
 * IPsec, encapsulation) sees only MTU-sized packets with complete checksums,
 * and coalescing happens only on what the forwarder has already checked,
 * verified and translated, since it is handed only what the forwarder sends.
 *
 * The handler may be called several times for one batch read from the TUN:
 * whenever the segment slots fill, and once at the end.
 */
import { Ipv4Coalescer, type CoalesceStats } from './coalesce.ts';
import { completeChecksumNative, segmentTcp4Native, vnetAction, type GsoDrop } from './gso.ts';
import { DEFAULT_HEADROOM, DEFAULT_SLOT_SIZE, SlotBuffer } from './slots.ts';
import type { BatchHandler, IoStats, PacketDevice } from './types.ts';
import { newVirtioNetHdr, readVirtioNetHdr, VIRTIO_NET_HDR_LEN } from './virtio.ts';
import { CounterSet } from '../metrics/counters.ts';

/** What OffloadTun needs of a TUN device opened with vnetHdr (TunDevice is one). */
export interface VnetTunDevice extends PacketDevice {
  readonly vnetHdr: boolean;
  /** The kernel takes UDP_L4 super-packets written into it (TunDevice.udpSegmentation); absent: no. */
  readonly udpSegmentation?: boolean;
  /** Writes packets each preceded in `bytes` by the virtio_net_hdr the caller filled in. */
  sendBatchWithVnetHdr(bytes: Uint8Array, pairs: Int32Array, count: number): number;
}

export const OFFLOAD_EVENTS = [
  'super-packets', // GSO packets read
  'segments', // segments cut from them
  'checksums-completed', // non-GSO packets read with a partial checksum
  'writes', // packets written into the TUN after coalescing
  'writes-saved', // packets handed to sendBatch minus the writes they took after coalescing
] as const;
export type OffloadEvent = (typeof OFFLOAD_EVENTS)[number];

export type OffloadDrop = GsoDrop | 'too-long';
export const OFFLOAD_DROPS: readonly OffloadDrop[] = [
  'gso-not-ipv4',
  'gso-not-tcp',
  'gso-bad-length',
  'gso-bad-size',
  'gso-no-room',
  'gso-unsupported',
  'csum-bad-offset',
  'too-long', // a non-GSO packet larger than a segment slot (the TUN MTU is larger than it should be)
];

/**
 * Whether TUN offloads are wanted by default: yes, unless the environment
 * says DISTNAT_TUN_OFFLOAD=off (or 0, false, no) — an operator's way to
 * compare, or to step around a kernel that mishandles them.
 */
export function offloadByDefault(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env.DISTNAT_TUN_OFFLOAD?.trim().toLowerCase();
  return v !== 'off' && v !== '0' && v !== 'false' && v !== 'no';
}

export interface OffloadTunOptions {
  /** Slots for segments and plain packets handed to the handler; default 256 (a batch's sendmmsg). */
  readonly slotCount?: number;
  /** Default 2048 with 64 bytes of headroom, as a plain TUN's: room for the outer and IPsec headers. */
  readonly slotSize?: number;
  readonly headroom?: number;
  /** Coalesce TCP segments written into the TUN; default true. */
  readonly coalesce?: boolean;
  /** Merge UDP datagrams too where the device takes UDP super-packets (default true). */
  readonly coalesceUdp?: boolean;
  /** Largest batch the coalescer takes at once (larger sends go in chunks); default 64. */
  readonly coalesceBatch?: number;
}

/**
 * For a TUN whose written packets the kernel forwards rather than delivers
 * (the router's): TCP is coalesced as before, UDP is not. A forwarded UDP
 * super-packet crosses veths and bridges whole and is split only by a device
 * without UDP segmentation, so captures and nftables counters on the way
 * would show one large datagram where the hosts sent many; the gain is in
 * the receiving stack, which a forwarder is not.
 */
export const FORWARDED_WRITES: OffloadTunOptions = { coalesceUdp: false };

export class OffloadTun implements PacketDevice {
  /** Plain packets (segments, or copies of what was read) for the handler. */
  readonly slots: SlotBuffer;
  readonly events = new CounterSet<OffloadEvent>(OFFLOAD_EVENTS);
  readonly drops = new CounterSet<OffloadDrop>(OFFLOAD_DROPS);
  readonly #device: VnetTunDevice;
  readonly #coalescer: Ipv4Coalescer | undefined;
  readonly #chunk: Int32Array;
  readonly #hdr = newVirtioNetHdr();
  #handler: BatchHandler | null = null;

  constructor(device: VnetTunDevice, options: OffloadTunOptions = {}) {
    if (!device.vnetHdr) throw new Error(`${device.name} was opened without vnetHdr`);
    this.#device = device;
    this.slots = new SlotBuffer(
      options.slotCount ?? 256,
      options.slotSize ?? DEFAULT_SLOT_SIZE,
      options.headroom ?? DEFAULT_HEADROOM,
    );
    const batch = options.coalesceBatch ?? 64;
    this.#coalescer =
      (options.coalesce ?? true)
        ? new Ipv4Coalescer(batch, { udp: (options.coalesceUdp ?? true) && device.udpSegmentation === true })
        : undefined;
    this.#chunk = new Int32Array(batch * 2);
  }

  get name(): string {
    return this.#device.name;
  }

  onBatch(handler: BatchHandler | null): void {
    this.#handler = handler;
    this.#device.onBatch(handler === null ? null : this.#fromDevice);
  }

  /** Splits what the TUN handed over into plain packets in `slots`, calling the handler as they fill. */
  readonly #fromDevice = (count: number): void => {
    const src = this.#device.slots;
    const b = src.bytes;
    const out = this.slots;
    const hdr = this.#hdr;
    let used = 0;
    for (let i = 0; i < count; i++) {
      const off = src.offset(i);
      const len = src.lengths[i]!;
      const action = vnetAction(readVirtioNetHdr(b, off - VIRTIO_NET_HDR_LEN, hdr));
      if (action === 'segment') {
        let n = segmentTcp4Native(b, off, len, hdr.gsoSize, out, used);
        if (n === 'gso-no-room' && used > 0) {
          this.#handler?.(used);
          used = 0;
          n = segmentTcp4Native(b, off, len, hdr.gsoSize, out, 0);
        }
        if (typeof n !== 'number') {
          this.drops.inc(n);
          continue;
        }
        this.events.inc('super-packets');
        this.events.inc('segments', n);
        used += n;
        continue;
      }
      if (action !== 'plain' && action !== 'checksum') {
        this.drops.inc(action);
        continue;
      }
      if (len > out.capacity) {
        this.drops.inc('too-long');
        continue;
      }
      if (used === out.slotCount) {
        this.#handler?.(used);
        used = 0;
      }
      const at = out.offset(used);
      // One memcpy; the view it takes is cheaper than a byte loop over up to an MTU.
      out.bytes.set(b.subarray(off, off + len), at);
      if (action === 'checksum') {
        const done = completeChecksumNative(out.bytes, at, len, hdr.csumStart, hdr.csumOffset);
        if (done !== true) {
          this.drops.inc(done);
          continue;
        }
        this.events.inc('checksums-completed');
      }
      out.lengths[used] = len;
      used++;
    }
    if (used > 0) this.#handler?.(used);
  };

  /**
   * Writes plain packets into the TUN, consecutive TCP segments (and, where
   * the kernel takes them, UDP datagrams) of a flow merged into
   * super-packets. Returns how many of the `count` packets were accepted;
   * when the kernel refuses a super-packet, each refused write is counted as
   * one packet, so the refusals are a lower bound.
   */
  sendBatch(bytes: Uint8Array, pairs: Int32Array, count: number): number {
    const co = this.#coalescer;
    if (co === undefined || count === 0) return this.#device.sendBatch(bytes, pairs, count);
    const chunk = this.#chunk;
    const max = co.capacity;
    let accepted = 0;
    for (let first = 0; first < count; first += max) {
      const k = Math.min(max, count - first);
      for (let j = 0; j < 2 * k; j++) chunk[j] = pairs[2 * first + j]!;
      const n = co.run(bytes, chunk, k);
      const written = this.#device.sendBatchWithVnetHdr(co.out.bytes, co.pairs, n);
      accepted += k - (n - written);
      this.events.inc('writes', n);
      this.events.inc('writes-saved', k - n);
    }
    return accepted;
  }

  send(bytes: Uint8Array, offset = 0, length = bytes.length - offset): boolean {
    return this.#device.send(bytes, offset, length);
  }

  stats(): IoStats {
    return this.#device.stats();
  }

  /** Segmentation and coalescing counters, for status and tests. */
  offloadStats(): {
    events: Record<OffloadEvent, number>;
    drops: Record<OffloadDrop, number>;
    coalesce: CoalesceStats | undefined;
  } {
    return {
      events: this.events.snapshot(),
      drops: this.drops.snapshot(),
      coalesce: this.#coalescer?.stats(),
    };
  }

  close(): void {
    this.#handler = null;
    this.#device.close();
  }
}
