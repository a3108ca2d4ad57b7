/**
 * The host agent's eBPF fast path (native-setup/bpf/host.bpf.c), opened by
 * the agent with `datapath: ebpf` (src/host/daemon/fast-path.ts): loads the
 * object, attaches the outbound program to the TUN's egress and the inbound
 * one to the LAN interface's ingress, keeps the heartbeat, and programs its
 * maps:
 *
 * - native mode: the leased ports (lease events), so the kernel's own
 *   datagrams from them are tunnelled without crossing the TUN;
 * - translate mode: the established FIG. 11 rows handed over (the
 *   SourcePortTranslationTable's observer: addTranslation once a row is in
 *   use both ways, removeTranslation before it goes), so only a flow's
 *   first packets and its control segments reach the agent; lastUseNs()
 *   gives the agent the rows' last use for its idle timers.
 *
 * The agent stays in charge: everything the programs do not take reaches
 * the TUN and the raw socket unchanged. Failures follow RouterFastPath:
 * BpfUnavailableError at open (run on the TUN path), detach on a failed map
 * update, heartbeat grace when the process is gone.
 */
import type { Attachment, BpfObject } from '../../../io/bpf.ts';
import {
  attachTc,
  BpfUnavailableError,
  bpfObjectPath,
  interfaceIndex,
  openBpfObject,
} from '../../../io/bpf.ts';
import { interfaceMtu } from '../../../io/interfaces.ts';
import {
  encodeHostConfig,
  HOST_CONFIG_BYTES,
  HOST_COUNTER_SLOTS,
  HOST_OBJECT,
  HOST_PASSES,
  HOST_PLANE_OF_PROTOCOL,
  HOST_TRAFFIC,
  HostMap,
  HostProgram,
} from './host-layout.ts';
import type { HostFastPathConfig } from './host-layout.ts';

export interface HostFastPathOptions {
  readonly sharedAddress: number;
  readonly lanAddress: number;
  readonly routerAddress: number;
  readonly lanInterface: string;
  readonly tunInterface: string;
  readonly mode: 'native' | 'translate';
  /** The agent runs IPsec: the programs leave every packet to it (for now). */
  readonly ipsec?: boolean;
  readonly lanMtu?: number;
  readonly tunMtu?: number;
  readonly heartbeatMs?: number;
  readonly graceMs?: number;
  readonly onFailure?: (error: Error) => void;
  readonly objectPath?: string;
}

const PORTS = 65536;
const monotonicNs = (): number => Number(process.hrtime.bigint());

export class HostFastPath {
  readonly mode: 'native' | 'translate';
  readonly #object: BpfObject;
  #config: HostFastPathConfig;
  readonly #configBytes = new Uint8Array(HOST_CONFIG_BYTES);
  readonly #key = new Uint8Array(4);
  readonly #keyView = new DataView(this.#key.buffer);
  readonly #heartbeatMs: number;
  readonly #graceMs: number;
  readonly #onFailure: ((e: Error) => void) | undefined;
  readonly #lastUse: Uint32Array;
  readonly #keys = new Uint8Array(PORTS * 4);
  readonly #flags = new Uint8Array(PORTS);
  // Reused: translations change once per flow, from the agent's packet path.
  readonly #value2 = new Uint8Array(2);
  readonly #value2View = new DataView(this.#value2.buffer);
  readonly #counterValue: Uint8Array;
  readonly #sums = new Float64Array(HOST_COUNTER_SLOTS);
  #attachments: Attachment[] = [];
  #timer: NodeJS.Timeout | undefined;
  #failure: Error | undefined;
  #closed = false;

  private constructor(object: BpfObject, config: HostFastPathConfig, o: HostFastPathOptions) {
    this.#object = object;
    this.#config = config;
    this.mode = o.mode;
    this.#heartbeatMs = o.heartbeatMs ?? 1000;
    this.#graceMs = Math.max(o.graceMs ?? 10_000, 2 * this.#heartbeatMs);
    this.#onFailure = o.onFailure;
    this.#lastUse = new Uint32Array(object.map(HostMap.lastUse).mmap(false));
    this.#counterValue = new Uint8Array(object.map(HostMap.counters).valueBytes);
  }

