/**
 * Host out (patent Method 170, Tables 6 -> 8; Method 130 in native mode):
 * what the local stack sends from the shared address, to the router.
 *
 *   TUN -> checks -> path MTU -> translate (FIG. 11) -> clamp MSS ->
 *   [IPsec protect] -> IP-in-IP (host LAN -> router LAN) -> raw socket,
 *   one sendmmsg per batch
 *
 * In translate mode the source port (or ICMP query id) becomes a leased one;
 * in native mode the kernel already uses leased ports, so only their lease
 * is checked and ICMP query ids are translated. Everything happens in place
 * in the TUN's slots: the outer header goes into the headroom before the
 * packet. "Fragmentation needed" errors for the local stack and fragments of
 * oversized datagrams without DF are built in a scratch buffer (mtu.ts).
 */
import { SlotBuffer, SpanList } from '../../io/slots.ts';
import type { PacketSink, PacketSource } from '../../io/types.ts';
import type { CounterSet } from '../../metrics/counters.ts';
import type { Clock } from '../../util/clock.ts';
import { PacketSpan } from '../../ipsec/types.ts';
import { u16, u32 } from '../../wire/bytes.ts';
import { encapsulate, IPIP_OUTER_LENGTH } from '../../wire/ipip.ts';
import { checkIpv4, Ipv4Field, Ipv4FragmentWord } from '../../wire/ipv4.ts';
import { PortField, PORTS_LENGTH } from '../../wire/ports.ts';
import { IpProtocol } from '../../wire/result.ts';
import type { ForwarderEvent, OutboundDrop } from './drops.ts';
import type { IpsecStep } from './ipsec-step.ts';
import { fragmentDatagram, writeFragmentationNeeded } from './mtu.ts';
import {
  clampSynMss,
  dropOf,
  icmpNeedsTranslation,
  passes,
  TCP_IP_HEADERS,
  type HostMode,
} from './shared-steps.ts';
import type { PortTranslator } from './translation/translator.ts';

/** What the outbound path needs to know of the leases. */
export interface LeaseView {
  /** Ports held; 0 = no lease, nothing is forwarded outbound. */
  readonly held: number;
  /** Whether a port lies in a held block (native mode checks source ports). */
  isLeased(port: number): boolean;
}

export interface HostOutboundOptions {
  /** Outbound packets are read from it; "fragmentation needed" errors written back into it. */
  readonly tun: PacketSource & PacketSink;
  /** IPPROTO_RAW sender: whole IP-in-IP packets to the router. */
  readonly tunnelOut: PacketSink;
  readonly translator: PortTranslator;
  readonly leases: LeaseView;
  readonly clock: Clock;
  readonly mode: HostMode;
  readonly lanAddress: number;
  readonly routerAddress: number;
  readonly sharedAddress: number;
  readonly lanMtu: number;
  readonly ipsec: IpsecStep | undefined;
  readonly servicePorts: { has(port: number): boolean } | undefined;
  /** Scratch slots for generated errors and fragments, per batch. */
  readonly scratchSlots: number;
  readonly drops: CounterSet<OutboundDrop>;
  readonly events: CounterSet<ForwarderEvent>;
}

// The fields read, as module constants (see wire/bytes.ts).
const IP_VERSION_IHL = Ipv4Field.VERSION_IHL;
const IP_TOTAL_LENGTH = Ipv4Field.TOTAL_LENGTH;
const IP_FLAGS_FRAGMENT = Ipv4Field.FLAGS_FRAGMENT;
const IP_PROTOCOL = Ipv4Field.PROTOCOL;
const IP_SRC = Ipv4Field.SRC;
const IP_DST = Ipv4Field.DST;
const IP_FRAGMENT_OFFSET = Ipv4FragmentWord.OFFSET;
const IP_DF_OCTET = Ipv4FragmentWord.DF >> 8;
const SRC_PORT = PortField.SRC_PORT;
const PORTS = PORTS_LENGTH;
const TCP = IpProtocol.TCP;
const UDP = IpProtocol.UDP;
const ICMP = IpProtocol.ICMP;

export class HostOutbound {
  // routerAddress changes when the host moves to another router (setRouter).
  readonly #o: Omit<HostOutboundOptions, 'routerAddress'> & { routerAddress: number };
  readonly #toRouter: SpanList;
  readonly #scratch: SlotBuffer;
  readonly #scratchToRouter: SpanList;
  readonly #scratchToTun: SpanList;
  #scratchUsed = 0;
  /** Destination of the last "fragmentation needed" sent in this batch (-1: none). */
  #tooBigFor = -1;
  readonly #span = new PacketSpan();
  readonly #fragmentAt = (k: number): number => this.#scratch.offset(this.#scratchUsed + k);

