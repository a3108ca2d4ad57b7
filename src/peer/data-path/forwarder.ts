/**
 * The peer's data path: the far end of a host's SAs on a machine with its
 * own public address (the testbed's server).
 *
 *   stack -> TUN (route to the remote shared address) -> IpsecEngine.outbound -> raw sender -> WAN
 *   WAN -> raw receivers (protocols 50, 51) -> IpsecEngine.inbound -> TUN -> stack
 *
 * What the SPD bypasses outbound leaves as it came. Inbound, only ESP and
 * AH reach the raw receivers; clear traffic is the kernel's own business.
 * Packets are processed in their slots (the TUN's headroom takes the ESP
 * header, the slot's tail the trailer); nothing is allocated per packet.
 */
import type { IoStats, PacketDevice } from '../../io/types.ts';
import { SpanList } from '../../io/slots.ts';
import { INBOUND_VERDICTS, OUTBOUND_VERDICTS, PacketSpan } from '../../ipsec/index.ts';
import type { IpsecEngine } from '../../ipsec/index.ts';

export interface PeerDevices {
  /** The TUN device the kernel routes the remote shared address into. */
  readonly tun: PacketDevice;
  /** IPPROTO_RAW sender out of the WAN. */
  readonly wan: PacketDevice;
  /** Raw receivers of protocol 50 and 51 (ESP, AH). */
  readonly receivers: readonly PacketDevice[];
}

export class PeerForwarder {
  readonly #engine: IpsecEngine;
  readonly #d: PeerDevices;
  readonly #span = new PacketSpan();
  readonly #toWan: SpanList;
  readonly #toTun: SpanList;
  /** Packets the devices refused (queue full, no route ...), by direction. */
  txRefused = { outbound: 0, inbound: 0 };

  constructor(engine: IpsecEngine, devices: PeerDevices) {
    this.#engine = engine;
    this.#d = devices;
    this.#toWan = new SpanList(devices.tun.slots.slotCount);
    this.#toTun = new SpanList(Math.max(...devices.receivers.map((r) => r.slots.slotCount)));
  }

  get engine(): IpsecEngine {
    return this.#engine;
  }

  start(): void {
    const { tun, receivers } = this.#d;
    tun.onBatch((n) => this.#outbound(n));
    for (const r of receivers) r.onBatch((n) => this.#inbound(r, n));
  }

  stop(): void {
    this.#d.tun.onBatch(null);
    for (const r of this.#d.receivers) r.onBatch(null);
  }

  #outbound(count: number): void {
    const slots = this.#d.tun.slots;
    const list = this.#toWan;
    const span = this.#span;
    list.count = 0;
    for (let i = 0; i < count; i++) {
      const start = i * slots.slotSize;
      span.set(slots.offset(i), slots.lengths[i]!, start, start + slots.slotSize);
      const v = this.#engine.outbound(slots.bytes, span);
      if (v === 'protected' || v === 'bypass') list.push(span.offset, span.length);
    }
    if (list.count > 0)
      this.txRefused.outbound += list.count - this.#d.wan.sendBatch(slots.bytes, list.pairs, list.count);
  }

  #inbound(from: PacketDevice, count: number): void {
    const slots = from.slots;
    const list = this.#toTun;
    const span = this.#span;
    list.count = 0;
    for (let i = 0; i < count; i++) {
      const off = slots.offset(i);
      span.set(off, slots.lengths[i]!, off, off + slots.lengths[i]!);
      const v = this.#engine.inbound(slots.bytes, span);
      if (v === 'accepted') list.push(span.offset, span.length);
    }
    if (list.count > 0)
      this.txRefused.inbound += list.count - this.#d.tun.sendBatch(slots.bytes, list.pairs, list.count);
  }

  /** Engine verdicts and device counters under flat names, for status. */
  counters(): Record<string, number> {
    const out: Record<string, number> = {};
    const c = this.#engine.counters;
    for (const v of OUTBOUND_VERDICTS) out[`ipsec.outbound.${v}`] = c.outbound[v];
    for (const v of INBOUND_VERDICTS) out[`ipsec.inbound.${v}`] = c.inbound[v];
    out['tx-refused.outbound'] = this.txRefused.outbound;
    out['tx-refused.inbound'] = this.txRefused.inbound;
    const io: Record<string, IoStats> = { tun: this.#d.tun.stats(), wan: this.#d.wan.stats() };
    for (const r of this.#d.receivers) io[r.name] = r.stats();
    for (const [name, s] of Object.entries(io))
      for (const [k, v] of Object.entries(s)) if (typeof v === 'number') out[`io.${name}.${k}`] = v;
    return out;
  }
}