  static open(o: HostFastPathOptions): HostFastPath {
    const index = (name: string): number => {
      const i = interfaceIndex(name);
      if (i === undefined) throw new BpfUnavailableError('no-interface', `no interface ${name} here`);
      return i;
    };
    const config: HostFastPathConfig = {
      aliveUntilNs: 0n,
      sharedAddress: o.sharedAddress,
      lanAddress: o.lanAddress,
      routerAddress: o.routerAddress,
      lanIfindex: index(o.lanInterface),
      tunIfindex: index(o.tunInterface),
      lanMtu: o.lanMtu ?? interfaceMtu(o.lanInterface) ?? 1500,
      tunMtu: o.tunMtu ?? interfaceMtu(o.tunInterface) ?? 1480,
      mode: o.mode,
      ipsec: o.ipsec ?? false,
    };
    const object = openBpfObject(o.objectPath ?? bpfObjectPath(HOST_OBJECT));
    let fast: HostFastPath | undefined;
    try {
      fast = new HostFastPath(object, config, o);
      fast.#beat();
      fast.#attachments.push(attachTc(o.tunInterface, 'egress', object.program(HostProgram.out)));
      fast.#attachments.push(attachTc(o.lanInterface, 'ingress', object.program(HostProgram.in)));
      fast.#timer = setInterval(() => fast!.#beat(), fast.#heartbeatMs);
      fast.#timer.unref();
      return fast;
    } catch (e) {
      fast?.close();
      object.close();
      if (e instanceof BpfUnavailableError) throw e;
      throw new BpfUnavailableError(
        'rejected',
        `the host's eBPF data path could not start: ${(e as Error).message}`,
        {
          cause: e,
        },
      );
    }
  }

  /**
   * Encapsulates to another router from now on. Inbound from any other
   * router is passed to the agent, which accepts each of the host's routers.
   */
  setRouter(address: number): void {
    this.#config = { ...this.#config, routerAddress: address };
    this.#beat();
  }

  get failure(): Error | undefined {
    return this.#failure;
  }

  /** Attached and programmed: neither closed nor detached after a failure. */
  get active(): boolean {
    return !this.#closed && this.#failure === undefined;
  }

  /** Native mode: a leased port block, which the kernel's own sockets use as they are. */
  onLeaseAdded(lease: { kind: 'port' | 'spi'; first: number; count: number }): void {
    if (lease.kind === 'port') this.#guard(() => this.#setLeased(lease.first, lease.count, 1));
  }