  constructor(o: HostOutboundOptions) {
    if (o.tun.slots.headroom < IPIP_OUTER_LENGTH)
      throw new RangeError('the TUN device slots need 20 octets of headroom for the outer header');
    this.#o = { ...o };
    this.#toRouter = new SpanList(o.tun.slots.slotCount);
    this.#scratch = new SlotBuffer(o.scratchSlots);
    this.#scratchToRouter = new SpanList(o.scratchSlots);
    this.#scratchToTun = new SpanList(o.scratchSlots);
  }

  /** The outer destination of every packet from now on: the router this host sends through. */
  setRouter(address: number): void {
    this.#o.routerAddress = address;
  }

  /** Largest inner packet that fits the LAN once encapsulated (and protected). */
  get innerMtu(): number {
    return this.#o.lanMtu - IPIP_OUTER_LENGTH - (this.#o.ipsec?.maxOverhead ?? 0);
  }

  /** Handles the packets in slots 0..count-1 of the TUN device. */
  readonly onBatch = (count: number): void => {
    const o = this.#o;
    // With no port held only a service port's datagrams may leave: IKE's Deletes after a withdrawal took them all.
    const noLease = o.leases.held === 0;
    if (noLease && o.servicePorts === undefined) {
      o.drops.inc('no-lease', count);
      return;
    }
    const slots = o.tun.slots;
    const buf = slots.bytes;
    const now = o.clock.now();
    this.#toRouter.clear();
    this.#scratchToRouter.clear();
    this.#scratchToTun.clear();
    this.#scratchUsed = 0;
    this.#tooBigFor = -1;
    for (let i = 0; i < count; i++) {
      const off = slots.offset(i);
      if (noLease && !this.#fromServicePort(buf, off, slots.lengths[i]!)) {
        o.drops.inc('no-lease');
        continue;
      }
      const slotStart = off - slots.headroom;
      const reason = this.#packet(buf, off, slots.lengths[i]!, now, slotStart, slotStart + slots.slotSize);
      if (reason !== null) o.drops.inc(reason);
    }
    this.#flush(o.tunnelOut, buf, this.#toRouter, 'outbound');
    this.#flush(o.tunnelOut, this.#scratch.bytes, this.#scratchToRouter, 'outbound');
    this.#flush(o.tun, this.#scratch.bytes, this.#scratchToTun, 'fragmentation-needed');
  };

