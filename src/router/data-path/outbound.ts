/**
 * Router out: hosts' IP-in-IP datagrams from the LAN to the WAN (patent
 * Tables 8 -> 9).
 *
 *   LAN raw socket (proto 4)                                        TUN sink
 *   [outer|inner] --decapsulate--> outer source owns the   --inner--> (the kernel
 *                                  inner source port?                  forwards it
 *                                       | inner destination = shared     to the WAN)
 *                                       v hairpin: TTL - 1, then router in
 *
 * The inner datagram goes on exactly as the host wrote it. Its TTL is left
 * to the kernel, which decrements it when it forwards what the router wrote
 * into the TUN (RFC 1812 5.3.1). A datagram from one host to the shared
 * address never reaches the kernel's forwarding, so the router turns it
 * around itself and decrements its TTL as the hop it is, dropping it when
 * the TTL would reach 0; only then are its TTL and header checksum changed.
 */
import type { SlotBuffer } from '../../io/slots.ts';
import { SpanList } from '../../io/slots.ts';
import type { PacketSink } from '../../io/types.ts';
import type { CounterSet } from '../../metrics/counters.ts';
import { decapsulate, IpipInner } from '../../wire/ipip.ts';
import { Ipv4View } from '../../wire/ipv4.ts';
import type { DropReason, TrafficCounter } from './counters.ts';
import { MAX_BATCH, type RouterInbound } from './inbound.ts';
import type { OutboundCheck } from './outbound-check.ts';
import type { SharedAddresses } from './shared-addresses.ts';

export interface RouterOutboundOptions {
  /** The router's shared addresses: a datagram to one of them turns around (hairpin). */
  readonly shared: SharedAddresses;
  readonly lanAddress: number;
  readonly check: OutboundCheck;
  /** Where hairpinned datagrams are demultiplexed and tunnelled back into the LAN. */
  readonly inbound: RouterInbound;
  /** Where inner datagrams go out: the TUN, whose kernel side forwards them to the WAN. */
  readonly tun: PacketSink;
  readonly drops: CounterSet<DropReason>;
  readonly traffic: CounterSet<TrafficCounter>;
}

export class RouterOutbound {
  readonly #o: RouterOutboundOptions;
  readonly #shared: SharedAddresses;
  readonly #lanAddress: number;
  readonly #inner = new IpipInner();
  readonly #ip = new Ipv4View();
  readonly #toTun = new SpanList(MAX_BATCH);

  constructor(o: RouterOutboundOptions) {
    this.#o = o;
    this.#shared = o.shared;
    this.#lanAddress = o.lanAddress >>> 0;
  }

  /** Handles a batch of IP-in-IP datagrams from hosts: slots 0..count-1. */
  fromLan(slots: SlotBuffer, count: number, now: number): void {
    const o = this.#o;
    const bytes = slots.bytes;
    const inner = this.#inner;
    const ip = this.#ip;
    const toTun = this.#toTun;
    toTun.clear();
    o.inbound.toLan.clear();
    let rxBytes = 0;
    let outBytes = 0;
    let hairpins = 0;
    for (let i = 0; i < count; i++) {
      const off = slots.offset(i);
      const len = slots.lengths[i]!;
      rxBytes += len;
      const err = decapsulate(bytes, off, len, inner, true);
      if (err !== null) {
        o.drops.inc(err === 'fragmented' ? 'tunnel-fragment' : 'tunnel-malformed');
        continue;
      }
      if (inner.outerDst !== this.#lanAddress) {
        o.drops.inc('tunnel-not-for-router');
        continue;
      }
      const why = o.check.check(bytes, inner.offset, inner.length, inner.outerSrc, now);
      if (why !== null) {
        o.drops.inc(why);
        continue;
      }
      ip.wrap(bytes, inner.offset, inner.length);
      if (this.#shared.has(ip.dst)) {
        const ttl = ip.ttl;
        if (ttl <= 1) {
          o.drops.inc('ttl-exceeded');
          continue;
        }
        ip.setTtl(ttl - 1);
        hairpins++;
        o.inbound.deliver(bytes, inner.offset, inner.length, now);
        continue;
      }
      toTun.push(inner.offset, inner.length);
      outBytes += inner.length;
    }
    const t = o.traffic;
    t.inc('lan-batches');
    t.inc('lan-rx-packets', count);
    t.inc('lan-rx-bytes', rxBytes);
    t.inc('outbound-packets', toTun.count);
    t.inc('outbound-bytes', outBytes);
    if (hairpins > 0) t.inc('hairpin-packets', hairpins);
    if (toTun.count > 0) {
      const accepted = o.tun.sendBatch(bytes, toTun.pairs, toTun.count);
      if (accepted < toTun.count) t.inc('tun-tx-refused', toTun.count - accepted);
    }
    o.inbound.flush(bytes);
  }
}
