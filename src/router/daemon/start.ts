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
 *      probe to the LAN broadcast address (another router on another machine: lan-probe.ts;
 *      not with leases on etcd, where several routers serve one LAN), then etcd when configured
 *      (no member answering: exit 69)
 *   4. TUN and raw sockets (privilege), the lease table (journal recovery)
 *   5. forwarding, PAP over ICMP, the local CA and its endpoint (config pki), control socket,
 *      metrics, timers
 * A failure at any step closes what the earlier steps opened.
 */
import type { DaemonStatus } from '../../control/status.ts';
import { ExitCode, UserError } from '../../util/exit-codes.ts';
import type { RouterConfig } from '../../config/router-config.ts';
import { sharedAddressesOf } from '../../config/router-config.ts';
import { controlSocketPath } from '../../control/protocol.ts';
import { socketAnswers } from '../../control/server.ts';
import type { LeaseBook } from '../../pap/lease-book.ts';
import { PapServer } from '../../pap/pap-server.ts';
import type { PapPeer } from '../../pap/transport.ts';
import type { Clock } from '../../util/clock.ts';
import { SystemClock } from '../../util/clock.ts';
import type { Logger } from '../../util/log.ts';
import { ipv4FromString } from '../../wire/ipv4.ts';
import { followLeases, openLeaseTable } from './leases.ts';
import { openSharedLeaseTable, openSharedRevocations } from './etcd-leases.ts';
import { guarded } from './log.ts';
import { serveRouterControl } from './control.ts';
import { serveRouterMetrics } from './metrics.ts';
import { openDaemonDevices } from './devices.ts';
import type { RouterDevices } from './devices.ts';
import { RouterForwarder, type RouterForwarding } from '../data-path/forwarder.ts';
import { lanBroadcastOf } from './lan-probe.ts';
import { LocalCaService } from './local-ca-service.ts';
import { startMaintenance } from './maintenance.ts';
import { answerLanProbes, openPapIcmp, openPapUdp, refuseOtherRouterOnLan } from './pap-transports.ts';
import { routerStatus, type RouterStatusSources } from './status.ts';
import { StateLock } from './state-lock.ts';
import { RouterTables } from '../data-path/tables/router-tables.ts';
import { OutboundSaTable } from '../data-path/outbound-sa.ts';
import { fastPathSas, openRouterDataPath } from './fast-path.ts';
import { LeaseOwnership } from '../data-path/tables/lease-ownership.ts';
import { DEFAULT_IAPTT_IDLE } from '../data-path/tables/iaptt.ts';
import { offloadByDefault } from '../../io/offload-tun.ts';
import { ForwardingWorkers } from './workers.ts';

export type { RouterDevices } from './devices.ts';

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
  /**
   * A first start: without saved lease state, grant at once instead of
   * holding off (docs/pap.md 6.3). No effect when state is recovered.
   */
  readonly fresh?: boolean;
}

export interface RouterHandle {
  /** Stops everything, flushes the lease journal into a snapshot, removes the control socket and the lock. */
  stop(): Promise<void>;
  status(): DaemonStatus;
  /** The forwarding loop, or with `workers` above 1 the workers' sum. */
  readonly forwarder: RouterForwarding;
  /** The forwarding workers, when `workers` is above 1. */
  readonly workers: ForwardingWorkers | undefined;
  /**
   * Settles when the router cannot go on (a forwarding worker failed): the
   * caller stops it and exits with an error. Never settles otherwise.
   */
  readonly failed: Promise<Error>;
  readonly leases: LeaseBook;
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
  const sharedList = sharedAddressesOf(config);
  if (sharedList.length === 0)
    throw new UserError(
      'field `sharedAddress`: got nothing; expected the public IPv4 address the hosts share (or sharedAddresses: [a, b])',
      ExitCode.CONFIG,
    );
  const sharedAddresses = sharedList.map((a) => ipv4FromString(a));
  const shared = sharedAddresses[0];
  const lan = ipv4FromString(config.lanAddress);
  if (shared === undefined || sharedAddresses.includes(undefined) || lan === undefined)
    throw new UserError('sharedAddress(es) and lanAddress must be IPv4 addresses', ExitCode.CONFIG);
  const addresses = sharedAddresses as number[];
  const workerCount = config.workers;
  if (workerCount > 1 && opts.devices !== undefined)
    throw new UserError('workers above 1 open their own devices: not with given devices', ExitCode.USAGE);
  // Each worker would need its own capture file, and one file from several threads would interleave.
  if (workerCount > 1 && config.pcap !== undefined)
    throw new UserError(
      `--pcap records the TUN path of one thread: run with workers: 1 to capture (workers: ${workerCount})`,
      ExitCode.USAGE,
    );
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
    const udp = await openPapUdp(config.lanAddress, udpPort, log);
    closers.push(() => udp.close());

    // 3b. another router on the same LAN, on another machine (docs/router.md, "One router per LAN").
    const broadcast = opts.devices === undefined ? lanBroadcastOf(config.lanAddress) : undefined;
    // Routers sharing their leases on etcd serve one LAN together; only a router on its own is refused.
    if (broadcast !== undefined && config.etcd === undefined)
      await refuseOtherRouterOnLan(config.lanAddress, broadcast, udpPort);

    // 3c. etcd, before any device is touched: a router that cannot reach it does not start (exit 69).
    const sharedTable =
      config.etcd === undefined ? undefined : await openSharedLeaseTable(config, clock, log, closers);

    const { tun, lanRx, lanTx, lanMtu, lanInterface } = openDaemonDevices(config, opts.devices, log, closers);

