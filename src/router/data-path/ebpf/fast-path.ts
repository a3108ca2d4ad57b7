/**
 * The router's eBPF fast path as one object: loads router.bpf.o, writes its
 * config, attaches its programs to the LAN and WAN interfaces (tc clsact
 * ingress by default), keeps a heartbeat, and offers the lease listener
 * that programs its maps, the counters and FIG. 12's stamps.
 *
 * The slow path keeps running beside it, unchanged: whatever the programs
 * leave alone reaches the raw socket and the TUN as before.
 *
 * Failure is never half-way. open() throws BpfUnavailableError when the
 * object cannot be loaded or attached (the daemon logs one line and stays on
 * the TUN path). After that, a map update that fails makes the fast path
 * detach itself (the maps could be behind the leases), and the heartbeat
 * makes the programs leave everything to the slow path within `graceMs`
 * when this process stops refreshing it (killed, hung): tc filters outlive
 * their process, and its maps must not outlive the leases they hold. While
 * the process is gone no lease changes, so the grace can be generous; it
 * must outlast the longest stall of a busy event loop.
 */
import { readFileSync } from 'node:fs';
import type { Attachment, BpfObject, BpfProgramInfo } from '../../../io/bpf.ts';
import {
  attachTc,
  attachXdp,
  BpfUnavailableError,
  bpfObjectPath,
  interfaceIndex,
  openBpfObject,
  XdpMode,
} from '../../../io/bpf.ts';
import { interfaceMtu } from '../../../io/interfaces.ts';
import { FastPathCounters } from './fast-path-counters.ts';
import { FastPathLastSeen, monotonicNs } from './fast-path-last-seen.ts';
import type { MonotonicNs } from './fast-path-last-seen.ts';
import { FastPathSas } from './fast-path-sas.ts';
import type { FastPathAdd, FastPathRemove, LeaseBlockEvent } from './fast-path-tables.ts';
import { FastPathTables } from './fast-path-tables.ts';
import { FastPathWithdrawn } from './fast-path-withdrawn.ts';
import type { SpiRange } from './fast-path-withdrawn.ts';
import {
  CONFIG_BYTES,
  encodeConfig,
  MAX_SHARED,
  PLANES,
  PORTS,
  ROUTER_OBJECT,
  RouterMap,
  RouterProgram,
} from './layout.ts';
import type { FastPathConfig } from './layout.ts';

export interface RouterFastPathOptions {
  /** 1 to MAX_SHARED, in the configuration's order: an address's index makes its port slots (util/block.ts). */
  readonly sharedAddresses: readonly number[];
  readonly lanAddress: number;
  readonly lanInterface: string;
  /** Where datagrams for the shared addresses come in, and hosts' datagrams go out. */
  readonly wanInterface: string;
  /** The slow path's TUN: its routing and forwarding setting apply to what the fast path forwards. */
  readonly tunInterface: string;
  /** Default: the interfaces' MTUs. */
  readonly lanMtu?: number;
  readonly tunMtu?: number;
  /** tc clsact (default) or XDP (native). */
  readonly hook?: 'tc' | 'xdp';
  /** spi_blocks is keyed by spi >> spiShift. Default 6 (64 SPIs, pap.spiBlockSize's default). */
  readonly spiShift?: number;
  /**
   * Map sizes. Defaults: 65536 granules (4M SPIs at 64), 65536 unaligned SPIs,
   * 65536 hosts (these take memory as they fill), 16384 outbound SAs (an LRU,
   * allocated at once).
   */
  readonly maxSpiGranules?: number;
  readonly maxExactSpis?: number;
  readonly maxHosts?: number;
  readonly maxOutboundSas?: number;
  /** 64-SPI granules of withdrawn SPIs (default 65536; they take memory as they fill). */
  readonly maxWithdrawnGranules?: number;
  /** How often the heartbeat is written (default 1000 ms)... */
  readonly heartbeatMs?: number;
  /** ...and how long the programs trust the last one (default 10 s). */
  readonly graceMs?: number;
  /** Told once when the fast path detached itself after a failure. */
  readonly onFailure?: (error: Error) => void;
  readonly objectPath?: string;
  readonly monotonic?: MonotonicNs;
}

function macOf(name: string): Uint8Array | undefined {
  try {
    const text = readFileSync(`/sys/class/net/${name}/address`, 'utf8').trim();
    const bytes = text.split(':').map((h) => Number.parseInt(h, 16));
    return bytes.length === 6 && bytes.every((b) => b >= 0 && b <= 255) ? Uint8Array.from(bytes) : undefined;
  } catch {
    return undefined;
  }
}

