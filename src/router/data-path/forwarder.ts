/**
 * The router's forwarding loop (patent "router 26"), per batch of packets in
 * slot buffers, with no I/O of its own beyond the sinks it is given.
 *
 *  LAN raw socket (proto 4)                                   TUN (kernel forwards to WAN)
 *  [outer|inner] --decapsulate--> check source --inner------> tun.sendBatch
 *                                      | inner dst = shared:
 *                                      v hairpin (TTL - 1)
 *  TUN (from WAN) --[inner]--> demultiplex --encapsulate-----> lan.sendBatch
 *                                owner        in headroom       (IPPROTO_RAW to the host)
 *
 * Nothing in an inner datagram is changed: addresses, ports and checksums
 * travel as the host or the remote wrote them (only a hairpinned datagram's
 * TTL and header checksum, see below). The outbound inner datagram's TTL is
 * left to the kernel: written into the TUN, the datagram is forwarded out of
 * the WAN by the kernel, which decrements it (RFC 1812 5.3.1), and an
 * inbound datagram was decremented by the kernel when it was routed into the
 * TUN. A datagram from a host to the shared address never reaches the
 * kernel's forwarding, so the router turns it around itself and decrements
 * its TTL as the hop it is, dropping it when the TTL would reach 0.
 *
 * Every drop has a reason (counters.ts) counted in `drops`; nothing here
 * throws for any input bytes, and the per-packet path allocates nothing: the
 * views, span lists and the arena for released fragments are made once.
 */
import { CounterSet } from '../../metrics/counters.ts';
import { DEFAULT_HEADROOM, SlotBuffer, SpanList } from '../../io/slots.ts';
import type { PacketSink, PacketSource } from '../../io/types.ts';
import { u32 } from '../../wire/bytes.ts';
import { decapsulate, encapsulate, IPIP_OUTER_LENGTH, IpipInner } from '../../wire/ipip.ts';
import { Ipv4View } from '../../wire/ipv4.ts';
import type { DropReason, TrafficCounter } from './counters.ts';
import { DROP_REASONS, TRAFFIC_COUNTERS } from './counters.ts';
import { HELD, InboundDemux } from './inbound-demux.ts';
import type { LeaseHolderSet } from './outbound-check.ts';
import { OutboundCheck } from './outbound-check.ts';
import { OutboundSaTable } from './outbound-sa.ts';
import type { HeldFragmentSink } from './tables/fragment-hold.ts';
import type { RouterTables } from './tables/router-tables.ts';

export interface RouterForwarderOptions {
  /** The public address the hosts share, as an unsigned 32-bit number. */
  readonly sharedAddress: number;
  /** The router's LAN address: outer destination of hosts' tunnels, outer source of the router's. */
  readonly lanAddress: number;
  readonly tables: RouterTables;
  /** Which hosts hold any lease (LeaseHolders). */
  readonly holders: LeaseHolderSet;
  /** Where inner datagrams go out: the TUN, whose kernel side forwards them to the WAN. */
  readonly tun: PacketSink;
  /** Where IP-in-IP datagrams for hosts go: an IPPROTO_RAW sender on the LAN. */
  readonly lan: PacketSink;
  /** Read once per batch. */
  readonly clock: { now(): number };
  readonly outboundSas?: OutboundSaTable;
  /** Largest IP-in-IP datagram the LAN carries (its MTU). Default 1500. */
  readonly lanMtu?: number;
}

/** Most packets one batch can hold (SlotBuffer's limit), so span lists never fill. */
const MAX_BATCH = 1024;
/** Released fragments gathered before a send; more in one batch are sent in several. */
const RELEASE_SLOTS = 16;

export class RouterForwarder {
  readonly drops = new CounterSet<DropReason>(DROP_REASONS);
  readonly traffic = new CounterSet<TrafficCounter>(TRAFFIC_COUNTERS);
  readonly outboundSas: OutboundSaTable;
  readonly tables: RouterTables;

