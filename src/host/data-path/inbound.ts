/**
 * Host in (patent Method 184, Tables 11 -> 12): what the router tunnelled to
 * this host, into the local stack.
 *
 *   raw socket (protocol 4, outer header included) -> outer checks -> strip ->
 *   inner checks -> [IPsec verify] -> translate back (FIG. 11) -> clamp MSS ->
 *   TUN, one batch write per batch
 *
 * The outer header is skipped in place, never copied away. Datagrams to the
 * agent's own services (IKE on a leased port) keep their port.
 */
import { SpanList } from '../../io/slots.ts';
import type { PacketSink, PacketSource } from '../../io/types.ts';
import type { CounterSet } from '../../metrics/counters.ts';
import type { Clock } from '../../util/clock.ts';
import { PacketSpan } from '../../ipsec/types.ts';
import { u16, u32 } from '../../wire/bytes.ts';
import { decapsulate, IpipInner } from '../../wire/ipip.ts';
import { checkIpv4, Ipv4Field, Ipv4FragmentWord } from '../../wire/ipv4.ts';
import { PortField, PORTS_LENGTH } from '../../wire/ports.ts';
import { IpProtocol } from '../../wire/result.ts';
import type { ForwarderEvent, InboundDrop } from './drops.ts';
import type { IpsecStep } from './ipsec-step.ts';
import { clampSynMss, icmpNeedsTranslation, passes, TCP_IP_HEADERS, type HostMode } from './shared-steps.ts';
import type { PortTranslator } from './translation/translator.ts';

export interface HostInboundOptions {
  /** Inbound packets are written into it. */
  readonly tun: PacketSink;
  /** Raw socket, protocol 4: the router's IP-in-IP packets, outer header included. */
  readonly tunnelIn: PacketSource;
  readonly translator: PortTranslator;
  readonly clock: Clock;
  readonly mode: HostMode;
  readonly routerAddress: number;
  /** Every router sharing the lease table: any of them may tunnel a reply (the upstream picks). */
  readonly routerAddresses?: readonly number[] | undefined;
  readonly sharedAddress: number;
  /** Inbound SYNs are clamped to tunMtu - 40. */
  readonly tunMtu: number;
  readonly ipsec: IpsecStep | undefined;
  readonly servicePorts: { has(port: number): boolean } | undefined;
  readonly drops: CounterSet<InboundDrop>;
  readonly events: CounterSet<ForwarderEvent>;
}

// The fields read, as module constants (see wire/bytes.ts).
const IP_VERSION_IHL = Ipv4Field.VERSION_IHL;
const IP_FLAGS_FRAGMENT = Ipv4Field.FLAGS_FRAGMENT;
const IP_PROTOCOL = Ipv4Field.PROTOCOL;
const IP_DST = Ipv4Field.DST;
const IP_FRAGMENT_OFFSET = Ipv4FragmentWord.OFFSET;
const DST_PORT = PortField.DST_PORT;
const PORTS = PORTS_LENGTH;
const TCP = IpProtocol.TCP;
const UDP = IpProtocol.UDP;
const ICMP = IpProtocol.ICMP;

export class HostInbound {
  readonly #o: HostInboundOptions;
  readonly #toTun: SpanList;
  readonly #inner = new IpipInner();
  readonly #span = new PacketSpan();

  constructor(o: HostInboundOptions) {
    this.#o = o;
    this.#toTun = new SpanList(o.tunnelIn.slots.slotCount);
  }

  /** Handles the packets in slots 0..count-1 of the protocol-4 socket. */
  readonly onBatch = (count: number): void => {
    const o = this.#o;
    const slots = o.tunnelIn.slots;
    const buf = slots.bytes;
    const now = o.clock.now();
    this.#toTun.clear();
    for (let i = 0; i < count; i++) {
      const reason = this.#packet(buf, slots.offset(i), slots.lengths[i]!, now);
      if (reason !== null) o.drops.inc(reason);
    }
    const sent = this.#toTun.count === 0 ? 0 : o.tun.sendBatch(buf, this.#toTun.pairs, this.#toTun.count);
    o.events.inc('inbound', sent);
    if (sent < this.#toTun.count) o.drops.inc('tx-refused', this.#toTun.count - sent);
  };

  /** One packet from the router; null when it was queued for the TUN device. */
  #packet(buf: Uint8Array, off: number, len: number, now: number): InboundDrop | null {
    const o = this.#o;
    const inner = this.#inner;
    if (decapsulate(buf, off, len, inner, true) !== null) return 'malformed';
    if (inner.outerSrc !== o.routerAddress && o.routerAddresses?.includes(inner.outerSrc) !== true)
      return 'not-from-router';
    let start = inner.offset;
    let total = inner.length;
    if (checkIpv4(buf, start, total, true) !== null) return 'inner-malformed';
    if (u32(buf, start + IP_DST) !== o.sharedAddress) return 'not-for-us';
    let protocol = buf[start + IP_PROTOCOL]!;

    if (o.ipsec !== undefined) {
      const span = this.#span;
      span.offset = start;
      span.length = total;
      const refused = o.ipsec.verify(buf, span);
      if (refused !== null) return refused;
      start = span.offset;
      total = span.length;
      protocol = buf[start + IP_PROTOCOL]!;
    } else if (protocol === IpProtocol.ESP || protocol === IpProtocol.AH) {
      o.events.inc('ipsec-passthrough-inbound');
    }

    const end = start + total;
    const l4 = start + ((buf[start + IP_VERSION_IHL]! & 0x0f) << 2);
    const toService =
      protocol === UDP &&
      l4 + PORTS <= end &&
      (u16(buf, start + IP_FLAGS_FRAGMENT) & IP_FRAGMENT_OFFSET) === 0 &&
      o.servicePorts?.has(u16(buf, l4 + DST_PORT)) === true;
    if (!toService && (o.mode === 'translate' || (protocol === ICMP && icmpNeedsTranslation(buf, l4, end)))) {
      const outcome = o.translator.inbound(buf, start, l4, end, now);
      if (!passes(outcome)) return outcome === 'no-mapping' ? 'no-mapping' : 'not-translatable';
    }
    if (
      protocol === TCP &&
      (u16(buf, start + IP_FLAGS_FRAGMENT) & IP_FRAGMENT_OFFSET) === 0 &&
      clampSynMss(buf, l4, end, o.tunMtu - TCP_IP_HEADERS)
    )
      o.events.inc('mss-clamped-inbound');
    this.#toTun.push(start, total);
    return null;
  }
}