    // 4b. the eBPF fast path beside the TUN path (fast-path.ts), before the leases it is programmed from.
    // With workers the index lives in shared memory, which they read (workers.ts).
    const tables = new RouterTables({
      clock,
      ownership:
        workerCount > 1
          ? LeaseOwnership.shared(undefined, addresses.length)
          : new LeaseOwnership(undefined, undefined, addresses.length),
    });
    const dataPath = openRouterDataPath({
      config,
      sharedAddresses: addresses,
      lanAddress: lan,
      lanInterface,
      lanMtu,
      tables,
      log,
      closers,
    });

    // Leases, recovered from the journal or shared on etcd; the forwarding tables follow them.
    const table: LeaseBook = sharedTable ?? openLeaseTable(config, clock, log, closers, opts.fresh);
    followLeases(table, tables, log, sharedList);

    let forwarder: RouterForwarding;
    let workers: ForwardingWorkers | undefined;
    if (workerCount > 1) {
      workers = await ForwardingWorkers.start({
        count: workerCount,
        tun: tun.name,
        offload: (config.tunOffload ?? true) && offloadByDefault(),
        lanInterface: lanInterface!,
        sharedAddress: shared,
        sharedAddresses: addresses,
        lanAddress: lan,
        lanMtu,
        tables,
        idle: DEFAULT_IAPTT_IDLE,
        tickMs: opts.tickMs ?? 1000,
        log,
      });
      const pool = workers;
      closers.push(async () => {
        await pool.stop();
        log.info('forwarding workers stopped', { workers: pool.count });
      });
      // The workers' queues are attached: this one would take a share of the WAN's flows that nobody reads,
      // and the workers' filtered sockets take the LAN's.
      tun.close();
      lanRx.close();
      forwarder = workers;
      log.info(`forwarding on ${workerCount} workers`, { tun: tun.name });
    } else {
      const one = new RouterForwarder({
        sharedAddress: shared,
        sharedAddresses: addresses,
        lanAddress: lan,
        tables,
        tun,
        lan: lanTx,
        clock,
        lanMtu,
        outboundSas: new OutboundSaTable({ fallback: fastPathSas(dataPath) }),
      });
      one.attach(lanRx, tun);
      closers.push(() => one.detach());
      forwarder = one;
    }

    // PAP.
    const pap = new PapServer(table, addresses);
    pap.attach(guarded(udp, log, 'udp'));
    if (broadcast !== undefined) closers.push(await answerLanProbes(pap, udp, broadcast, udpPort));
    const transports: Record<string, object> = { udp: udp.counters };
    const icmp = config.pap.icmp ? openPapIcmp(config, opts.devices, lanTx, lanInterface) : undefined;
    if (icmp !== undefined) {
      closers.push(() => icmp.close());
      pap.attach(guarded(icmp, log, 'icmp'));
      transports.icmp = icmp.counters;
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
        sharedAddresses: sharedList,
        leases: table,
        // One CRL for every router of the shared address (docs/multi-router.md, "One CA, one CRL").
        revocations:
          sharedTable === undefined
            ? undefined
            : await openSharedRevocations(config, sharedTable, clock, log, closers),
        log,
        clock,
      });
      closers.push(() => service.close());
      pki = service;
    }

    // With workers the forwarding devices are theirs: their stats come with the workers' gauges.
    const devices = workers === undefined ? { tun, 'lan-rx': lanRx, 'lan-tx': lanTx } : workers.devices();
    const startedAt = clock.now();
    const sources: RouterStatusSources = {
      summary: {
        role: 'router',
        pid: process.pid,
        [addresses.length > 1 ? 'shared addresses' : 'shared address']: sharedList.join(', '),
        'LAN address': config.lanAddress + (lanInterface ? ` (${lanInterface})` : ''),
        tun: tun.name,
        workers: workers === undefined ? 1 : workers.count,
        PAP: `udp ${udp.local.address}:${udp.local.port}${icmp ? ', icmp types 32/33' : ''}`,
        'state dir': config.stateDir,
        leases:
          config.etcd === undefined
            ? `journal in ${config.stateDir}`
            : `etcd ${config.etcd.endpoints.join(',')} ${sharedList.map((a) => `${config.etcd!.prefix}${a}/`).join(' ')}`,
        recovered: table.recovered ? 'yes' : 'no (new epoch)',
      },
      clock,
      startedAt,
      forwarder,
      leases: table,
      pap,
      transports,
      devices,
      pki,
      dataPath,
      workers,
      sharedAddresses: sharedList,
    };
    const status = () => routerStatus(sources);

    closers.push(
      await serveRouterControl(
        controlPath,
        status,
        { leases: table, pap, ca: pki, addresses: sharedList },
        log,
      ),
    );

    let metricsAddress: string | undefined;
    if (config.metrics !== undefined) {
      const metrics = await serveRouterMetrics(
        {
          forwarder,
          leases: table,
          pap,
          devices,
          pki,
          fastPath: dataPath.fast,
          workers,
          sharedAddresses: sharedList,
        },
        config.metrics,
      );
      closers.push(metrics.close);
      metricsAddress = metrics.address;
    }

    closers.push(
      startMaintenance({
        clock,
        log,
        tables,
        forwarder,
        fastPath: dataPath.fast,
        workers,
        startedAt,
        tickMs: opts.tickMs ?? 1000,
        dropLogMs: opts.dropLogMs ?? 10_000,
      }),
    );

    log.info('router started', {
      shared: sharedList.join(','),
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
      workers,
      failed: workers?.failed ?? new Promise<Error>(() => {}),
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
