/**
 * The host's data path (patent "network device 14/18"): Method 170 outbound
 * and Method 184 inbound with port translation, or Method 130 (native mode)
 * where the kernel already uses leased ports and only ICMP query
 * identifiers are translated.
 *
 *   outbound  TUN (packets from the shared address) -> checks -> path MTU ->
 *             translate (FIG. 11) -> clamp MSS -> [IPsec protect] ->
 *             IP-in-IP (host LAN -> router LAN) -> raw socket, one sendmmsg per batch
 *   inbound   raw socket (protocol 4, outer header included) -> outer checks ->
 *             strip -> inner checks -> [IPsec verify] -> translate back ->
 *             clamp MSS -> TUN, one batch write per batch
 *
 * Everything happens in place in the devices' slots: the outer header goes
 * into the headroom before the inner packet, and is skipped on the way in.
 * Nothing throws for bad input, and nothing is allocated per packet; drops
 * are counted by reason (drops.ts). Fragmentation needed errors and
 * fragments of oversized datagrams are built in a scratch buffer (mtu.ts).
 */
import { u16, u32 } from '../wire/bytes.ts';
import { checkIpv4 } from '../wire/ipv4.ts';
import { decapsulate, encapsulate, IpipInner, IPIP_OUTER_LENGTH } from '../wire/ipip.ts';
import { isIcmpErrorType } from '../wire/icmp.ts';
import { IpProtocol } from '../wire/result.ts';
import { clampTcpMss } from '../wire/tcp-options.ts';
import { SlotBuffer, SpanList } from '../io/slots.ts';
import type { PacketSink, PacketSource } from '../io/types.ts';
import { CounterSet } from '../metrics/counters.ts';
import type { Clock } from '../util/clock.ts';
import type { PortTranslator, TranslateOutcome } from './translation/translator.ts';
import { FORWARDER_EVENTS, INBOUND_DROPS, OUTBOUND_DROPS } from './drops.ts';
import type { ForwarderEvent, InboundDrop, OutboundDrop } from './drops.ts';
import { PacketSpan } from './ipsec-step.ts';
import type { IpsecStep } from './ipsec-step.ts';
import { fragmentDatagram, writeFragmentationNeeded } from './mtu.ts';

export type HostMode = 'translate' | 'native';

/** What the forwarder needs to know of the leases. */
export interface LeaseView {
  /** Ports held; 0 = no lease, nothing is forwarded outbound. */
  readonly held: number;
  /** Whether a port lies in a held block (native mode checks source ports). */
  isLeased(port: number): boolean;
}

export interface HostForwarderOptions {
  /** Outbound packets are read from it, inbound ones written into it. */
  readonly tun: PacketSource & PacketSink;
  /** Raw socket, protocol 4: the router's IP-in-IP packets, outer header included. */
  readonly tunnelIn: PacketSource;
  /** IPPROTO_RAW sender: whole IP-in-IP packets to the router. */
  readonly tunnelOut: PacketSink;
  readonly translator: PortTranslator;
  readonly leases: LeaseView;
  readonly clock: Clock;
  readonly mode: HostMode;
  /** Addresses as u32: this host's LAN address, the router's, the shared public one. */
  readonly lanAddress: number;
  readonly routerAddress: number;
  readonly sharedAddress: number;
  /** Default 1480 (native-setup/host-setup.sh). Inbound SYNs are clamped to tunMtu - 40. */
  readonly tunMtu?: number;
  /** Default 1500. Encapsulated packets must fit it. */
  readonly lanMtu?: number;
  readonly ipsec?: IpsecStep;
  /**
   * UDP ports of the agent's own services (IKE) in translate mode: leased
   * ports the agent took for itself and bound, so their datagrams keep them
   * both ways instead of going through the translation table.
   */
  readonly servicePorts?: { has(port: number): boolean };
  /** Scratch slots for generated errors and fragments, per batch. Default 16. */
  readonly scratchSlots?: number;
}

