/**
 * The host agent's choice of data path (docs/ebpf.md, "The host"): with
 * `datapath: ebpf` the BPF programs are attached to the TUN's egress and
 * the LAN interface's ingress beside the agent's own path, and programmed
 * from the leases (native mode: the leased ports) and from the FIG. 11
 * table (translate mode: the rows in use both ways). When they cannot run,
 * the agent says why in one log line and forwards everything itself, as it
 * does in every case for what the programs leave to it.
 */
import { performance } from 'node:perf_hooks';
import type { HostConfig } from '../../config/host-config.ts';
import { BpfUnavailableError } from '../../io/bpf.ts';
import type { HeldBlock } from '../../pap/held-block.ts';
import type { HostLeases, HostLeasesListener } from '../../pap/host-leases.ts';
import type { Clock } from '../../util/clock.ts';
import type { Logger } from '../../util/log.ts';
import { HostFastPath } from '../data-path/ebpf/host-fast-path.ts';
import { HOST_PASSES } from '../data-path/ebpf/host-layout.ts';
import type { SpttObserver } from '../data-path/translation/sptt.ts';

/** What status and metrics say about the data path. */
export interface HostDataPath {
  /** The fast path, also after it failed and detached (its counters stay); undefined on the TUN path alone. */
  readonly fast: HostFastPath | undefined;
  /** One line for `distnat status`: which path forwards, and why not the other. */
  describe(): string;
  /** Translate mode with the fast path: what the FIG. 11 table tells of the rows it hands over. */
  readonly observer: SpttObserver | undefined;
  /** Stops programming and detaches the programs (idempotent); the agent forwards everything after it. */
  close(): void;
}

export interface OpenHostDataPathOptions {
  readonly config: HostConfig;
  readonly sharedAddress: number;
  readonly lanAddress: number;
  readonly routerAddress: number;
  /** undefined when the caller handed in its own devices: no fast path then. */
  readonly lanInterface: string | undefined;
  readonly tunMtu: number;
  readonly lanMtu: number;
  /** The agent protects and verifies (manual keying or IKE): the programs leave every packet to it. */
  readonly ipsec: boolean;
  readonly leases: HostLeases;
  readonly clock: Clock;
  readonly log: Logger;
}

/**
 * Opens the fast path when the configuration asks for it and it can run,
 * and makes the leases (and, translating, the FIG. 11 table) program it.
 * Call it before anything else listens to `leases`: a lost block then
 * leaves the maps before anything else hears of it, and so before the
 * agent lets go of it (the invalidate, the kernel's port range). Never throws.
 */
export function openHostDataPath(o: OpenHostDataPathOptions): HostDataPath {
  const { config, log } = o;
  const tunOnly = (why: string): HostDataPath => ({
    fast: undefined,
    observer: undefined,
    describe: () => `TUN (${why})`,
    close: () => {},
  });
  if (config.datapath === 'tun') return tunOnly('datapath: tun');
  if (o.lanInterface === undefined) return tunOnly('devices given by the caller');
  if (config.pcap !== undefined) {
    log.warn(
      'eBPF data path off while capturing: the capture sees only what the agent forwards; forwarding in the agent',
    );
    return tunOnly('pcap');
  }
  let failure: Error | undefined;
  let fast: HostFastPath;
  try {
    fast = HostFastPath.open({
      sharedAddress: o.sharedAddress,
      lanAddress: o.lanAddress,
      routerAddress: o.routerAddress,
      lanInterface: o.lanInterface,
      tunInterface: config.tun,
      mode: config.mode,
      ipsec: o.ipsec,
      lanMtu: o.lanMtu,
      tunMtu: o.tunMtu,
      onFailure: (e) => {
        failure = e;
        log.error(`eBPF data path failed and detached: ${e.message}; forwarding in the agent from now on`);
      },
    });
  } catch (e) {
    const reason = e instanceof BpfUnavailableError ? e.reason : 'rejected';
    log.warn(`eBPF data path unavailable (${reason}): ${(e as Error).message}; forwarding in the agent`);
    return tunOnly(`eBPF unavailable: ${reason}`);
  }

  const listener = leaseListener(fast);
  o.leases.addListener(listener);
  // Once closed, the observer's calls change nothing and its stamps only age.
  const observer = config.mode === 'translate' ? translationObserver(fast, o.clock) : undefined;
  log.info('eBPF data path attached', {
    tun: config.tun,
    lan: o.lanInterface,
    mode: config.mode,
    ...(o.ipsec ? { ipsec: 'every packet to the agent' } : {}),
  });
  const where = `tc on ${config.tun} egress and ${o.lanInterface} ingress${o.ipsec ? ', IPsec in the agent' : ''}`;
  let closed = false;
  return {
    fast,
    observer,
    describe: () =>
      closed
        ? 'TUN (eBPF detached: stopping)'
        : failure === undefined
          ? `eBPF (${where}) + TUN`
          : `TUN (eBPF failed: ${failure.message})`,
    close: () => {
      if (closed) return;
      closed = true;
      o.leases.removeListener(listener);
      fast.close();
    },
  };
}