  /** A whole UDP datagram or first fragment from the shared address and a service port (its header checked later). */
  #fromServicePort(buf: Uint8Array, off: number, len: number): boolean {
    if (len < 20 || buf[off + IP_VERSION_IHL]! >> 4 !== 4 || buf[off + IP_PROTOCOL] !== UDP) return false;
    const l4 = off + ((buf[off + IP_VERSION_IHL]! & 0x0f) << 2);
    if ((u16(buf, off + IP_FLAGS_FRAGMENT) & IP_FRAGMENT_OFFSET) !== 0 || l4 + PORTS > off + len)
      return false;
    return this.#o.servicePorts?.has(u16(buf, l4 + SRC_PORT)) === true;
  }

  #flush(sink: PacketSink, bytes: Uint8Array, spans: SpanList, event: ForwarderEvent): void {
    if (spans.count === 0) return;
    const sent = sink.sendBatch(bytes, spans.pairs, spans.count);
    this.#o.events.inc(event, sent);
    if (sent < spans.count) this.#o.drops.inc('tx-refused', spans.count - sent);
  }

  /** One packet from the TUN device; null when it was queued for the router. */
  #packet(
    buf: Uint8Array,
    off: number,
    len: number,
    now: number,
    slotStart: number,
    slotEnd: number,
  ): OutboundDrop | null {
    const o = this.#o;
    if (len < 1 || buf[off + IP_VERSION_IHL]! >> 4 !== 4) return 'not-ipv4';
    if (checkIpv4(buf, off, len, true) !== null) return 'malformed';
    if (u32(buf, off + IP_SRC) !== o.sharedAddress) return 'wrong-source';
    const hl = (buf[off + IP_VERSION_IHL]! & 0x0f) << 2;
    const total = u16(buf, off + IP_TOTAL_LENGTH);
    const end = off + total;
    const l4 = off + hl;
    const protocol = buf[off + IP_PROTOCOL]!;
    const firstFragment = (u16(buf, off + IP_FLAGS_FRAGMENT) & IP_FRAGMENT_OFFSET) === 0;
    const innerMtu = this.innerMtu;
    if (total > innerMtu && (buf[off + IP_FLAGS_FRAGMENT]! & IP_DF_OCTET) !== 0) {
      this.#fragmentationNeeded(buf, off, total, innerMtu);
      return 'too-big';
    }

    if (o.mode === 'translate') {
      if (!(
        protocol === UDP &&
        firstFragment &&
        l4 + PORTS <= end &&
        o.servicePorts?.has(u16(buf, l4 + SRC_PORT))
      )) {
        const outcome = o.translator.outbound(buf, off, l4, end, now);
        if (!passes(outcome)) return dropOf(outcome);
      }
    } else if (firstFragment && (protocol === TCP || protocol === UDP)) {
      if (l4 + PORTS > end) return 'not-translatable';
      // A service port outlives its lease briefly: IKE's Deletes after a withdrawal (host-ike.ts).
      const port = u16(buf, l4 + SRC_PORT);
      if (!o.leases.isLeased(port) && o.servicePorts?.has(port) !== true) return 'unleased-port';
    } else if (protocol === ICMP && icmpNeedsTranslation(buf, l4, end)) {
      const outcome = o.translator.outbound(buf, off, l4, end, now);
      if (!passes(outcome)) return dropOf(outcome);
    }

    if (protocol === TCP && firstFragment && clampSynMss(buf, l4, end, innerMtu - TCP_IP_HEADERS))
      o.events.inc('mss-clamped-outbound');

    let start = off;
    let length = total;
    if (o.ipsec !== undefined) {
      const span = this.#span;
      span.offset = off;
      span.length = total;
      const refused = o.ipsec.protect(buf, span, off - slotStart, slotEnd - end);
      if (refused !== null) return refused;
      start = span.offset;
      length = span.length;
    } else if (protocol === IpProtocol.ESP || protocol === IpProtocol.AH) {
      o.events.inc('ipsec-passthrough-outbound');
    }

    if (length + IPIP_OUTER_LENGTH > o.lanMtu) return this.#fragment(buf, start, length);
    const outer = encapsulate(buf, start, length, o.lanAddress, o.routerAddress);
    if (typeof outer !== 'number') return 'malformed';
    this.#toRouter.push(outer, length + IPIP_OUTER_LENGTH);
    return null;
  }

  /** RFC 1191: tells the local stack the largest packet that gets through. */
  #fragmentationNeeded(buf: Uint8Array, off: number, total: number, mtu: number): void {
    // The stack keeps one path MTU per destination: a burst of big segments to
    // one destination needs one error per batch, not one per segment.
    const dst = u32(buf, off + IP_DST);
    if (dst === this.#tooBigFor || this.#scratchUsed >= this.#scratch.slotCount) return;
    this.#tooBigFor = dst;
    const s = this.#scratch;
    const at = s.offset(this.#scratchUsed);
    const o = this.#o;
    const n = writeFragmentationNeeded(
      s.bytes,
      at,
      at + s.capacity,
      o.routerAddress,
      u32(buf, off + IP_SRC),
      mtu,
      buf,
      off,
      total,
    );
    if (n === 0) return;
    this.#scratchUsed++;
    this.#scratchToTun.push(at, n);
  }

  /** A datagram without DF, too long once encapsulated: fragments of it go to the router instead. */
  #fragment(buf: Uint8Array, start: number, length: number): OutboundDrop | null {
    const s = this.#scratch;
    const o = this.#o;
    const free = s.slotCount - this.#scratchUsed;
    const n = fragmentDatagram(
      buf,
      start,
      length,
      o.lanMtu - IPIP_OUTER_LENGTH,
      s.bytes,
      this.#fragmentAt,
      s.capacity,
      free,
    );
    if (n === 0) return 'no-room';
    for (let k = 0; k < n; k++) {
      const at = this.#fragmentAt(k);
      const fragLength = u16(s.bytes, at + IP_TOTAL_LENGTH);
      const outer = encapsulate(s.bytes, at, fragLength, o.lanAddress, o.routerAddress);
      if (typeof outer === 'number') this.#scratchToRouter.push(outer, fragLength + IPIP_OUTER_LENGTH);
    }
    this.#scratchUsed += n;
    o.events.inc('fragmented');
    o.events.inc('fragments', n);
    return null;
  }
}
