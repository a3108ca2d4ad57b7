/**
 * The router's choice of data path (docs/ebpf.md): with `datapath: ebpf`
 * the BPF programs are loaded and attached beside the TUN path, and the
 * data path's tables made to program their maps; when that cannot be done
 * the router says why in one log line and forwards on the TUN path alone,
 * which runs in every case.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { RouterConfig } from '../../config/router-config.ts';
import { BpfUnavailableError } from '../../io/bpf.ts';
import type { Logger } from '../../util/log.ts';
import { RouterFastPath } from '../data-path/ebpf/fast-path.ts';
import type { OutboundSaSource } from '../data-path/outbound-sa.ts';
import type { RouterTables } from '../data-path/tables/router-tables.ts';
import type { RouterForwarding } from '../data-path/forwarder.ts';
import type { FastPass } from '../data-path/ebpf/layout.ts';

/** What status and metrics say about the data path. */
export interface RouterDataPath {
  /** The fast path, also after it failed and detached (its counters stay); undefined on the TUN path alone. */
  readonly fast: RouterFastPath | undefined;
  /** One line for `distnat status`: which path forwards, and why not the other. */
  readonly describe: () => string;
}

/** The interface of the IPv4 default route (/proc/net/route), or undefined. */
export function defaultRouteInterface(routes?: string): string | undefined {
  let text = routes;
  try {
    text ??= readFileSync('/proc/net/route', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // Iface Destination Gateway Flags RefCnt Use Metric Mask ...; RTF_UP is flag 1.
    if (f.length >= 8 && f[1] === '00000000' && f[7] === '00000000' && (Number.parseInt(f[3]!, 16) & 1) === 1)
      return f[0];
  }
  return undefined;
}

/**
 * The WAN interface: the configured one, else the default route's, else the
 * one interface that is neither loopback, the LAN's nor the TUN.
 */
export function wanInterfaceOf(config: RouterConfig, lanInterface: string): string | undefined {
  if (config.wanInterface !== undefined) return config.wanInterface;
  const byRoute = defaultRouteInterface();
  if (byRoute !== undefined) return byRoute;
  let names: string[];
  try {
    names = readdirSync('/sys/class/net');
  } catch {
    return undefined;
  }
  const others = names.filter((n) => n !== 'lo' && n !== lanInterface && n !== config.tun);
  return others.length === 1 ? others[0] : undefined;
}

export interface OpenDataPathOptions {
  readonly config: RouterConfig;
  /** In the configuration's order: an address's index makes its port slots. */
  readonly sharedAddresses: readonly number[];
  readonly lanAddress: number;
  /** undefined when the caller handed in its own devices: no fast path then. */
  readonly lanInterface: string | undefined;
  readonly lanMtu: number;
  readonly tables: RouterTables;
  readonly log: Logger;
  readonly closers: (() => void | Promise<void>)[];
}

/**
 * Opens the fast path when the configuration asks for it and it can run,
 * and makes the tables program it. Never throws: a fast path that cannot
 * start is one warning, and the TUN path forwards everything.
 */
export function openRouterDataPath(o: OpenDataPathOptions): RouterDataPath {
  const { config, log } = o;
  const tunOnly = (why: string): RouterDataPath => ({ fast: undefined, describe: () => `TUN (${why})` });
  if (config.datapath === 'tun') return tunOnly('datapath: tun');
  if (o.lanInterface === undefined) return tunOnly('devices given by the caller');
  if (config.pcap !== undefined) {
    log.warn(
      'eBPF data path off while capturing: the capture sees only what the TUN path forwards; forwarding on the TUN path',
    );
    return tunOnly('pcap');
  }
  const unavailable = (reason: string, message: string): RouterDataPath => {
    log.warn(`eBPF data path unavailable (${reason}): ${message}; forwarding on the TUN path`);
    return tunOnly(`eBPF unavailable: ${reason}`);
  };
  const wanInterface = wanInterfaceOf(config, o.lanInterface);
  if (wanInterface === undefined)
    return unavailable(
      'no-interface',
      'no default route and more than one candidate for the WAN interface: set wanInterface (--wan-interface)',
    );
  let failure: Error | undefined;
  let fast: RouterFastPath;
  try {
    fast = RouterFastPath.open({
      sharedAddresses: o.sharedAddresses,
      lanAddress: o.lanAddress,
      lanInterface: o.lanInterface,
      wanInterface,
      tunInterface: config.tun,
      lanMtu: o.lanMtu,
      spiShift: granuleShift(config.pap.spiBlockSize),
      onFailure: (e) => {
        failure = e;
        o.tables.setMirror(undefined);
        log.error(`eBPF data path failed and detached: ${e.message}; forwarding on the TUN path from now on`);
      },
    });
  } catch (e) {
    if (e instanceof BpfUnavailableError) return unavailable(e.reason, e.message);
    return unavailable('rejected', (e as Error).message);
  }
  o.tables.setMirror(fast);
  o.closers.push(() => {
    o.tables.setMirror(undefined);
    fast.close();
  });
  const where = `${fast.hook} on ${o.lanInterface} and ${wanInterface} ingress`;
  log.info('eBPF data path attached', { lan: o.lanInterface, wan: wanInterface, hook: fast.hook });
  return {
    fast,
    describe: () =>
      failure === undefined ? `eBPF (${where}) + TUN` : `TUN (eBPF failed: ${failure.message})`,
  };
}

/**
 * The fast path's record of outbound SAs, for the slow path's ICMP errors
 * about ESP/AH it did not forward itself; a map that cannot be read any
 * more answers "unknown" rather than throwing into the packet path.
 */
export function fastPathSas(dataPath: RouterDataPath): OutboundSaSource | undefined {
  const fast = dataPath.fast;
  if (fast === undefined) return undefined;
  return {
    ownerOf: (remote, protocol, spi) => {
      try {
        return fast.sas.ownerOf(remote, protocol, spi);
      } catch {
        return 0;
      }
    },
  };
}

/**
 * spi_blocks is keyed by spi >> shift: the largest power of two that divides
 * the SPI block size, so aligned blocks fill whole granules (64 -> 6).
 */
function granuleShift(blockSize: number): number {
  let shift = 0;
  while (shift < 16 && blockSize % 2 ** (shift + 1) === 0) shift++;
  return shift;
}

/** Drops and traffic of both data paths, added under the slow path's names; what the fast path passed on. */
export interface RouterCounts {
  readonly drops: Record<string, number>;
  readonly traffic: Record<string, number>;
  /** The fast path's own share of `traffic` (what it carried without the TUN); undefined on the TUN path alone. */
  readonly fastTraffic: Record<string, number> | undefined;
  /** By direction (lan, wan) and reason; undefined on the TUN path alone. */
  readonly pass:
    { readonly lan: Record<FastPass, number>; readonly wan: Record<FastPass, number> } | undefined;
}

/** Reads both paths' counters now (one system call for the fast path's per-CPU record). */
export function routerCounts(forwarder: RouterForwarding, fast: RouterFastPath | undefined): RouterCounts {
  const drops: Record<string, number> = forwarder.drops.snapshot();
  const traffic: Record<string, number> = forwarder.traffic.snapshot();
  if (fast === undefined) return { drops, traffic, fastTraffic: undefined, pass: undefined };
  let c;
  try {
    c = fast.counters.read();
  } catch {
    // closed while stopping: the slow path's own counts are still true
    return { drops, traffic, fastTraffic: undefined, pass: undefined };
  }
  for (const [k, v] of Object.entries(c.traffic)) traffic[k] = (traffic[k] ?? 0) + v;
  for (const [k, v] of Object.entries(c.drops)) drops[k] = (drops[k] ?? 0) + v;
  return { drops, traffic, fastTraffic: c.traffic, pass: c.pass };
}

/** Carries the fast path's FIG. 12 stamps into the IAPTT (a full pass: a few hundred microseconds). */
export function feedIaptt(fast: RouterFastPath | undefined, tables: RouterTables, now: number): void {
  if (fast?.active !== true) return;
  fast.lastSeen.feed(tables.iaptt, (slot) => tables.ownership.portOwner(slot), now, fast.lastSeen.entries);
}