const portBlock = (b: HeldBlock): { kind: 'port' | 'spi'; first: number; count: number } => ({
  kind: b.kind,
  first: b.lowest,
  count: b.count,
});

/**
 * Leased port blocks into the maps (native mode forwards from them; either
 * mode drops the translations of a lost one). Renewals change nothing.
 */
function leaseListener(fast: HostFastPath): HostLeasesListener {
  return {
    onBlockAdded: (b) => fast.onLeaseAdded(portBlock(b)),
    onBlockLost: (b) => fast.onLeaseRemoved(portBlock(b)),
  };
}

/** CLOCK_MONOTONIC in ms (the kernel's stamps' clock) minus performance.now(), measured once. */
const MONOTONIC_OFFSET_MS = Number(process.hrtime.bigint()) / 1e6 - performance.now();

/**
 * Translate mode: rows used both ways are handed to the programs, taken
 * back before they go, and their idle timers count the programs' last use
 * (the kernel's monotonic stamp, converted to the table's clock).
 */
export function translationObserver(
  fast: Pick<HostFastPath, 'addTranslation' | 'removeTranslation' | 'lastUseNs'>,
  clock: Clock,
  monotonicMs: () => number = () => performance.now() + MONOTONIC_OFFSET_MS,
): SpttObserver {
  return {
    established: (protocol, local, leased) => fast.addTranslation(protocol, local, leased),
    removed: (protocol, local, leased) => fast.removeTranslation(protocol, local, leased),
    lastUse: (protocol, leased) => {
      const ns = fast.lastUseNs(protocol, leased);
      if (ns === 0) return -Infinity;
      return clock.now() - Math.max(0, monotonicMs() - ns / 1e6);
    },
  };
}

/** The fast path's counters as status and metrics name them. */
export interface FastPathCounts {
  /** Its own share of the agent's `packets.outbound` and `packets.inbound`. */
  readonly packets: { readonly outbound: number; readonly inbound: number };
  readonly bytes: { readonly outbound: number; readonly inbound: number };
  /** A helper failed after the packet was changed: dropped. */
  readonly error: number;
  /** Left to the agent unchanged, by direction and reason. */
  readonly pass: { readonly out: Record<string, number>; readonly in: Record<string, number> };
  readonly active: boolean;
}

/** Reads the fast path's per-CPU record now; undefined on the TUN path alone or once closed. */
export function fastPathCounts(fast: HostFastPath | undefined): FastPathCounts | undefined {
  if (fast === undefined) return undefined;
  let c: Record<string, number>;
  try {
    c = fast.counters();
  } catch {
    // closed while stopping: the agent's own counts are still true
    return undefined;
  }
  const pass = { out: {} as Record<string, number>, in: {} as Record<string, number> };
  for (const dir of ['out', 'in'] as const)
    for (const reason of HOST_PASSES) pass[dir][reason] = c[`fastpath.pass.${dir}.${reason}`] ?? 0;
  return {
    packets: { outbound: c['fastpath.out-packets'] ?? 0, inbound: c['fastpath.in-packets'] ?? 0 },
    bytes: { outbound: c['fastpath.out-bytes'] ?? 0, inbound: c['fastpath.in-bytes'] ?? 0 },
    error: c['fastpath.error'] ?? 0,
    pass,
    active: fast.active,
  };
}