const TCP = IpProtocol.TCP;
const UDP = IpProtocol.UDP;
const ICMP = IpProtocol.ICMP;
const SYN = 0x02;
const IPV4_HEADER = 20;
const TCP_IP_HEADERS = 40;

/** True for the outcomes after which the packet goes on. */
const passes = (o: TranslateOutcome): boolean => o === 'translated' || o === 'unchanged';

/** The drop reason of an outcome that does not pass. */
function dropOf(o: TranslateOutcome): 'no-mapping' | 'no-free-port' | 'not-translatable' {
  return o === 'no-mapping' || o === 'no-free-port' ? o : 'not-translatable';
}

/**
 * Clamps the MSS of a SYN (or SYN-ACK) whose whole TCP header lies in
 * buf[l4, end); true when it changed the segment.
 */
function clampSynMss(buf: Uint8Array, l4: number, end: number, max: number): boolean {
  if (l4 + 20 > end || (buf[l4 + 13]! & SYN) === 0) return false;
  const thl = (buf[l4 + 12]! >> 4) << 2;
  if (thl <= 20 || l4 + thl > end) return false;
  return clampTcpMss(buf, l4, max);
}

/**
 * Native mode: whether an ICMP message carries a query identifier to
 * translate, either itself (a query or reply; the translator tells ours from
 * theirs) or in the datagram an error quotes. Errors quoting TCP or UDP pass
 * as they are, since those ports are not translated in native mode.
 */
function icmpNeedsTranslation(buf: Uint8Array, l4: number, end: number): boolean {
  if (l4 + 8 > end || !isIcmpErrorType(buf[l4]!)) return true;
  const q = l4 + 8;
  return q + IPV4_HEADER > end || buf[q + 9] === ICMP;
}

export class HostForwarder {
  readonly outboundDrops = new CounterSet<OutboundDrop>(OUTBOUND_DROPS);
  readonly inboundDrops = new CounterSet<InboundDrop>(INBOUND_DROPS);
  readonly events = new CounterSet<ForwarderEvent>(FORWARDER_EVENTS);
  readonly mode: HostMode;
  readonly tunMtu: number;
  readonly lanMtu: number;

  readonly #o: HostForwarderOptions;
  readonly #toRouter: SpanList;
  readonly #toTun: SpanList;
  readonly #scratch: SlotBuffer;
  readonly #scratchToRouter: SpanList;
  readonly #scratchToTun: SpanList;
  #scratchUsed = 0;
  /** Destination of the last "fragmentation needed" sent in this batch (-1: none). */
  #tooBigFor = -1;
  readonly #inner = new IpipInner();
  readonly #span = new PacketSpan();
  readonly #fragmentAt = (k: number): number => this.#scratch.offset(this.#scratchUsed + k);
  #running = false;

  constructor(options: HostForwarderOptions) {
    this.#o = options;
    this.mode = options.mode;
    this.tunMtu = options.tunMtu ?? 1480;
    this.lanMtu = options.lanMtu ?? 1500;
    if (options.tun.slots.headroom < IPIP_OUTER_LENGTH)
      throw new RangeError('the TUN device slots need 20 octets of headroom for the outer header');
    this.#toRouter = new SpanList(options.tun.slots.slotCount);
    this.#toTun = new SpanList(options.tunnelIn.slots.slotCount);
    const n = options.scratchSlots ?? 16;
    this.#scratch = new SlotBuffer(n);
    this.#scratchToRouter = new SpanList(n);
    this.#scratchToTun = new SpanList(n);
  }

