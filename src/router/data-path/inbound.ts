/**
 * Router in: datagrams for the shared address, from the WAN (through the
 * TUN) or turned around from a host (hairpin), to the host that owns them
 * (patent Tables 10 -> 11, FIG. 21 for ESP and AH).
 *
 *   TUN (from WAN) --[inner]--> demultiplex ------> encapsulate -----> LAN sink
 *                               owner (FIG. 8,      in the headroom     (IPPROTO_RAW
 *                               FIG. 21, fragments)  router LAN -> owner   to the host)
 *
 * Nothing in the inner datagram changes: the kernel already decremented its
 * TTL when it routed it into the TUN. A datagram claiming the shared address
 * as its source is refused: the shared address is the hosts' own, and hosts
 * accept it as local (accept_local, for hairpin). Fragments that arrive before
 * their first are held, and tunnelled to its owner once it is known.
 */
import { DEFAULT_HEADROOM, SlotBuffer, SpanList } from '../../io/slots.ts';
import type { PacketSink } from '../../io/types.ts';
import type { CounterSet } from '../../metrics/counters.ts';
import { u32 } from '../../wire/bytes.ts';
import { encapsulate, IPIP_OUTER_LENGTH } from '../../wire/ipip.ts';
import { IPV4_MIN_HEADER_LENGTH, Ipv4Field } from '../../wire/ipv4.ts';
import type { DropReason, TrafficCounter } from './counters.ts';
import { HELD, InboundDemux } from './inbound-demux.ts';
import type { OutboundSaTable } from './outbound-sa.ts';
import type { HeldFragmentSink } from './tables/fragment-hold.ts';
import type { SharedAddresses } from './shared-addresses.ts';
import type { RouterTables } from './tables/router-tables.ts';

export interface RouterInboundOptions {
  /** The router's shared addresses: datagrams to any of them are demultiplexed, from any refused. */
  readonly shared: SharedAddresses;
  readonly lanAddress: number;
  readonly lanMtu: number;
  readonly tables: RouterTables;
  readonly outboundSas: OutboundSaTable;
  /** Where IP-in-IP datagrams for hosts go: an IPPROTO_RAW sender on the LAN. */
  readonly lan: PacketSink;
  readonly drops: CounterSet<DropReason>;
  readonly traffic: CounterSet<TrafficCounter>;
}

/** Most packets one batch can hold (SlotBuffer's limit), so span lists never fill. */
export const MAX_BATCH = 1024;
/** Released fragments gathered before a send; more in one batch are sent in several. */
const RELEASE_SLOTS = 16;
// wire's constants as module constants (see wire/bytes.ts).
const IP_HEADER = IPV4_MIN_HEADER_LENGTH;
const IP_SRC = Ipv4Field.SRC;

export class RouterInbound {
  /** Tunnelled datagrams of the batch in progress, sent to the LAN by `flush`. */
  readonly toLan = new SpanList(MAX_BATCH);

  readonly #o: RouterInboundOptions;
  readonly #shared: SharedAddresses;
  readonly #demux: InboundDemux;
  /** Held fragments on their way out: copied here with headroom, since the hold's arena has none. */
  readonly #released: SlotBuffer;
  readonly #releasedSpans = new SpanList(RELEASE_SLOTS);
  readonly #releaseSink: HeldFragmentSink;
  #releaseOwner = 0;
  // Per-batch tallies, added to `traffic` once per batch.
  #tunnelled = 0;
  #tunnelledBytes = 0;

