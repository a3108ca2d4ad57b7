/**
 * `distnat router` as a library: starts the PAP server, the lease table with
 * its journal, the forwarding loop on the TUN device and the LAN raw
 * sockets, the control socket and (optionally) metrics and a capture, and
 * stops them all again.
 *
 * Start order, and what each step refuses:
 *   1. the control socket must not answer already (another router, same run dir)
 *   2. the state directory lock (another router, same state dir)
 *   3. PAP's UDP socket on lanAddress:7032 (another router, same LAN address), then a
 *      probe to the LAN broadcast address (another router on another machine: lan-probe.ts)
 *   4. TUN and raw sockets (privilege), the lease table (journal recovery)
 *   5. forwarding, PAP over ICMP, the local CA and its endpoint (config pki), control socket,
 *      metrics, timers
 * A failure at any step closes what the earlier steps opened.
 */
import type { Server as HttpServer } from 'node:http';
import type { Server as NetServer } from 'node:net';
import { unlinkSync } from 'node:fs';
import type { DaemonStatus } from '../cli/commands/status.ts';
import { ExitCode, UserError } from '../cli/exit-codes.ts';
import type { RouterConfig } from '../config/router-config.ts';
import { controlSocketPath } from '../control/protocol.ts';
import { socketAnswers, startControlServer } from '../control/server.ts';
import { capture } from '../io/capture.ts';
import { LinkType, PcapWriter } from '../io/pcap.ts';
import type { PacketDevice, PacketSink } from '../io/types.ts';
import { newRegistry, startMetricsServer } from '../metrics/server.ts';
import { IcmpPapTransport } from '../pap/icmp-transport.ts';
import { FileStateDir, LeaseStore } from '../pap/lease-store.ts';
import { LeaseTable } from '../pap/lease-table.ts';
import { PapServer } from '../pap/pap-server.ts';
import { numericLeaseListener } from '../pap/router-link.ts';
import type { PapPeer } from '../pap/transport.ts';
import { UdpPapTransport } from '../pap/udp-transport.ts';
import type { Clock, Timer } from '../util/clock.ts';
import { SystemClock } from '../util/clock.ts';
import type { Logger } from '../util/log.ts';
import { ipv4FromString } from '../wire/ipv4.ts';
import { DROP_REASONS } from './counters.ts';
import { guarded, leaseLogger, logDrops } from './daemon-log.ts';
import { explainOpenError, openRouterDevices } from './devices.ts';
import { RouterForwarder } from './forwarder.ts';
import { LeaseHolders } from './lease-holders.ts';
import { LocalCaService } from './local-ca-service.ts';
import { routerStatus, type RouterStatusSources } from './router-status.ts';
import { registerRouterMetrics } from './router-metrics.ts';
import { StateLock } from './state-lock.ts';
import { lanBroadcastOf, listenForLanProbes, probeLanForRouter } from './lan-probe.ts';
import { RouterTables } from './tables/router-tables.ts';
import { withdrawHost } from './withdraw.ts';

/** Devices to use instead of opening the TUN and raw sockets (tests, or a caller that opened them). */
export interface RouterDevices {
  /** Read: datagrams for the shared address from the WAN. Written: inner datagrams for the WAN. */
  readonly tun: PacketDevice;
  /** Hosts' IP-in-IP (protocol 4). */
  readonly lanRx: PacketDevice;
  /** The router's IP-in-IP to hosts, and PAP over ICMP (IPPROTO_RAW). */
  readonly lanTx: PacketDevice;
  /** A protocol-1 raw socket for PAP over ICMP; without it ICMP PAP is off. */
  readonly icmpRx?: PacketDevice;
  readonly lanMtu?: number;
}

export interface StartRouterOptions {
  readonly clock?: Clock;
  readonly devices?: RouterDevices;
  /** Overrides pap.udpPort; 0 takes any free port (tests). */
  readonly papUdpPort?: number;
  /** Overrides pki.port; 0 takes any free port (tests). */
  readonly pkiPort?: number;
  /** Between maintenance passes (IAPTT sweep, fragment expiry). Default 1000 ms. */
  readonly tickMs?: number;
  /** Between drop summaries in the log. Default 10 s. */
  readonly dropLogMs?: number;
}