  /** Starts reading both devices. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#o.tun.onBatch(this.onOutboundBatch);
    this.#o.tunnelIn.onBatch(this.onInboundBatch);
  }

  /** Stops reading (the devices stay open). */
  stop(): void {
    if (!this.#running) return;
    this.#running = false;
    this.#o.tun.onBatch(null);
    this.#o.tunnelIn.onBatch(null);
  }

  /** Largest inner packet that fits the LAN once encapsulated (and protected). */
  get innerMtu(): number {
    return this.lanMtu - IPIP_OUTER_LENGTH - (this.#o.ipsec?.maxOverhead ?? 0);
  }

  /** Handles the packets in slots 0..count-1 of the TUN device: Method 170. */
  readonly onOutboundBatch = (count: number): void => {
    const o = this.#o;
    if (o.leases.held === 0) {
      this.outboundDrops.inc('no-lease', count);
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
      const slotStart = off - slots.headroom;
      const reason = this.#outbound(buf, off, slots.lengths[i]!, now, slotStart, slotStart + slots.slotSize);
      if (reason !== null) this.outboundDrops.inc(reason);
    }
    this.#flush(o.tunnelOut, buf, this.#toRouter, 'outbound');
    this.#flush(o.tunnelOut, this.#scratch.bytes, this.#scratchToRouter, 'outbound');
    this.#flush(o.tun, this.#scratch.bytes, this.#scratchToTun, 'fragmentation-needed');
  };

  /** Handles the packets in slots 0..count-1 of the protocol-4 socket: Method 184. */
  readonly onInboundBatch = (count: number): void => {
    const o = this.#o;
    const slots = o.tunnelIn.slots;
    const buf = slots.bytes;
    const now = o.clock.now();
    this.#toTun.clear();
    for (let i = 0; i < count; i++) {
      const reason = this.#inbound(buf, slots.offset(i), slots.lengths[i]!, now);
      if (reason !== null) this.inboundDrops.inc(reason);
    }
    const sent = this.#toTun.count === 0 ? 0 : o.tun.sendBatch(buf, this.#toTun.pairs, this.#toTun.count);
    this.events.inc('inbound', sent);
    if (sent < this.#toTun.count) this.inboundDrops.inc('tx-refused', this.#toTun.count - sent);
  };

  #flush(sink: PacketSink, bytes: Uint8Array, spans: SpanList, event: ForwarderEvent): void {
    if (spans.count === 0) return;
    const sent = sink.sendBatch(bytes, spans.pairs, spans.count);
    this.events.inc(event, sent);
    if (sent < spans.count) this.outboundDrops.inc('tx-refused', spans.count - sent);
  }

  /** One packet from the TUN device; null when it was queued for the router. */
  #outbound(
    buf: Uint8Array,
    off: number,
    len: number,
    now: number,
    slotStart: number,
    slotEnd: number,
  ): OutboundDrop | null {
    const o = this.#o;
    if (len < 1 || buf[off]! >> 4 !== 4) return 'not-ipv4';
    if (checkIpv4(buf, off, len, true) !== null) return 'malformed';
    if (u32(buf, off + 12) !== o.sharedAddress) return 'wrong-source';
    const hl = (buf[off]! & 0x0f) << 2;
    const total = u16(buf, off + 2);
    const end = off + total;
    const l4 = off + hl;
    const protocol = buf[off + 9]!;
    const firstFragment = (u16(buf, off + 6) & 0x1fff) === 0;
    const innerMtu = this.innerMtu;
    if (total > innerMtu && (buf[off + 6]! & 0x40) !== 0) {
      this.#fragmentationNeeded(buf, off, total, innerMtu);
      return 'too-big';
    }

    if (this.mode === 'translate') {
      if (!(protocol === UDP && firstFragment && l4 + 4 <= end && o.servicePorts?.has(u16(buf, l4)))) {
        const outcome = o.translator.outbound(buf, off, l4, end, now);
        if (!passes(outcome)) return dropOf(outcome);
      }
    } else if (firstFragment && (protocol === TCP || protocol === UDP)) {
      if (l4 + 4 > end) return 'not-translatable';
      if (!o.leases.isLeased(u16(buf, l4))) return 'unleased-port';
    } else if (protocol === ICMP && icmpNeedsTranslation(buf, l4, end)) {
      const outcome = o.translator.outbound(buf, off, l4, end, now);
      if (!passes(outcome)) return dropOf(outcome);
    }

    if (protocol === TCP && firstFragment && clampSynMss(buf, l4, end, innerMtu - TCP_IP_HEADERS))
      this.events.inc('mss-clamped-outbound');

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
      this.events.inc('ipsec-passthrough-outbound');
    }

    if (length + IPIP_OUTER_LENGTH > this.lanMtu) return this.#fragment(buf, start, length);
    const outer = encapsulate(buf, start, length, o.lanAddress, o.routerAddress);
    if (typeof outer !== 'number') return 'malformed';
    this.#toRouter.push(outer, length + IPIP_OUTER_LENGTH);
    return null;
  }