  onLeaseRemoved(lease: { kind: 'port' | 'spi'; first: number; count: number }): void {
    if (lease.kind !== 'port') return;
    this.#guard(() => {
      this.#setLeased(lease.first, lease.count, 0);
      // Translations of ports that are no longer ours stop at once, both ways.
      for (const plane of [0, 1])
        for (let p = lease.first; p < lease.first + lease.count && p < PORTS; p++) {
          const local = this.#read(HostMap.inPort, plane * PORTS + p);
          if (local !== 0) this.#dropTranslation(plane, local, p);
        }
    });
  }

  /** Translate mode: a FIG. 11 row in use, (protocol, local port) <-> leased port. TCP and UDP only. */
  addTranslation(protocol: number, local: number, leased: number): void {
    const plane = HOST_PLANE_OF_PROTOCOL[protocol];
    if (plane === undefined) return;
    this.#guard(() => {
      // Inbound first: a reply may come as soon as the first translated datagram leaves.
      this.#write(HostMap.inPort, plane * PORTS + leased, leased === 0 ? 0 : local);
      this.#write(HostMap.outPort, plane * PORTS + local, leased);
    });
  }

  removeTranslation(protocol: number, local: number, leased: number): void {
    const plane = HOST_PLANE_OF_PROTOCOL[protocol];
    if (plane !== undefined) this.#guard(() => this.#dropTranslation(plane, local, leased));
  }

  /** The kernel's stamp (CLOCK_MONOTONIC ns) of the row's last fast-path use, 0 when none. */
  lastUseNs(protocol: number, leased: number): number {
    const plane = HOST_PLANE_OF_PROTOCOL[protocol];
    if (plane === undefined) return 0;
    const w = (plane * PORTS + (leased & 0xffff)) * 2;
    return this.#lastUse[w]! + this.#lastUse[w + 1]! * 2 ** 32;
  }

  /** Counters summed over CPUs: `packets.outbound|inbound` as the agent names them, and the passes. */
  counters(): Record<string, number> {
    const map = this.#object.map(HostMap.counters);
    const value = this.#counterValue;
    const sums = this.#sums;
    sums.fill(0);
    this.#keyView.setUint32(0, 0, true);
    if (map.lookup(this.#key, value)) {
      const v = new DataView(value.buffer);
      const stride = Math.ceil(map.info.valueSize / 8) * 8;
      for (let cpu = 0; cpu < value.length / stride; cpu++)
        for (let i = 0; i < HOST_COUNTER_SLOTS; i++) {
          const at = cpu * stride + i * 8;
          sums[i]! += v.getUint32(at, true) + v.getUint32(at + 4, true) * 2 ** 32;
        }
    }
    const out: Record<string, number> = {};
    let i = 0;
    for (const name of HOST_TRAFFIC) out[`fastpath.${name}`] = sums[i++]!;
    out['packets.outbound'] = out['fastpath.out-packets']!;
    out['packets.inbound'] = out['fastpath.in-packets']!;
    out['fastpath.error'] = sums[i++]!;
    for (const dir of ['out', 'in'])
      for (const name of HOST_PASSES) out[`fastpath.pass.${dir}.${name}`] = sums[i++]!;
    return out;
  }

  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    for (const a of this.#attachments.splice(0)) {
      try {
        a.detach();
      } catch {
        // the interface went, and the filter with it
      }
    }
    this.#object.close();
  }

  #dropTranslation(plane: number, local: number, leased: number): void {
    // Outbound first: the leased port stops being sent from before replies stop being let in.
    if (this.#read(HostMap.outPort, plane * PORTS + local) === leased)
      this.#write(HostMap.outPort, plane * PORTS + local, 0);
    if (this.#read(HostMap.inPort, plane * PORTS + leased) === local)
      this.#write(HostMap.inPort, plane * PORTS + leased, 0);
  }

  #setLeased(first: number, count: number, value: 0 | 1): void {
    const n = Math.max(0, Math.min(count, PORTS - first));
    const keys = new DataView(this.#keys.buffer);
    for (let i = 0; i < n; i++) keys.setUint32(i * 4, first + i, true);
    this.#flags.fill(value, 0, n);
    this.#object.map(HostMap.leased).updateBatch(this.#keys, this.#flags, n);
  }

  /** A u16 of out_port or in_port. */
  #read(map: string, slot: number): number {
    this.#keyView.setUint32(0, slot, true);
    if (!this.#object.map(map).lookup(this.#key, this.#value2)) return 0;
    return this.#value2View.getUint16(0, true);
  }

  #write(map: string, slot: number, v: number): void {
    this.#keyView.setUint32(0, slot, true);
    this.#value2View.setUint16(0, v, true);
    this.#object.map(map).update(this.#key, this.#value2);
  }

  #guard(f: () => void): void {
    if (this.#failure !== undefined || this.#closed) return;
    try {
      f();
    } catch (e) {
      this.#fail(e as Error);
    }
  }

  #beat(): void {
    if (this.#failure !== undefined) return;
    this.#writeConfig(BigInt(monotonicNs()) + BigInt(this.#graceMs) * 1_000_000n);
  }

  #writeConfig(aliveUntilNs: bigint): void {
    encodeHostConfig({ ...this.#config, aliveUntilNs }, this.#configBytes);
    this.#keyView.setUint32(0, 0, true);
    this.#object.map(HostMap.config).update(this.#key, this.#configBytes);
  }

  #fail(error: Error): void {
    this.#failure = error;
    try {
      this.#writeConfig(0n);
    } catch {
      // detaching is what counts
    }
    for (const a of this.#attachments.splice(0)) {
      try {
        a.detach();
      } catch {
        // gone already
      }
    }
    this.#onFailure?.(error);
  }
}
