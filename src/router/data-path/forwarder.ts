/**
 * The router's forwarding loop (patent "router 26"): reads batches of
 * packets in slot buffers from its two devices and hands each batch to one
 * of the two paths, with no I/O of its own beyond the sinks it is given.
 *
 *   LAN raw socket (proto 4) --> outbound.ts (router out) --> TUN --> WAN
 *   TUN (from WAN)           --> inbound.ts  (router in)  --> LAN raw sender --> host
 *                                  ^ hairpin: router out hands a datagram for the
 *                                    shared address to router in
 *
 * Nothing in an inner datagram is changed: addresses, ports and checksums
 * travel as the host or the remote wrote them (only a hairpinned datagram's
 * TTL and header checksum, see outbound.ts).
 *
 * Every drop has a reason (counters.ts) counted in `drops`; nothing here
 * throws for any input bytes, and the per-packet path allocates nothing: the
 * views, span lists and the arena for released fragments are made once.
 */
import { CounterSet, type CounterReader } from '../../metrics/counters.ts';
import type { SlotBuffer } from '../../io/slots.ts';
import type { PacketSink, PacketSource } from '../../io/types.ts';
import { IPIP_OUTER_LENGTH } from '../../wire/ipip.ts';
import type { DropReason, TrafficCounter } from './counters.ts';
import { DROP_REASONS, TRAFFIC_COUNTERS } from './counters.ts';
import { RouterInbound } from './inbound.ts';
import { OutboundCheck } from './outbound-check.ts';
import { OutboundSaTable } from './outbound-sa.ts';
import { RouterOutbound } from './outbound.ts';
import { SharedAddresses } from './shared-addresses.ts';
import type { RouterTables } from './tables/router-tables.ts';

export interface RouterForwarderOptions {
  /** The public address the hosts share, as an unsigned 32-bit number. */
  readonly sharedAddress: number;
  /** All of them when there are several, first first (the first is sharedAddress). Default [sharedAddress]. */
  readonly sharedAddresses?: readonly number[];
  /** The router's LAN address: outer destination of hosts' tunnels, outer source of the router's. */
  readonly lanAddress: number;
  readonly tables: RouterTables;
  /** Where inner datagrams go out: the TUN, whose kernel side forwards them to the WAN. */
  readonly tun: PacketSink;
  /** Where IP-in-IP datagrams for hosts go: an IPPROTO_RAW sender on the LAN. */
  readonly lan: PacketSink;
  /** Read once per batch. */
  readonly clock: { now(): number };
  readonly outboundSas?: OutboundSaTable;
  /** Largest IP-in-IP datagram the LAN carries (its MTU). Default 1500. */
  readonly lanMtu?: number;
  /** Where to count drops and traffic (one element per name): a worker's shared memory. Default: arrays of its own. */
  readonly counterMemory?: { readonly drops: Float64Array; readonly traffic: Float64Array };
}

/**
 * What the daemon's status, metrics and maintenance read of the forwarding:
 * one RouterForwarder, or the sum of the workers' (daemon/workers.ts).
 */
export interface RouterForwarding {
  readonly drops: CounterReader<DropReason>;
  readonly traffic: CounterReader<TrafficCounter>;
  readonly tables: RouterTables;
  readonly outboundSas: { readonly size: number; expire(now: number): void };
}

export class RouterForwarder implements RouterForwarding {
  readonly drops: CounterSet<DropReason>;
  readonly traffic: CounterSet<TrafficCounter>;
  readonly outboundSas: OutboundSaTable;
  readonly tables: RouterTables;

  readonly #clock: { now(): number };
  readonly #outbound: RouterOutbound;
  readonly #inbound: RouterInbound;
  #attached: PacketSource[] = [];

  constructor(o: RouterForwarderOptions) {
    const shared = new SharedAddresses(o.sharedAddresses ?? [o.sharedAddress]);
    this.drops = new CounterSet<DropReason>(DROP_REASONS, o.counterMemory?.drops);
    this.traffic = new CounterSet<TrafficCounter>(TRAFFIC_COUNTERS, o.counterMemory?.traffic);
    this.#clock = o.clock;
    this.tables = o.tables;
    this.outboundSas = o.outboundSas ?? new OutboundSaTable();
    const counters = { drops: this.drops, traffic: this.traffic };
    this.#inbound = new RouterInbound({
      shared,
      lanAddress: o.lanAddress,
      lanMtu: o.lanMtu ?? 1500,
      tables: o.tables,
      outboundSas: this.outboundSas,
      lan: o.lan,
      ...counters,
    });
    this.#outbound = new RouterOutbound({
      shared,
      lanAddress: o.lanAddress,
      check: new OutboundCheck(shared, o.tables, this.outboundSas, this.traffic),
      inbound: this.#inbound,
      tun: o.tun,
      ...counters,
    });
  }

  /** Reads batches from the LAN raw socket (protocol 4) and from the TUN until detach(). */
  attach(lanRx: PacketSource, tunRx: PacketSource): void {
    if (tunRx.slots.headroom < IPIP_OUTER_LENGTH)
      throw new RangeError(
        `the TUN's slots need ${IPIP_OUTER_LENGTH} bytes of headroom for the outer header`,
      );
    this.detach();
    lanRx.onBatch((count) => this.fromLan(lanRx.slots, count));
    tunRx.onBatch((count) => this.fromWan(tunRx.slots, count));
    this.#attached = [lanRx, tunRx];
  }

  detach(): void {
    for (const s of this.#attached) s.onBatch(null);
    this.#attached = [];
  }

  /** Router out: a batch of IP-in-IP datagrams from hosts, slots 0..count-1. */
  fromLan(slots: SlotBuffer, count: number): void {
    this.#outbound.fromLan(slots, count, this.#clock.now());
  }

  /** Router in: a batch of datagrams for the shared address read from the TUN, slots 0..count-1. */
  fromWan(slots: SlotBuffer, count: number): void {
    this.#inbound.fromWan(slots, count, this.#clock.now());
  }
}