  /** RFC 1191: tells the local stack the largest packet that gets through. */
  #fragmentationNeeded(buf: Uint8Array, off: number, total: number, mtu: number): void {
    // The stack keeps one path MTU per destination: a burst of big segments to
    // one destination needs one error per batch, not one per segment.
    const dst = u32(buf, off + 16);
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
      u32(buf, off + 12),
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
    const free = s.slotCount - this.#scratchUsed;
    const n = fragmentDatagram(
      buf,
      start,
      length,
      this.lanMtu - IPIP_OUTER_LENGTH,
      s.bytes,
      this.#fragmentAt,
      s.capacity,
      free,
    );
    if (n === 0) return 'no-room';
    const o = this.#o;
    for (let k = 0; k < n; k++) {
      const at = this.#fragmentAt(k);
      const fragLength = u16(s.bytes, at + 2);
      const outer = encapsulate(s.bytes, at, fragLength, o.lanAddress, o.routerAddress);
      if (typeof outer === 'number') this.#scratchToRouter.push(outer, fragLength + IPIP_OUTER_LENGTH);
    }
    this.#scratchUsed += n;
    this.events.inc('fragmented');
    this.events.inc('fragments', n);
    return null;
  }

  /** One packet from the router; null when it was queued for the TUN device. */
  #inbound(buf: Uint8Array, off: number, len: number, now: number): InboundDrop | null {
    const o = this.#o;
    const inner = this.#inner;
    if (decapsulate(buf, off, len, inner, true) !== null) return 'malformed';
    if (inner.outerSrc !== o.routerAddress) return 'not-from-router';
    let start = inner.offset;
    let total = inner.length;
    if (checkIpv4(buf, start, total, true) !== null) return 'inner-malformed';
    if (u32(buf, start + 16) !== o.sharedAddress) return 'not-for-us';
    let protocol = buf[start + 9]!;

    if (o.ipsec !== undefined) {
      const span = this.#span;
      span.offset = start;
      span.length = total;
      const refused = o.ipsec.verify(buf, span);
      if (refused !== null) return refused;
      start = span.offset;
      total = span.length;
      protocol = buf[start + 9]!;
    } else if (protocol === IpProtocol.ESP || protocol === IpProtocol.AH) {
      this.events.inc('ipsec-passthrough-inbound');
    }

    const end = start + total;
    const l4 = start + ((buf[start]! & 0x0f) << 2);
    const toService =
      protocol === UDP &&
      l4 + 4 <= end &&
      (u16(buf, start + 6) & 0x1fff) === 0 &&
      o.servicePorts?.has(u16(buf, l4 + 2)) === true;
    if (
      !toService &&
      (this.mode === 'translate' || (protocol === ICMP && icmpNeedsTranslation(buf, l4, end)))
    ) {
      const outcome = o.translator.inbound(buf, start, l4, end, now);
      if (!passes(outcome)) return outcome === 'no-mapping' ? 'no-mapping' : 'not-translatable';
    }
    if (
      protocol === TCP &&
      (u16(buf, start + 6) & 0x1fff) === 0 &&
      clampSynMss(buf, l4, end, this.tunMtu - TCP_IP_HEADERS)
    )
      this.events.inc('mss-clamped-inbound');
    this.#toTun.push(start, total);
    return null;
  }

  /** Every counter, for status and metrics. */
  counters(): {
    outboundDrops: Record<OutboundDrop, number>;
    inboundDrops: Record<InboundDrop, number>;
    events: Record<ForwarderEvent, number>;
  } {
    return {
      outboundDrops: this.outboundDrops.snapshot(),
      inboundDrops: this.inboundDrops.snapshot(),
      events: this.events.snapshot(),
    };
  }
}
