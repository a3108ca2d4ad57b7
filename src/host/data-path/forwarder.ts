/**
 * The host's data path (patent "network device 14/18"): two devices, two
 * paths, each in a file of its own.
 *
 *   TUN (local stack)       --> outbound.ts (host out, Method 170) --> raw sender --> router
 *   raw socket (protocol 4) --> inbound.ts  (host in, Method 184)  --> TUN --> local stack
 *
 * With port translation (Methods 170/184), or in native mode (Method 130)
 * where the kernel already uses leased ports and only ICMP query identifiers
 * are translated. Nothing throws for bad input, and nothing is allocated per
 * packet; drops are counted by reason (drops.ts).
 */
import type { PacketSink, PacketSource } from '../../io/types.ts';
import { CounterSet } from '../../metrics/counters.ts';
import type { Clock } from '../../util/clock.ts';
import { FORWARDER_EVENTS, INBOUND_DROPS, OUTBOUND_DROPS } from './drops.ts';
import type { ForwarderEvent, InboundDrop, OutboundDrop } from './drops.ts';
import { HostInbound } from './inbound.ts';
import type { IpsecStep } from './ipsec-step.ts';
import { HostOutbound, type LeaseView } from './outbound.ts';
import type { HostMode } from './shared-steps.ts';
import type { PortTranslator } from './translation/translator.ts';

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
  /** With several routers, all of them (routerAddress among them): inbound is accepted from each. */
  readonly routerAddresses?: readonly number[];
  readonly sharedAddress: number;
  /** Default 1480 (native-setup/linux/host-setup.sh). Inbound SYNs are clamped to tunMtu - 40. */
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

export class HostForwarder {
  readonly outboundDrops = new CounterSet<OutboundDrop>(OUTBOUND_DROPS);
  readonly inboundDrops = new CounterSet<InboundDrop>(INBOUND_DROPS);
  readonly events = new CounterSet<ForwarderEvent>(FORWARDER_EVENTS);
  readonly mode: HostMode;
  readonly tunMtu: number;
  readonly lanMtu: number;
  /** Host out: handles the packets in slots 0..count-1 of the TUN device. */
  readonly onOutboundBatch: (count: number) => void;
  /** Host in: handles the packets in slots 0..count-1 of the protocol-4 socket. */
  readonly onInboundBatch: (count: number) => void;

  readonly #o: HostForwarderOptions;
  readonly #outbound: HostOutbound;
  #running = false;

  constructor(options: HostForwarderOptions) {
    this.#o = options;
    this.mode = options.mode;
    this.tunMtu = options.tunMtu ?? 1480;
    this.lanMtu = options.lanMtu ?? 1500;
    const common = {
      tun: options.tun,
      translator: options.translator,
      clock: options.clock,
      mode: options.mode,
      routerAddress: options.routerAddress,
      sharedAddress: options.sharedAddress,
      ipsec: options.ipsec,
      servicePorts: options.servicePorts,
      events: this.events,
    };
    this.#outbound = new HostOutbound({
      ...common,
      tunnelOut: options.tunnelOut,
      leases: options.leases,
      lanAddress: options.lanAddress,
      lanMtu: this.lanMtu,
      scratchSlots: options.scratchSlots ?? 16,
      drops: this.outboundDrops,
    });
    const inbound = new HostInbound({
      ...common,
      tunnelIn: options.tunnelIn,
      routerAddresses: options.routerAddresses,
      tunMtu: this.tunMtu,
      drops: this.inboundDrops,
    });
    this.onOutboundBatch = this.#outbound.onBatch;
    this.onInboundBatch = inbound.onBatch;
  }

  /** Sends through another router from now on (one of routerAddresses). */
  setRouter(address: number): void {
    this.#outbound.setRouter(address);
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
    return this.#outbound.innerMtu;
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
