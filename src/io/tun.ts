/**
 * TUN devices through the native binding: IFF_TUN | IFF_NO_PI, non-blocking,
 * optionally multi-queue and with a virtio_net_hdr before each packet
 * (IFF_VNET_HDR) so the kernel can hand over TSO super-packets.
 *
 * Offloads are set with TUNSETOFFLOAD on every open, to 0 when none are
 * wanted: a persistent device keeps whatever offloads its previous owner set,
 * and a reader without a vnet header cannot receive a GSO packet.
 *
 * MTU, up/down and txqueuelen can be set here (ioctl); addresses and routes
 * are left to `ip` in the set-up scripts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { FdDevice } from './fd-device.ts';
import { loadNative, OpenFlag, PollMode, WriteMode } from './native.ts';
import { DEFAULT_HEADROOM, DEFAULT_SLOT_COUNT, DEFAULT_SLOT_SIZE, SlotBuffer } from './slots.ts';
import type { IoStats } from './types.ts';
import { VIRTIO_NET_HDR_LEN } from './virtio.ts';

/**
 * The interface's transmit drops from /proc/self/net/dev (this process's
 * namespace): for a TUN, packets the kernel dropped because the reader's
 * queue was full. Undefined if the interface is not listed.
 */
export function tunQueueDrops(name: string): number | undefined {
  let text: string;
  try {
    text = readFileSync('/proc/self/net/dev', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0 || line.slice(0, colon).trim() !== name) continue;
    // rx: bytes packets errs drop fifo frame compressed multicast | tx: bytes packets errs drop ...
    const f = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/);
    return Number(f[11]);
  }
  return undefined;
}

/** TUNSETOFFLOAD bits (linux/if_tun.h). */
export const TunOffloadFlag = {
  Csum: 0x01,
  Tso4: 0x02,
  Tso6: 0x04,
  TsoEcn: 0x08,
  Uso4: 0x20,
  Uso6: 0x40,
} as const;

export interface TunOffload {
  /** The kernel may hand over packets whose TCP/UDP checksum is still to be completed. */
  csum?: boolean;
  /** ... and TCP/IPv4 super-packets up to 64 KiB to be segmented (needs csum). */
  tso4?: boolean;
  tso6?: boolean;
  /** ... including super-packets with ECN's CWR set. */
  tsoEcn?: boolean;
}

export interface TunOptions {
  /** Interface name; default `dn0`. */
  name?: string;
  /** Open one queue of a multi-queue device (each open attaches another queue). */
  multiQueue?: boolean;
  /** Read and write a 10-byte virtio_net_hdr before each packet (needed for any offload). */
  vnetHdr?: boolean;
  /** Offloads to accept; requires vnetHdr. Always applied, as 0 when empty. */
  offload?: TunOffload;
  /** Refuse to create the device: attach only to an existing (persistent) one. */
  mustExist?: boolean;
  /** Make the device outlive the fd (true) or not (false); leave as is when undefined. */
  persist?: boolean;
  mtu?: number;
  /** Set the link up (true) or down (false); leave as is when undefined. */
  up?: boolean;
  txQueueLen?: number;
  /** Read batch geometry; the defaults fit 1500-byte packets, or 64 KiB super-packets with vnetHdr. */
  slotCount?: number;
  slotSize?: number;
  headroom?: number;
  onError?: (err: Error) => void;
}

/** Slot size for vnet TUNs: a 64 KiB super-packet plus its header and the headroom. */
export const VNET_SLOT_SIZE = 65536 + 2 * DEFAULT_HEADROOM;

export function offloadBits(offload: TunOffload | undefined): number {
  if (!offload) return 0;
  let bits = 0;
  if (offload.csum) bits |= TunOffloadFlag.Csum;
  if (offload.tso4) bits |= TunOffloadFlag.Tso4;
  if (offload.tso6) bits |= TunOffloadFlag.Tso6;
  if (offload.tsoEcn) bits |= TunOffloadFlag.TsoEcn;
  return bits;
}

export class TunDevice extends FdDevice {
  readonly vnetHdr: boolean;
  readonly offload: number;
  /**
   * The kernel takes UDP_L4 super-packets written into this TUN (Linux 6.2
   * and later), which it splits back into datagrams at the receiving socket.
   */
  readonly udpSegmentation: boolean;

  constructor(
    name: string,
    fd: number,
    vnetHdr: boolean,
    offload: number,
    slots: SlotBuffer,
    onError?: (e: Error) => void,
    udpSegmentation = false,
  ) {
    super({
      name,
      fd,
      pollMode: PollMode.Read,
      writeMode: vnetHdr ? WriteMode.WriteZeroHdr : WriteMode.Write,
      prefix: vnetHdr ? VIRTIO_NET_HDR_LEN : 0,
      slots,
      onError,
    });
    this.vnetHdr = vnetHdr;
    this.offload = offload;
    this.udpSegmentation = udpSegmentation;
    this.dropsAtOpen = tunQueueDrops(name) ?? 0;
  }