export interface RouterHandle {
  /** Stops everything, flushes the lease journal into a snapshot, removes the control socket and the lock. */
  stop(): Promise<void>;
  status(): DaemonStatus;
  readonly forwarder: RouterForwarder;
  readonly leases: LeaseTable;
  readonly pap: PapServer;
  /** Where PAP over UDP listens. */
  readonly papAddress: PapPeer;
  readonly controlSocket: string;
  /** host:port of the metrics endpoint, when serving. */
  readonly metricsAddress: string | undefined;
  /** The local CA and its endpoint, when the configuration has a pki section. */
  readonly pki: LocalCaService | undefined;
}

/** Closers run in reverse on stop or on a failed start. */
type Closer = () => void | Promise<void>;

export async function startRouter(
  config: RouterConfig,
  log: Logger,
  opts: StartRouterOptions = {},
): Promise<RouterHandle> {
  const clock = opts.clock ?? new SystemClock();
  const shared = ipv4FromString(config.sharedAddress);
  const lan = ipv4FromString(config.lanAddress);
  if (shared === undefined || lan === undefined)
    throw new UserError('sharedAddress and lanAddress must be IPv4 addresses', ExitCode.CONFIG);
  const closers: Closer[] = [];
  const unwind = async () => {
    for (const c of closers.splice(0).reverse()) {
      try {
        await c();
      } catch (e) {
        log.warn('error while stopping', { error: (e as Error).message });
      }
    }
  };

  try {
    const controlPath = controlSocketPath(config.runDir, 'router');
    if (await socketAnswers(controlPath))
      throw new UserError(
        `another router answers on ${controlPath}; stop it first, or give this one another --run-dir`,
        ExitCode.CANTCREATE,
      );

    const lock = StateLock.acquire(config.stateDir);
    closers.push(() => lock.release());
    if (lock.tookOverFrom !== undefined)
      log.warn('took over the lock of a router that is gone', { pid: lock.tookOverFrom, lock: lock.path });

    const udpPort = opts.papUdpPort ?? config.pap.udpPort;
    let udp: UdpPapTransport;
    try {
      udp = await UdpPapTransport.open({
        address: config.lanAddress,
        port: udpPort,
        onError: (e) => log.warn('PAP UDP socket error', { error: e.message }),
      });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE')
        throw new UserError(
          `UDP ${config.lanAddress}:${udpPort} is taken: another router (or PAP server) serves this LAN address`,
          ExitCode.CANTCREATE,
        );
      if (code === 'EADDRNOTAVAIL')
        throw new UserError(
          `the LAN address ${config.lanAddress} is not on any interface here: fix lanAddress / --lan-address`,
          ExitCode.CONFIG,
        );
      throw explainOpenError(`PAP's UDP socket ${config.lanAddress}:${udpPort}`, e);
    }
    closers.push(() => udp.close());

    // 3b. another router on the same LAN, on another machine (docs/router.md, "One router per LAN").
    const broadcast = opts.devices === undefined ? lanBroadcastOf(config.lanAddress) : undefined;
    if (broadcast !== undefined) {
      const other = await probeLanForRouter({ lanAddress: config.lanAddress, broadcast, port: udpPort });
      if (other !== undefined)
        throw new UserError(
          `another router answers PAP on this LAN at ${other.address}:${other.port ?? udpPort} ` +
            `(probe to ${broadcast}:${udpPort}): one router per LAN; stop that one first`,
          ExitCode.CANTCREATE,
        );
    }

    // Devices.
    let tun: PacketDevice;
    let lanRx: PacketDevice;
    let lanTx: PacketDevice;
    let lanMtu: number;
    let lanInterface: string | undefined;
    if (opts.devices !== undefined) {
      ({ tun, lanRx, lanTx } = opts.devices);
      lanMtu = opts.devices.lanMtu ?? 1500;
    } else {
      const d = openRouterDevices(config, log);
      closers.push(() => {
        d.tun.close();
        d.lanRx.close();
        d.lanTx.close();
      });
      ({ tun, lanRx, lanTx, lanMtu, lanInterface } = d);
    }
    if (config.pcap !== undefined) {
      let writer: PcapWriter;
      try {
        writer = PcapWriter.open(config.pcap, { linkType: LinkType.Raw });
      } catch (e) {
        throw new UserError(
          `cannot write the capture ${config.pcap}: ${(e as Error).message}`,
          ExitCode.CANTCREATE,
        );
      }
      closers.push(() => writer.close());
      tun = capture(tun, writer);
      lanRx = capture(lanRx, writer);
      lanTx = capture(lanTx, writer);
      log.info('capturing forwarded packets', { pcap: config.pcap });
    }

    // Leases, recovered from the journal.
    const table = new LeaseTable({
      clock,
      store: new LeaseStore(new FileStateDir(config.stateDir)),
      portRange: { min: config.pap.portRange[0], max: config.pap.portRange[1] },
      spiRange: { min: config.pap.spiFirst, max: 0xffffffff },
      blockSize: { port: config.pap.blockSize, spi: config.pap.spiBlockSize },
      maxPerHost: { port: config.pap.maxPortsPerHost, spi: config.pap.maxSpisPerHost },
      leaseSeconds: config.pap.leaseSeconds,
      quarantineSeconds: config.pap.quarantineSeconds,
    });
    closers.push(() => {
      try {
        table.compact();
      } catch (e) {
        log.warn('could not write the lease snapshot at stop (the journal has every change)', {
          error: (e as Error).message,
        });
      }
      table.close();
    });
    for (const note of table.recoveryNotes) log.warn('lease recovery', { note });
    const recovered = table.leases();
    log.info(table.recovered ? 'leases recovered' : 'no saved leases: new epoch', {
      epoch: table.epoch,
      leases: recovered.length,
      stateDir: config.stateDir,
    });

    // Forwarding tables follow the leases.
    const tables = new RouterTables();
    const holders = new LeaseHolders(tables);
    const sink = {
      onLeaseAdded: (b: Parameters<LeaseHolders['onLeaseAdded']>[0]) => {
        const change = holders.onLeaseAdded(b);
        if (change !== 'added' && change !== 'exists')
          log.error('lease not entered in the tables', { ...b, change });
      },
      onLeaseRemoved: (b: Parameters<LeaseHolders['onLeaseRemoved']>[0]) => {
        const change = holders.onLeaseRemoved(b);
        if (change !== 'removed') log.warn('lease not found in the tables on removal', { ...b, change });
      },
    };
    table.addListener(
      numericLeaseListener(sink, (l) => log.warn('lease of a non-IPv4 host not forwarded', { host: l.host })),
    );
    table.addListener(leaseLogger(log), false);

    const forwarder = new RouterForwarder({
      sharedAddress: shared,
      lanAddress: lan,
      tables,
      holders,
      tun,
      lan: lanTx,
      clock,
      lanMtu,
    });
    forwarder.attach(lanRx, tun);
    closers.push(() => forwarder.detach());

    // PAP.
    const pap = new PapServer(table);
    pap.attach(guarded(udp, log, 'udp'));
    if (broadcast !== undefined) {
      const stopListening = await listenForLanProbes({
        broadcast,
        port: udpPort,
        answer: (bytes, peer) => {
          const reply = pap.receive(bytes, peer);
          if (reply !== undefined) udp.send(reply, peer);
        },
      });
      closers.push(stopListening);
    }
    const transports: Record<string, object> = { udp: udp.counters };
    let icmp: IcmpPapTransport | undefined;
    if (config.pap.icmp) {
      try {
        icmp =
          opts.devices === undefined
            ? IcmpPapTransport.open({
                address: config.lanAddress,
                device: lanInterface!,
                sender: lanTx as PacketSink,
              })
            : opts.devices.icmpRx === undefined
              ? undefined
              : IcmpPapTransport.open({
                  address: config.lanAddress,
                  receiver: opts.devices.icmpRx,
                  sender: lanTx,
                });
      } catch (e) {
        throw explainOpenError('the raw ICMP socket for PAP', e);
      }
      if (icmp !== undefined) {
        const t = icmp;
        closers.push(() => t.close());
        pap.attach(guarded(t, log, 'icmp'));
        transports.icmp = t.counters;
      }
    }

    // The local CA (docs/router.md, "The local CA"): after the leases, whose state it reconciles with.
    let pki: LocalCaService | undefined;
    if (config.pki !== undefined) {
      const service = await LocalCaService.start({
        dir: config.pki.dir,
        lanAddress: config.lanAddress,
        port: opts.pkiPort ?? config.pki.port,
        wanAddress: config.pki.wanAddress,
        crlSeconds: config.pki.crlSeconds,
        leases: table,
        log,
        clock,
      });
      closers.push(() => service.close());
      pki = service;
    }

    const devices = { tun, 'lan-rx': lanRx, 'lan-tx': lanTx };
    const startedAt = clock.now();
    const sources: RouterStatusSources = {
      summary: {
        role: 'router',
        pid: process.pid,
        'shared address': config.sharedAddress,
        'LAN address': config.lanAddress + (lanInterface ? ` (${lanInterface})` : ''),
        tun: tun.name,
        PAP: `udp ${udp.local.address}:${udp.local.port}${icmp ? ', icmp types 32/33' : ''}`,
        'state dir': config.stateDir,
        recovered: table.recovered ? 'yes' : 'no (new epoch)',
      },
      clock,
      startedAt,
      forwarder,
      leases: table,
      holders,
      pap,
      transports,
      devices,
      pki,
    };
    const status = () => routerStatus(sources);

    const control: NetServer = await startControlServer(controlPath, status, {
      withdraw: async (host, kind) => {
        const outcome = await withdrawHost({ leases: table, pap, ca: pki }, host, kind);
        log.info('withdrawn on request', { ...outcome, blocks: outcome.blocks.length });
        return outcome;
      },
    });
    closers.push(
      () =>
        new Promise<void>((resolve) => {
          control.close(() => resolve());
          try {
            unlinkSync(controlPath);
          } catch {
            // already gone
          }
        }),
    );

    let metricsAddress: string | undefined;
    if (config.metrics !== undefined) {
      const registry = newRegistry('distnat_router');
      registerRouterMetrics(registry, { forwarder, leases: table, holders, pap, devices, pki });
      let server: HttpServer;
      try {
        server = await startMetricsServer(registry, config.metrics);
      } catch (e) {
        throw new UserError(
          `cannot serve metrics on ${config.metrics}: ${(e as Error).message}`,
          ExitCode.CANTCREATE,
        );
      }
      closers.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
      const a = server.address();
      metricsAddress = a !== null && typeof a === 'object' ? `${a.address}:${a.port}` : config.metrics;
    }

    // Maintenance: IAPTT sweep, fragment and SA expiry, drop summaries.
    const tickMs = opts.tickMs ?? 1000;
    const dropLogMs = opts.dropLogMs ?? 10_000;
    const lastDrops = new Float64Array(DROP_REASONS.length);
    let lastSummary = startedAt;
    let timer: Timer | undefined;
    const tick = () => {
      const now = clock.now();
      tables.iaptt.sweep(now, 8192);
      tables.fragments.expireHead(now);
      tables.held.expire(now);
      forwarder.outboundSas.expire(now);
      if (now - lastSummary >= dropLogMs) {
        lastSummary = now;
        logDrops(log, forwarder, lastDrops, dropLogMs);
      }
      timer = clock.setTimeout(tick, tickMs);
    };
    timer = clock.setTimeout(tick, tickMs);
    closers.push(() => timer?.cancel());

    log.info('router started', {
      shared: config.sharedAddress,
      lan: config.lanAddress,
      lanInterface,
      tun: tun.name,
      pap: `udp ${udp.local.address}:${udp.local.port}${icmp ? ' + icmp' : ''}`,
      control: controlPath,
      metrics: metricsAddress,
      epoch: table.epoch,
    });

    let stopping: Promise<void> | undefined;
    return {
      stop: () => {
        stopping ??= (async () => {
          log.info('router stopping');
          await unwind();
          log.info('router stopped');
        })();
        return stopping;
      },
      status,
      forwarder,
      leases: table,
      pap,
      papAddress: udp.local,
      controlSocket: controlPath,
      metricsAddress,
      pki,
    };
  } catch (e) {
    await unwind();
    throw e;
  }
}