  readonly #shared: number;
  readonly #lanAddress: number;
  readonly #lanMtu: number;
  readonly #tun: PacketSink;
  readonly #lan: PacketSink;
  readonly #clock: { now(): number };
  readonly #demux: InboundDemux;
  readonly #check: OutboundCheck;
  readonly #inner = new IpipInner();
  readonly #ip = new Ipv4View();
  readonly #toTun = new SpanList(MAX_BATCH);
  readonly #toLan = new SpanList(MAX_BATCH);
  /** Held fragments on their way out: copied here with headroom, since the hold's arena has none. */
  readonly #released: SlotBuffer;
  readonly #releasedSpans = new SpanList(RELEASE_SLOTS);
  readonly #releaseSink: HeldFragmentSink;
  #releaseOwner = 0;
  // Per-batch tallies, added to `traffic` once per batch.
  #tunnelled = 0;
  #tunnelledBytes = 0;
  #attached: PacketSource[] = [];

  constructor(o: RouterForwarderOptions) {
    this.#shared = o.sharedAddress >>> 0;
    this.#lanAddress = o.lanAddress >>> 0;
    this.#lanMtu = o.lanMtu ?? 1500;
    this.#tun = o.tun;
    this.#lan = o.lan;
    this.#clock = o.clock;
    this.tables = o.tables;
    this.outboundSas = o.outboundSas ?? new OutboundSaTable();
    this.#demux = new InboundDemux(this.#shared, o.tables, this.outboundSas);
    this.#check = new OutboundCheck(this.#shared, o.tables, o.holders, this.outboundSas);
    this.#released = new SlotBuffer(
      RELEASE_SLOTS,
      DEFAULT_HEADROOM + o.tables.held.slotBytes + 64,
      DEFAULT_HEADROOM,
    );
    this.#releaseSink = (arena, offset, length) => this.#tunnelReleased(arena, offset, length);
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

  /** Handles a batch of IP-in-IP datagrams from hosts: slots 0..count-1. */
  fromLan(slots: SlotBuffer, count: number): void {
    const now = this.#clock.now();
    const bytes = slots.bytes;
    const inner = this.#inner;
    const toTun = this.#toTun;
    const toLan = this.#toLan;
    toTun.clear();
    toLan.clear();
    let rxBytes = 0;
    let outBytes = 0;
    let hairpins = 0;
    for (let i = 0; i < count; i++) {
      const off = slots.offset(i);
      const len = slots.lengths[i]!;
      rxBytes += len;
      const err = decapsulate(bytes, off, len, inner, true);
      if (err !== null) {
        this.drops.inc(err === 'fragmented' ? 'tunnel-fragment' : 'tunnel-malformed');
        continue;
      }
      if (inner.outerDst !== this.#lanAddress) {
        this.drops.inc('tunnel-not-for-router');
        continue;
      }
      const why = this.#check.check(bytes, inner.offset, inner.length, inner.outerSrc, now);
      if (why !== null) {
        this.drops.inc(why);
        continue;
      }
      if (u32(bytes, inner.offset + 16) === this.#shared) {
        const ttl = bytes[inner.offset + 8]!;
        if (ttl <= 1) {
          this.drops.inc('ttl-exceeded');
          continue;
        }
        this.#ip.wrap(bytes, inner.offset, inner.length).setTtl(ttl - 1);
        hairpins++;
        this.#deliver(bytes, inner.offset, inner.length, now, toLan);
        continue;
      }
      toTun.push(inner.offset, inner.length);
      outBytes += inner.length;
    }
    const t = this.traffic;
    t.inc('lan-batches');
    t.inc('lan-rx-packets', count);
    t.inc('lan-rx-bytes', rxBytes);
    t.inc('outbound-packets', toTun.count);
    t.inc('outbound-bytes', outBytes);
    if (hairpins > 0) t.inc('hairpin-packets', hairpins);
    if (toTun.count > 0) {
      const accepted = this.#tun.sendBatch(bytes, toTun.pairs, toTun.count);
      if (accepted < toTun.count) t.inc('tun-tx-refused', toTun.count - accepted);
    }
    this.#sendToLan(bytes, toLan);
    this.#flushReleased();
    this.#countTunnelled();
  }

