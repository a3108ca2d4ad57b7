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
import { put16, put32 } from '../wire/bytes.ts';
import { internetChecksum } from '../wire/checksum.ts';
import {
  checkIpv4,
  IPV4_MIN_HEADER_LENGTH,
  Ipv4Field,
  ipv4Dst,
  ipv4FromString,
  ipv4HeaderLengthAt,
  ipv4Protocol,
  ipv4Src,
  ipv4ToString,
  ipv4TotalLength,
} from '../wire/ipv4.ts';
import { nextIpv4Id } from '../wire/ipip.ts';
import { PAP_TYPE_PORTS, PAP_TYPE_SPI, PapField } from '../wire/pap.ts';
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
  readonly #out = new Uint8Array(IPV4_MIN_HEADER_LENGTH + MAX_MESSAGE);
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
    const total = IPV4_MIN_HEADER_LENGTH + bytes.length;
    b[Ipv4Field.VERSION_IHL] = 0x45;
    b[Ipv4Field.TOS] = 0;
    put16(b, Ipv4Field.TOTAL_LENGTH, total);
    put16(b, Ipv4Field.IDENTIFICATION, nextIpv4Id());
    put16(b, Ipv4Field.FLAGS_FRAGMENT, 0);
    b[Ipv4Field.TTL] = this.#ttl;
    b[Ipv4Field.PROTOCOL] = IpProtocol.ICMP;
    put16(b, Ipv4Field.CHECKSUM, 0);
    put32(b, Ipv4Field.SRC, this.#local);
    put32(b, Ipv4Field.DST, dst);
    put16(b, Ipv4Field.CHECKSUM, internetChecksum(b, 0, IPV4_MIN_HEADER_LENGTH));
    b.set(bytes, IPV4_MIN_HEADER_LENGTH);
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
      if (checkIpv4(buf, off, len, false) !== null || ipv4Protocol(buf, off) !== IpProtocol.ICMP) {
        this.counters.ignored++;
        continue;
      }
      const hl = ipv4HeaderLengthAt(buf, off);
      const end = off + ipv4TotalLength(buf, off);
      const type = end > off + hl ? buf[off + hl + PapField.TYPE]! : -1;
      if ((type !== PAP_TYPE_PORTS && type !== PAP_TYPE_SPI) || ipv4Dst(buf, off) !== this.#local) {
        this.counters.ignored++;
        continue;
      }
      this.counters.received++;
      // The slot is reused by the next batch; handlers may keep what they get.
      const message = buf.slice(off + hl, end);
      const peer: PapPeer = { address: ipv4ToString(ipv4Src(buf, off)) };
      for (const h of this.#handlers) h(message, peer);
    }
  }
}

function track<T extends { close(): void }>(owned: { close(): void }[], device: T): T {
  owned.push(device);
  return device;
}