  constructor(o: RouterInboundOptions) {
    this.#o = o;
    this.#shared = o.shared;
    this.#demux = new InboundDemux(this.#shared, o.tables, o.outboundSas);
    this.#released = new SlotBuffer(
      RELEASE_SLOTS,
      DEFAULT_HEADROOM + o.tables.held.slotBytes + 64,
      DEFAULT_HEADROOM,
    );
    this.#releaseSink = (arena, offset, length) => this.#tunnelReleased(arena, offset, length);
  }

  /** Handles a batch of datagrams for the shared address read from the TUN: slots 0..count-1. */
  fromWan(slots: SlotBuffer, count: number, now: number): void {
    if (slots.headroom < IPIP_OUTER_LENGTH)
      throw new RangeError(`slots need ${IPIP_OUTER_LENGTH} bytes of headroom for the outer header`);
    const bytes = slots.bytes;
    const toLan = this.toLan;
    toLan.clear();
    let rxBytes = 0;
    for (let i = 0; i < count; i++) {
      const off = slots.offset(i);
      const len = slots.lengths[i]!;
      rxBytes += len;
      if (len >= IP_HEADER && this.#shared.has(u32(bytes, off + IP_SRC))) {
        this.#o.drops.inc('wan-shared-source');
        continue;
      }
      this.deliver(bytes, off, len, now);
    }
    const t = this.#o.traffic;
    t.inc('wan-batches');
    t.inc('wan-rx-packets', count);
    t.inc('wan-rx-bytes', rxBytes);
    this.flush(bytes);
  }

  /** Demultiplexes one inbound datagram and queues it, tunnelled to its owner, on `toLan`. */
  deliver(buf: Uint8Array, off: number, len: number, now: number): void {
    const demux = this.#demux;
    const owner = demux.owner(buf, off, len, now);
    if (owner === HELD) {
      this.#o.traffic.inc('fragments-held');
      return;
    }
    if (owner === 0) {
      this.#o.drops.inc(demux.reason);
      return;
    }
    if (!this.#tunnel(buf, off, len, owner, this.toLan)) return;
    if (demux.firstFragment) {
      this.#releaseOwner = owner;
      const n = this.#o.tables.held.release(
        demux.src,
        demux.dst,
        demux.protocol,
        demux.id,
        now,
        this.#releaseSink,
      );
      if (n > 0) this.#o.traffic.inc('fragments-released', n);
    }
  }

  /** Sends what the batch queued (from `bytes`) and any released fragments, and counts them. */
  flush(bytes: Uint8Array): void {
    this.#send(bytes, this.toLan);
    this.#send(this.#released.bytes, this.#releasedSpans);
    if (this.#tunnelled === 0) return;
    this.#o.traffic.inc('inbound-packets', this.#tunnelled);
    this.#o.traffic.inc('inbound-bytes', this.#tunnelledBytes);
    this.#tunnelled = 0;
    this.#tunnelledBytes = 0;
  }

  /** Writes the outer header (router LAN -> owner) before the datagram and queues it. */
  #tunnel(buf: Uint8Array, off: number, len: number, owner: number, out: SpanList): boolean {
    if (len + IPIP_OUTER_LENGTH > this.#o.lanMtu) {
      this.#o.drops.inc('too-big');
      return false;
    }
    const start = encapsulate(buf, off, len, this.#o.lanAddress, owner);
    if (typeof start !== 'number') {
      this.#o.drops.inc('ip-malformed');
      return false;
    }
    out.push(start, len + IPIP_OUTER_LENGTH);
    this.#tunnelled++;
    this.#tunnelledBytes += len + IPIP_OUTER_LENGTH;
    return true;
  }

  #tunnelReleased(arena: Uint8Array, offset: number, length: number): void {
    const slots = this.#released;
    if (this.#releasedSpans.count === slots.slotCount) this.#send(slots.bytes, this.#releasedSpans);
    const i = this.#releasedSpans.count;
    const at = slots.offset(i);
    const dst = slots.bytes;
    if (length > slots.capacity) return;
    for (let k = 0; k < length; k++) dst[at + k] = arena[offset + k]!;
    this.#tunnel(dst, at, length, this.#releaseOwner, this.#releasedSpans);
  }

  #send(bytes: Uint8Array, spans: SpanList): void {
    if (spans.count === 0) return;
    const accepted = this.#o.lan.sendBatch(bytes, spans.pairs, spans.count);
    if (accepted < spans.count) this.#o.traffic.inc('lan-tx-refused', spans.count - accepted);
    spans.clear();
  }
}