  /** Handles a batch of datagrams for the shared address read from the TUN: slots 0..count-1. */
  fromWan(slots: SlotBuffer, count: number): void {
    if (slots.headroom < IPIP_OUTER_LENGTH)
      throw new RangeError(`slots need ${IPIP_OUTER_LENGTH} bytes of headroom for the outer header`);
    const now = this.#clock.now();
    const bytes = slots.bytes;
    const toLan = this.#toLan;
    toLan.clear();
    let rxBytes = 0;
    for (let i = 0; i < count; i++) {
      const off = slots.offset(i);
      const len = slots.lengths[i]!;
      rxBytes += len;
      // The shared address is the hosts' own: a WAN packet claiming it as
      // source is spoofed, and hosts accept it as local (accept_local, for
      // hairpin), so it must stop here. Hairpin itself never comes this way.
      if (len >= 20 && u32(bytes, off + 12) === this.#shared) {
        this.drops.inc('wan-shared-source');
        continue;
      }
      this.#deliver(bytes, off, len, now, toLan);
    }
    const t = this.traffic;
    t.inc('wan-batches');
    t.inc('wan-rx-packets', count);
    t.inc('wan-rx-bytes', rxBytes);
    this.#sendToLan(bytes, toLan);
    this.#flushReleased();
    this.#countTunnelled();
  }

  /** Demultiplexes one inbound datagram and queues it, tunnelled to its owner, on `out`. */
  #deliver(buf: Uint8Array, off: number, len: number, now: number, out: SpanList): void {
    const demux = this.#demux;
    const owner = demux.owner(buf, off, len, now);
    if (owner === HELD) {
      this.traffic.inc('fragments-held');
      return;
    }
    if (owner === 0) {
      this.drops.inc(demux.reason);
      return;
    }
    if (!this.#tunnel(buf, off, len, owner, out)) return;
    if (demux.firstFragment) {
      this.#releaseOwner = owner;
      const n = this.tables.held.release(
        demux.src,
        demux.dst,
        demux.protocol,
        demux.id,
        now,
        this.#releaseSink,
      );
      if (n > 0) this.traffic.inc('fragments-released', n);
    }
  }

  /** Writes the outer header (router LAN -> owner) before the datagram and queues it. */
  #tunnel(buf: Uint8Array, off: number, len: number, owner: number, out: SpanList): boolean {
    if (len + IPIP_OUTER_LENGTH > this.#lanMtu) {
      this.drops.inc('too-big');
      return false;
    }
    const start = encapsulate(buf, off, len, this.#lanAddress, owner);
    if (typeof start !== 'number') {
      this.drops.inc('ip-malformed');
      return false;
    }
    out.push(start, len + IPIP_OUTER_LENGTH);
    this.#tunnelled++;
    this.#tunnelledBytes += len + IPIP_OUTER_LENGTH;
    return true;
  }

  #tunnelReleased(arena: Uint8Array, offset: number, length: number): void {
    const slots = this.#released;
    if (this.#releasedSpans.count === slots.slotCount) this.#flushReleased();
    const i = this.#releasedSpans.count;
    const at = slots.offset(i);
    const dst = slots.bytes;
    if (length > slots.capacity) return;
    for (let k = 0; k < length; k++) dst[at + k] = arena[offset + k]!;
    this.#tunnel(dst, at, length, this.#releaseOwner, this.#releasedSpans);
  }

  #sendToLan(bytes: Uint8Array, spans: SpanList): void {
    if (spans.count === 0) return;
    const accepted = this.#lan.sendBatch(bytes, spans.pairs, spans.count);
    if (accepted < spans.count) this.traffic.inc('lan-tx-refused', spans.count - accepted);
    spans.clear();
  }

  #flushReleased(): void {
    this.#sendToLan(this.#released.bytes, this.#releasedSpans);
  }

  #countTunnelled(): void {
    if (this.#tunnelled === 0) return;
    this.traffic.inc('inbound-packets', this.#tunnelled);
    this.traffic.inc('inbound-bytes', this.#tunnelledBytes);
    this.#tunnelled = 0;
    this.#tunnelledBytes = 0;
  }
}
