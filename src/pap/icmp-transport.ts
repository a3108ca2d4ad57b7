/**
 * PAP over raw ICMP (docs/pap.md section 1), the patent's own transport: the
 * 28-byte PAP message *is* an ICMP message of type 32 or 33 (its type, code
 * and checksum sit where ICMP's do), carried in IPv4 protocol 1.
 *
 * Receiving: a raw socket of protocol 1 gets every ICMP message delivered to
 * this network namespace, outer IPv4 header included; only types 32 and 33
 * addressed to `address` are handed up (the kernel itself ignores these
 * types). Sending: the IPv4 header is built here and the datagram sent
 * through an IPPROTO_RAW socket (the kernel completes total length and
 * header checksum, as it does for any IP_HDRINCL sender):
 *
 * | offset | field           | value                                 |
 * |--------|-----------------|---------------------------------------|
 * | 0      | version, IHL    | 4, 5                                  |
 * | 1      | TOS             | 0                                     |
 * | 2      | total length    | 20 + message length                   |
 * | 4      | identification  | a fresh one per message               |
 * | 6      | flags, offset   | 0 (28 bytes never need fragmenting)   |
 * | 8      | TTL             | 64 (docs/pap.md: no meaning)          |
 * | 9      | protocol        | 1                                     |
 * | 10     | header checksum | computed                              |
 * | 12     | source          | `address`                             |
 * | 16     | destination     | the peer                              |
 *
 * The sockets can be given (in-memory doubles, or a sender the caller
 * shares); sockets opened here are closed by close().
 */
import { openRawSender, openRawSocket } from '../io/raw.ts';
import type { PacketDevice, PacketSink } from '../io/types.ts';
import { put32, u16, u32 } from '../wire/bytes.ts';
import { internetChecksum } from '../wire/checksum.ts';
import { checkIpv4, ipv4FromString, ipv4ToString } from '../wire/ipv4.ts';
import { nextIpv4Id } from '../wire/ipip.ts';
import { PAP_TYPE_PORTS, PAP_TYPE_SPI } from '../wire/pap.ts';
import { IpProtocol } from '../wire/result.ts';
import type { PapPeer, PapTransport } from './transport.ts';

export interface IcmpPapTransportOptions {
  /** Local IPv4 address: the source of messages sent, and the only destination taken in. */
  readonly address: string;
  /** Bind both sockets to this interface (SO_BINDTODEVICE): PAP is a LAN protocol. */
  readonly device?: string;
  /** A protocol-1 raw socket to read from; default: opened here. */
  readonly receiver?: PacketDevice;
  /** An IPPROTO_RAW sender; default: opened here. */
  readonly sender?: PacketSink;
  readonly ttl?: number;
}

export interface IcmpPapTransportCounters {
  /** Type 32/33 messages to our address, handed up. */
  received: number;
  /** ICMP messages of other types or for other addresses, skipped. */
  ignored: number;
  sent: number;
  /** Messages the sender refused (see its stats for the errno). */
  sendFailed: number;
}

/** Largest message this transport sends: PAP's are 28 bytes; room to spare for tests of junk. */
const MAX_MESSAGE = 1400;

export class IcmpPapTransport implements PapTransport {
  readonly counters: IcmpPapTransportCounters = { received: 0, ignored: 0, sent: 0, sendFailed: 0 };
  readonly address: string;
  readonly #local: number;
  readonly #ttl: number;
  readonly #receiver: PacketDevice;
  readonly #sender: PacketSink;
  readonly #owned: { close(): void }[];
  readonly #handlers: Array<(bytes: Uint8Array, peer: PapPeer) => void> = [];
  readonly #out = new Uint8Array(20 + MAX_MESSAGE);
  #closed = false;

  private constructor(
    options: IcmpPapTransportOptions,
    receiver: PacketDevice,
    sender: PacketSink,
    owned: { close(): void }[],
  ) {
    const local = ipv4FromString(options.address);
    if (local === undefined) throw new RangeError(`not an IPv4 address: ${options.address}`);
    this.address = options.address;
    this.#local = local;
    this.#ttl = options.ttl ?? 64;
    this.#receiver = receiver;
    this.#sender = sender;
    this.#owned = owned;
    receiver.onBatch((count) => this.#batch(count));
  }

  /** Opens the sockets not given (needs CAP_NET_RAW) and starts reading. */
  static open(options: IcmpPapTransportOptions): IcmpPapTransport {
    const owned: { close(): void }[] = [];
    try {
      const device = options.device === undefined ? {} : { device: options.device };
      const receiver =
        options.receiver ?? track(owned, openRawSocket(IpProtocol.ICMP, { ...device, slotCount: 16 }));
      const sender = options.sender ?? track(owned, openRawSender(device));
      return new IcmpPapTransport(options, receiver, sender, owned);
    } catch (e) {
      for (const o of owned) o.close();
      throw e;
    }
  }

  send(bytes: Uint8Array, peer: PapPeer): void {
    if (this.#closed) return;
    const dst = ipv4FromString(peer.address);
    if (dst === undefined || bytes.length > MAX_MESSAGE) {
      this.counters.sendFailed++;
      return;
    }
    const b = this.#out;
    const total = 20 + bytes.length;
    b[0] = 0x45;
    b[1] = 0;
    b[2] = total >>> 8;
    b[3] = total & 0xff;
    const id = nextIpv4Id();
    b[4] = id >>> 8;
    b[5] = id & 0xff;
    b[6] = 0;
    b[7] = 0;
    b[8] = this.#ttl;
    b[9] = IpProtocol.ICMP;
    b[10] = 0;
    b[11] = 0;
    put32(b, 12, this.#local);
    put32(b, 16, dst);
    const sum = internetChecksum(b, 0, 20);
    b[10] = sum >>> 8;
    b[11] = sum & 0xff;
    b.set(bytes, 20);
    if (this.#sender.send(b, 0, total)) this.counters.sent++;
    else this.counters.sendFailed++;
  }

  onMessage(handler: (bytes: Uint8Array, peer: PapPeer) => void): void {
    this.#handlers.push(handler);
  }

  /** Stops reading; closes the sockets this transport opened. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#receiver.onBatch(null);
    for (const o of this.#owned) o.close();
  }

  #batch(count: number): void {
    const slots = this.#receiver.slots;
    const buf = slots.bytes;
    for (let i = 0; i < count; i++) {
      const off = slots.offset(i);
      const len = slots.lengths[i]!;
      if (checkIpv4(buf, off, len, false) !== null || buf[off + 9] !== IpProtocol.ICMP) {
        this.counters.ignored++;
        continue;
      }
      const hl = (buf[off]! & 0x0f) << 2;
      const end = off + u16(buf, off + 2);
      const type = end > off + hl ? buf[off + hl]! : -1;
      if ((type !== PAP_TYPE_PORTS && type !== PAP_TYPE_SPI) || u32(buf, off + 16) !== this.#local) {
        this.counters.ignored++;
        continue;
      }
      this.counters.received++;
      // The slot is reused by the next batch; handlers may keep what they get.
      const message = buf.slice(off + hl, end);
      const peer: PapPeer = { address: ipv4ToString(u32(buf, off + 12)) };
      for (const h of this.#handlers) h(message, peer);
    }
  }
}

function track<T extends { close(): void }>(owned: { close(): void }[], device: T): T {
  owned.push(device);
  return device;
}