  private readonly dropsAtOpen: number;
  private lastDrops = 0;

  /** Adds the packets the kernel dropped while this device's queue was full (since open) as rxDropped. */
  override stats(): IoStats {
    const s = super.stats();
    if (!this.isClosed) this.lastDrops = (tunQueueDrops(this.name) ?? this.dropsAtOpen) - this.dropsAtOpen;
    s.rxDropped = this.lastDrops;
    return s;
  }

  /**
   * Writes packets each preceded in `bytes` by a virtio_net_hdr the caller
   * filled in (the VIRTIO_NET_HDR_LEN bytes before pairs[2i]): how coalesced
   * GSO packets or packets with a partial checksum go in. vnetHdr devices only.
   */
  sendBatchWithVnetHdr(bytes: Uint8Array, pairs: Int32Array, count: number): number {
    if (!this.vnetHdr) throw new Error(`${this.name} was opened without vnetHdr`);
    if (this.isClosed) return 0;
    return this.native.writeBatch(
      this.fd,
      WriteMode.WriteHdrInBuf,
      this.prefix,
      bytes,
      pairs,
      count,
      this.tx,
    );
  }
}

/**
 * Whether this kernel's TUN knows UDP segmentation. The kernel that reads
 * UDP_L4 from a virtio_net_hdr on write (6.2) is the one whose TUNSETOFFLOAD
 * accepts USO4|USO6, and TUNSETOFFLOAD refuses bits it does not know, which
 * its own comment offers as the way to test for a feature. Only asked:
 * the offloads are set right after to what the caller wants, so the kernel
 * never hands this device a UDP super-packet to read.
 */
function knowsUso(fd: number): boolean {
  try {
    loadNative().tunSetOffload(fd, TunOffloadFlag.Csum | TunOffloadFlag.Uso4 | TunOffloadFlag.Uso6);
    return true;
  } catch {
    return false;
  }
}

/** Opens (attaching to, or creating) a TUN device. Throws with the errno on failure. */
export function openTun(options: TunOptions = {}): TunDevice {
  const native = loadNative();
  const name = options.name ?? 'dn0';
  const vnetHdr = options.vnetHdr ?? false;
  const offload = offloadBits(options.offload);
  if (offload !== 0 && !vnetHdr)
    throw new Error('TUN offloads need vnetHdr: a GSO packet cannot be read without it');
  if (offload & (TunOffloadFlag.Tso4 | TunOffloadFlag.Tso6) && !(offload & TunOffloadFlag.Csum)) {
    throw new Error('TSO needs the csum offload too');
  }
  if (options.mustExist && !existsSync(`/sys/class/net/${name}`)) {
    throw new Error(
      `TUN device ${name} does not exist (mustExist): create it with \`ip tuntap add ${name} mode tun\``,
    );
  }
  const slots = new SlotBuffer(
    options.slotCount ?? (vnetHdr ? 32 : DEFAULT_SLOT_COUNT),
    options.slotSize ?? (vnetHdr ? VNET_SLOT_SIZE : DEFAULT_SLOT_SIZE),
    options.headroom ?? DEFAULT_HEADROOM,
  );
  if (vnetHdr && slots.headroom < VIRTIO_NET_HDR_LEN)
    throw new RangeError('headroom must hold the virtio_net_hdr');

  let flags = 0;
  if (options.multiQueue) flags |= OpenFlag.MultiQueue;
  if (vnetHdr) flags |= OpenFlag.VnetHdr;
  const opened = native.tunOpen(name, flags);
  try {
    if (vnetHdr) native.tunSetVnetHdrSize(opened.fd, VIRTIO_NET_HDR_LEN);
    const udpSegmentation = vnetHdr && knowsUso(opened.fd);
    native.tunSetOffload(opened.fd, offload);
    if (options.persist !== undefined) native.tunSetPersist(opened.fd, options.persist ? 1 : 0);
    if (options.mtu !== undefined) native.linkSetMtu(opened.name, options.mtu);
    if (options.txQueueLen !== undefined) native.linkSetTxQueueLen(opened.name, options.txQueueLen);
    if (options.up !== undefined) native.linkSetUp(opened.name, options.up);
    return new TunDevice(opened.name, opened.fd, vnetHdr, offload, slots, options.onError, udpSegmentation);
  } catch (err) {
    native.closeFd(opened.fd);
    throw err;
  }
}
