/**
 * Raw IPv4 sockets through the native binding.
 *
 * - `openRawSender`: socket(AF_INET, SOCK_RAW, IPPROTO_RAW). Sends whole IPv4
 *   packets (IP_HDRINCL is implied), batched with sendmmsg; each packet's
 *   destination is taken from its own header. The kernel fills in the total
 *   length and header checksum (and the id when 0). It cannot receive.
 * - `openRawSocket`: socket(AF_INET, SOCK_RAW, protocol), e.g. 4 (IP-in-IP)
 *   or 1 (ICMP). Receives every packet of that protocol addressed to this
 *   namespace, outer IPv4 header included, with recvmmsg into slots; it
 *   sends whole packets too (IP_HDRINCL is set), so it is a PacketDevice.
 *
 * Without an ipip module the kernel hands protocol 4 to raw sockets alone,
 * and sends no "protocol unreachable" while one is open.
 */
import { FdDevice } from './fd-device.ts';
import { loadNative, PollMode, WriteMode } from './native.ts';
import { DEFAULT_HEADROOM, DEFAULT_SLOT_COUNT, DEFAULT_SLOT_SIZE, SlotBuffer } from './slots.ts';
import type { IoStats } from './types.ts';

export const IPPROTO_RAW = 255;
/** Enough for ~1500 full-size packets in flight: bursts of several batches at 200k pps. */
export const DEFAULT_SOCKET_BUFFER = 4 * 1024 * 1024;

export interface RawSocketOptions {
  /** SO_BINDTODEVICE: only this interface (receive) / out of this interface (send). */
  device?: string;
  /** SO_RCVBUF(FORCE) bytes; default 4 MiB. */
  rcvbuf?: number;
  /** SO_SNDBUF(FORCE) bytes; default 4 MiB. */
  sndbuf?: number;
  slotCount?: number;
  slotSize?: number;
  headroom?: number;
  onError?: (err: Error) => void;
}

export class RawSocket extends FdDevice {
  constructor(
    name: string,
    fd: number,
    readonly protocol: number,
    slots: SlotBuffer,
    onError?: (err: Error) => void,
  ) {
    super({
      name,
      fd,
      pollMode: PollMode.Recvmmsg,
      writeMode: WriteMode.Sendmmsg,
      prefix: 0,
      slots,
      onError,
    });
  }

  /** Adds the kernel's drop count for this socket (a full receive buffer) as rxDropped. */
  override stats(): IoStats {
    const s = super.stats();
    if (!this.isClosed) this.lastDrops = this.native.socketDrops(this.fd);
    s.rxDropped = this.lastDrops;
    return s;
  }

  private lastDrops = 0;

  /** Socket buffer sizes as the kernel reports them (twice what was asked, for its bookkeeping). */
  buffers(): { rcvbuf: number; sndbuf: number } {
    const [rcvbuf, sndbuf] = this.native.socketBuffers(this.fd);
    return { rcvbuf, sndbuf };
  }
}

function open(protocol: number, options: RawSocketOptions, slots: SlotBuffer): RawSocket {
  const native = loadNative();
  const fd = native.rawOpen(
    protocol,
    options.rcvbuf ?? DEFAULT_SOCKET_BUFFER,
    options.sndbuf ?? DEFAULT_SOCKET_BUFFER,
    options.device ?? '',
  );
  const name = `raw:${protocol}${options.device ? `@${options.device}` : ''}`;
  try {
    return new RawSocket(name, fd, protocol, slots, options.onError);
  } catch (err) {
    native.closeFd(fd);
    throw err;
  }
}

/** A raw socket receiving (and able to send) IPv4 packets of one protocol. */
export function openRawSocket(protocol: number, options: RawSocketOptions = {}): RawSocket {
  if (protocol === IPPROTO_RAW)
    throw new RangeError('an IPPROTO_RAW socket receives nothing: use openRawSender');
  const slots = new SlotBuffer(
    options.slotCount ?? DEFAULT_SLOT_COUNT,
    options.slotSize ?? DEFAULT_SLOT_SIZE,
    options.headroom ?? DEFAULT_HEADROOM,
  );
  return open(protocol, options, slots);
}

/**
 * An IPPROTO_RAW sender. It is a RawSocket whose receive side never fires;
 * its SlotBuffer is minimal and onBatch is pointless.
 */
export function openRawSender(
  options: Omit<RawSocketOptions, 'slotCount' | 'slotSize' | 'headroom'> = {},
): RawSocket {
  return open(IPPROTO_RAW, { rcvbuf: 0, ...options }, new SlotBuffer(1, 128, 0));
}