export class RouterFastPath {
  readonly tables: FastPathTables;
  readonly counters: FastPathCounters;
  readonly lastSeen: FastPathLastSeen;
  readonly sas: FastPathSas;
  readonly withdrawn: FastPathWithdrawn;
  readonly hook: 'tc' | 'xdp';
  readonly #object: BpfObject;
  readonly #config: FastPathConfig;
  readonly #configBytes = new Uint8Array(CONFIG_BYTES);
  readonly #key0 = new Uint8Array(4);
  readonly #mono: MonotonicNs;
  readonly #heartbeatMs: number;
  readonly #graceMs: number;
  readonly #onFailure: ((error: Error) => void) | undefined;
  #attachments: Attachment[] = [];
  #programs: string[] = [];
  #timer: NodeJS.Timeout | undefined;
  #failure: Error | undefined;

  private constructor(object: BpfObject, config: FastPathConfig, o: RouterFastPathOptions) {
    this.#object = object;
    this.#config = config;
    this.#mono = o.monotonic ?? monotonicNs;
    this.#heartbeatMs = o.heartbeatMs ?? 1000;
    this.#graceMs = Math.max(o.graceMs ?? 10_000, 2 * this.#heartbeatMs);
    this.#onFailure = o.onFailure;
    this.hook = o.hook ?? 'tc';
    this.tables = new FastPathTables(
      {
        portOwner: object.map(RouterMap.portOwner),
        spiBlocks: object.map(RouterMap.spiBlocks),
        spiExact: object.map(RouterMap.spiExact),
        holders: object.map(RouterMap.holders),
        lastSeen: object.map(RouterMap.lastSeen),
      },
      { spiShift: config.spiShift },
    );
    this.counters = new FastPathCounters(object.map(RouterMap.counters));
    this.lastSeen = new FastPathLastSeen(object.map(RouterMap.lastSeen), this.#mono);
    this.sas = new FastPathSas(object.map(RouterMap.outboundSa), this.#mono);
    this.withdrawn = new FastPathWithdrawn(object.map(RouterMap.withdrawnSpis));
  }

  /**
   * Loads and attaches. The maps start empty: feed the leases in (onLeaseAdded,
   * or the lease table's listener replay) right after; until then every
   * datagram goes to the slow path as it finds no owner, or is refused as
   * spoofed-port as the slow path would refuse it (which knows no more).
   */
  static open(o: RouterFastPathOptions): RouterFastPath {
    const index = (name: string): number => {
      const i = interfaceIndex(name);
      if (i === undefined) throw new BpfUnavailableError('no-interface', `no interface ${name} here`);
      return i;
    };
    const lanIfindex = index(o.lanInterface);
    const wanIfindex = index(o.wanInterface);
    const tunIfindex = index(o.tunInterface);
    const lanMtu = o.lanMtu ?? interfaceMtu(o.lanInterface) ?? 1500;
    const tunMtu = o.tunMtu ?? interfaceMtu(o.tunInterface) ?? 1480;
    const spiShift = o.spiShift ?? 6;
    const addresses = o.sharedAddresses.length;
    if (addresses < 1 || addresses > MAX_SHARED)
      throw new BpfUnavailableError(
        'rejected',
        `the eBPF data path serves 1 to ${MAX_SHARED} shared addresses, not ${addresses}`,
      );
    const object = openBpfObject(o.objectPath ?? bpfObjectPath(ROUTER_OBJECT), {
      maxEntries: {
        // Every address's ports and their FIG. 12 stamps: arrays of 0.5 and 1.5 MiB of kernel memory per address.
        [RouterMap.portOwner]: PORTS * addresses,
        [RouterMap.lastSeen]: PLANES * PORTS * addresses,
        [RouterMap.spiBlocks]: o.maxSpiGranules ?? 65536,
        [RouterMap.spiExact]: o.maxExactSpis ?? 65536,
        [RouterMap.holders]: o.maxHosts ?? 65536,
        [RouterMap.outboundSa]: o.maxOutboundSas ?? 16384,
        [RouterMap.withdrawnSpis]: o.maxWithdrawnGranules ?? 65536,
      },
    });
    let fast: RouterFastPath | undefined;
    try {
      const config: FastPathConfig = {
        aliveUntilNs: 0n,
        sharedAddresses: o.sharedAddresses,
        lanAddress: o.lanAddress,
        lanIfindex,
        wanIfindex,
        tunIfindex,
        spiShift,
        tunMtu,
        lanMtu,
        lanMac: macOf(o.lanInterface),
        wanMac: macOf(o.wanInterface),
      };
      fast = new RouterFastPath(object, config, o);
      fast.#beat();
      fast.#attach(o);
      fast.#timer = setInterval(() => fast!.#beat(), fast.#heartbeatMs);
      fast.#timer.unref();
      return fast;
    } catch (e) {
      fast?.close();
      object.close();
      if (e instanceof BpfUnavailableError) throw e;
      throw new BpfUnavailableError(
        'rejected',
        `the eBPF data path could not start: ${(e as Error).message}`,
        {
          cause: e,
        },
      );
    }
  }

  /** Why the fast path detached itself, if it did. */
  get failure(): Error | undefined {
    return this.#failure;
  }

  /** True while the programs are attached and fed. */
  get active(): boolean {
    return this.#attachments.length > 0 && this.#failure === undefined;
  }

  /** Lease listener (the router's numeric lease sink): programs the maps before it returns. */
  onLeaseAdded(lease: LeaseBlockEvent): FastPathAdd | 'failed' {
    if (this.#failure !== undefined) return 'failed';
    try {
      return this.tables.onLeaseAdded(lease);
    } catch (e) {
      this.#fail(e as Error);
      return 'failed';
    }
  }

  onLeaseRemoved(lease: LeaseBlockEvent): FastPathRemove | 'failed' {
    if (this.#failure !== undefined) return 'failed';
    try {
      return this.tables.onLeaseRemoved(lease);
    } catch (e) {
      this.#fail(e as Error);
      return 'failed';
    }
  }

  /** The withdrawn SPI ranges whole, after every change (RouterTables' mirror): programs the map before it returns. */
  onSpisWithdrawn(ranges: readonly SpiRange[]): 'synced' | 'failed' {
    if (this.#failure !== undefined) return 'failed';
    try {
      this.withdrawn.sync(ranges);
      return 'synced';
    } catch (e) {
      this.#fail(e as Error);
      return 'failed';
    }
  }

  /** Kernel memory of the maps (fdinfo memlock), by map and in total. */
  mapMemory(): { byMap: Record<string, number>; total: number } {
    const byMap: Record<string, number> = {};
    let total = 0;
    for (const name of Object.values(RouterMap)) {
      const bytes = this.#object.map(name).memoryBytes() ?? 0;
      byMap[name] = bytes;
      total += bytes;
    }
    return { byMap, total };
  }

  /** Program ids attached, for status and tests. */
  programIds(): number[] {
    return this.#attachments.map((a) => a.programId);
  }

  /** The attached programs as the kernel reports them (run time and count need BPF statistics on). */
  programInfo(): BpfProgramInfo[] {
    return this.#programs.map((name) => this.#object.program(name).info());
  }

  /** Detaches the programs (the slow path sees everything again), then closes the object. */
  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#detach();
    this.#object.close();
  }

  #attach(o: RouterFastPathOptions): void {
    const lan = o.lanInterface;
    const wan = o.wanInterface;
    if (this.hook === 'xdp') {
      this.#programs = [RouterProgram.lanXdp, RouterProgram.wanXdp];
      this.#attachments.push(attachXdp(lan, this.#object.program(RouterProgram.lanXdp), XdpMode.Native));
      this.#attachments.push(attachXdp(wan, this.#object.program(RouterProgram.wanXdp), XdpMode.Native));
    } else {
      this.#programs = [RouterProgram.lanTc, RouterProgram.wanTc];
      this.#attachments.push(attachTc(lan, 'ingress', this.#object.program(RouterProgram.lanTc)));
      this.#attachments.push(attachTc(wan, 'ingress', this.#object.program(RouterProgram.wanTc)));
    }
  }

  #detach(): void {
    for (const a of this.#attachments.splice(0)) {
      try {
        a.detach();
      } catch {
        // the interface went, and the filter with it
      }
    }
  }

  #beat(): void {
    if (this.#failure !== undefined) return;
    const aliveUntilNs = BigInt(this.#mono()) + BigInt(this.#graceMs) * 1_000_000n;
    this.#writeConfig(aliveUntilNs);
  }

  #writeConfig(aliveUntilNs: bigint): void {
    encodeConfig({ ...this.#config, aliveUntilNs }, this.#configBytes);
    this.#object.map(RouterMap.config).update(this.#key0, this.#configBytes);
  }

  #fail(error: Error): void {
    if (this.#failure !== undefined) return;
    this.#failure = error;
    try {
      this.#writeConfig(0n);
    } catch {
      // detaching below is what counts
    }
    this.#detach();
    this.#onFailure?.(error);
  }
}
