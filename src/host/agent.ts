/**
 * The host agent, the patent's "network device 14/18": leases ports from
 * the router with PAP (Method 130 steps 132-134), and forwards the local
 * stack's traffic through the virtual tunnel, translating ports (Methods
 * 170/184) or, in native mode, pointing the kernel's ephemeral range at the
 * leased block (Method 130 step 136). See docs/host.md.
 *
 * Forwarding starts at once, but nothing leaves before the first block is
 * held (drops counted as 'no-lease'): a packet from a port the router does
 * not know this host by would be dropped there anyway.
 */
import type { Server } from 'node:net';
import type { Server as HttpServer } from 'node:http';
import { existsSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { DaemonStatus } from '../cli/commands/status.ts';
import type { HostConfig } from '../config/host-config.ts';
import { controlSocketPath } from '../control/protocol.ts';
import { startControlServer } from '../control/server.ts';
import { capture } from '../io/capture.ts';
import { LinkType, PcapWriter } from '../io/pcap.ts';
import type { IoStats, PacketDevice } from '../io/types.ts';
import { newRegistry, startMetricsServer } from '../metrics/server.ts';
import { formatBlock } from '../pap/block.ts';
import type { HeldBlock } from '../pap/held-block.ts';
import { HostLeases } from '../pap/host-leases.ts';
import type { BlockLossReason, HostLeasesListener } from '../pap/host-leases.ts';
import { PapClient } from '../pap/pap-client.ts';
import type { RetransmitPolicy } from '../pap/pap-client.ts';
import type { PapTransport } from '../pap/transport.ts';
import type { Clock, Timer } from '../util/clock.ts';
import { SystemClock } from '../util/clock.ts';
import type { Logger } from '../util/log.ts';
import { ipv4FromString } from '../wire/ipv4.ts';
import { DEFAULT_LAN_MTU, DEFAULT_TUN_MTU, interfaceMtu, interfaceOf, openHostDevices } from './devices.ts';
import type { HostDevices } from './devices.ts';
import { HostForwarder } from './forwarder.ts';
import { readManualKeying } from '../ipsec/index.ts';
import { readIkeConfig } from '../config/ike-config.ts';
import { HostIke } from './host-ike.ts';
import { EngineIpsecStep, inSpiBlocks } from './ipsec-engine-step.ts';
import type { IpsecStep } from './ipsec-step.ts';
import { LeasedPortPool } from './leased-ports.ts';
import { registerHostMetrics } from './metrics.ts';
import { NativePortRange } from './native-ports.ts';
import { openHostPapTransport } from './pap-link.ts';
import { hostStatus } from './status.ts';
import { ProcSysctl } from './sysctl.ts';
import type { SysctlAccess } from './sysctl.ts';
import { PortTranslator, SourcePortTranslationTable } from './translation/index.ts';
import type { TranslationTimeouts } from './translation/index.ts';

export interface StartHostOptions {
  readonly clock?: Clock;
  /** Packet devices (tests pass in-memory ones); default: the TUN device and raw sockets. */
  readonly devices?: HostDevices;
  /** PAP transport (tests pass MemoryNetwork endpoints); default: UDP or ICMP as configured. */
  readonly papTransport?: PapTransport & { close?(): void };
  /** Kernel settings for native mode; default /proc/sys. */
  readonly sysctl?: SysctlAccess;
  /** Default: the TUN device's MTU, else 1480. */
  readonly tunMtu?: number;
  /** Default: the MTU of the interface holding the LAN address, else 1500. */
  readonly lanMtu?: number;
  /** Serve `distnat status` on the run directory's control socket. Default true. */
  readonly control?: boolean;
  readonly retransmit?: RetransmitPolicy;
  /** Pause before asking again after a refused or unanswered request. Default 5 s. */
  readonly retryAfterMs?: number;
  /** Lease asked for, seconds; 0 = the router's default. */
  readonly leaseSeconds?: number;
  /** How long stop() waits for the router to confirm the invalidates. Default 2 s. */
  readonly releaseTimeoutMs?: number;
  /** Period of the translation table's expiry sweep. Default 1 s. */
  readonly sweepIntervalMs?: number;
  readonly timeouts?: Partial<TranslationTimeouts>;
  readonly ipsec?: IpsecStep;
  readonly random?: () => number;
}

export interface HostAgent {
  /** Gives the blocks back (PAP invalidate, bounded wait), restores the kernel settings, closes everything. */
  stop(): Promise<void>;
  status(): DaemonStatus;
  /** Resolves true once a port block is held, false after `timeoutMs` without one. */
  whenLeased(timeoutMs: number): Promise<boolean>;
  readonly forwarder: HostForwarder;
  readonly leases: HostLeases;
  readonly ports: LeasedPortPool;
  readonly sptt: SourcePortTranslationTable;
  readonly client: PapClient;
  /** The engine step built from `config.ipsec`, when there is one. */
  readonly ipsec: EngineIpsecStep | undefined;
  /** IKE, when `config.ike` names a file. */
  readonly ike: HostIke | undefined;
  /** The control socket's path, when one is served. */
  readonly controlSocket: string | undefined;
  /** The metrics server's address, when one is served. */
  readonly metricsAddress: string | undefined;
}

/** True when something listens on the Unix socket at `path` (a live agent, not a stale file). */
function answers(path: string): Promise<boolean> {
  if (!existsSync(path)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const sock = connect(path);
    const done = (live: boolean): void => {
      sock.destroy();
      resolve(live);
    };
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
    sock.setTimeout(1000, () => done(false));
  });
}

function address(text: string, field: string): number {
  const a = ipv4FromString(text);
  if (a === undefined) throw new Error(`${field}: not an IPv4 address: ${text}`);
  return a;
}

/** Logs of "still no lease" come after 5 s, then less and less often, up to once a minute. */
const NO_LEASE_LOG_FIRST_MS = 5000;
const NO_LEASE_LOG_MAX_MS = 60_000;
/** SPIs leased for a manual keying file when pap.spis does not say (the router's default block). */
const DEFAULT_SPI_LEASE = 64;

export async function startHost(
  config: HostConfig,
  log: Logger,
  opts: StartHostOptions = {},
): Promise<HostAgent> {
  const clock = opts.clock ?? new SystemClock();
  const started = clock.now();
  const lan = address(config.lanAddress, 'lanAddress');
  const router = address(config.router, 'router');
  const shared = address(config.sharedAddress, 'sharedAddress');
  const papPeer =
    config.pap.transport === 'udp'
      ? { address: config.router, port: config.pap.udpPort }
      : { address: config.router };
  const routerText =
    config.pap.transport === 'udp'
      ? `${config.router} (UDP port ${config.pap.udpPort})`
      : `${config.router} (ICMP types 32/33)`;
  log.info('host agent starting', {
    mode: config.mode,
    router: config.router,
    lanAddress: config.lanAddress,
    sharedAddress: config.sharedAddress,
    tun: config.tun,
    pap: config.pap.transport,
  });

  // Before anything is opened: a second agent must not take over the first one's control socket.
  if ((opts.control ?? true) && (await answers(controlSocketPath(config.runDir, 'host'))))
    throw Object.assign(
      new Error(
        `another host agent answers on ${controlSocketPath(config.runDir, 'host')}: give each agent its own --run-dir`,
      ),
      { code: 'EADDRINUSE' },
    );

  // Everything opened so far, closed in reverse if a later step fails.
  const undo: (() => void)[] = [];
  const unwind = (): void => {
    for (const f of undo.reverse()) {
      try {
        f();
      } catch {
        // keep closing the rest
      }
    }
  };
  try {
    let devices: HostDevices;
    let tunMtu = opts.tunMtu ?? DEFAULT_TUN_MTU;
    if (opts.devices !== undefined) {
      devices = opts.devices;
    } else {
      const opened = openHostDevices(config.tun, (err) =>
        log.error('packet device failed', { error: err.message }),
      );
      if (opened.createdTun)
        log.warn(
          `TUN device ${config.tun} did not exist: created it (not persistent, MTU ${DEFAULT_TUN_MTU})`,
          {
            hint: `it has no address or routes: run native-setup/host-setup.sh up --tun ${config.tun}`,
          },
        );
      devices = opened;
      tunMtu = opts.tunMtu ?? opened.tunMtu;
    }
    undo.push(() => {
      devices.tun.close();
      devices.tunnelIn.close();
      devices.tunnelOut.close();
    });
    const lanIf = interfaceOf(config.lanAddress);
    const lanMtu = opts.lanMtu ?? (lanIf !== undefined ? interfaceMtu(lanIf) : undefined) ?? DEFAULT_LAN_MTU;
    if (tunMtu + 20 > lanMtu)
      log.warn(
        `TUN MTU ${tunMtu} + 20 exceeds the LAN MTU ${lanMtu}: large DF packets will be answered with fragmentation needed`,
      );

    let pcap: PcapWriter | undefined;
    const io = (d: PacketDevice): PacketDevice => (pcap === undefined ? d : capture(d, pcap));
    if (config.pcap !== undefined) {
      pcap = PcapWriter.open(config.pcap, { linkType: LinkType.Raw });
      const w = pcap;
      undo.push(() => w.close());
      log.info('recording packets', { pcap: config.pcap });
    }
    const tun = io(devices.tun);
    const tunnelIn = io(devices.tunnelIn);
    const tunnelOut = io(devices.tunnelOut);

    // --ipsec FILE: the engine step, its inbound SAs installed once their SPIs are leased.
    const engineStep =
      opts.ipsec === undefined && config.ipsec !== undefined
        ? new EngineIpsecStep(readManualKeying(config.ipsec), config.ipsec)
        : undefined;
    const ikeConfig = config.ike !== undefined ? readIkeConfig(config.ike) : undefined;
    const spisWanted =
      config.pap.spis > 0
        ? config.pap.spis
        : (engineStep?.spisNeeded.length ?? 0) > 0 || ikeConfig !== undefined
          ? DEFAULT_SPI_LEASE
          : 0;

    const blockSize = config.pap.blockSize;
    const lowWater = Math.ceil(blockSize / 4);
    const leases = new HostLeases({
      clock,
      want: { port: blockSize, spi: spisWanted },
      lowWater: { port: lowWater },
    });
    undo.push(() => leases.close());
    const ports = new LeasedPortPool(leases, lowWater);
    const sptt = new SourcePortTranslationTable(ports, { timeouts: opts.timeouts ?? {} });
    const translator = new PortTranslator(sptt);
    const ike =
      ikeConfig === undefined
        ? undefined
        : new HostIke({
            config: ikeConfig,
            sharedAddress: config.sharedAddress,
            router: config.router,
            stateDir: config.stateDir,
            leases,
            ports,
            clock,
            log,
          });
    const ipsecStep = opts.ipsec ?? engineStep ?? ike?.step;
    const forwarder = new HostForwarder({
      tun,
      tunnelIn,
      tunnelOut,
      translator,
      leases: ports,
      clock,
      mode: config.mode,
      lanAddress: lan,
      routerAddress: router,
      sharedAddress: shared,
      tunMtu,
      lanMtu,
      ...(ipsecStep !== undefined ? { ipsec: ipsecStep } : {}),
      ...(ike !== undefined ? { servicePorts: ike.servicePorts } : {}),
    });
    const installIpsec = (): void => {
      if (engineStep === undefined || engineStep.installed) return;
      const held = leases.blocks('spi');
      if (!engineStep.spisNeeded.every((spi) => inSpiBlocks(spi, held))) return;
      try {
        engineStep.install((spi) => inSpiBlocks(spi, leases.blocks('spi')));
        log.info('IPsec SAs installed', { file: config.ipsec, overhead: engineStep.maxOverhead });
      } catch (e) {
        log.error('cannot install the IPsec SAs', { error: (e as Error).message });
      }
    };

    let native: NativePortRange | undefined;
    if (config.mode === 'native') {
      native = new NativePortRange(
        opts.sysctl ?? new ProcSysctl(),
        // One file per LAN address: agents of several namespaces may share a state directory.
        join(config.stateDir, `native-sysctl-${config.lanAddress}.json`),
      );
      const found = native.begin();
      const n = native;
      undo.push(() => n.restore());
      log.info('native mode: the kernel ephemeral range will be the leased ports', {
        original: found.range.replace(/\s+/, '-'),
        ...(found.fromCrash
          ? { note: 'originals recovered from a previous run that did not stop cleanly' }
          : {}),
      });
    }
    const applyNative = (): void => {
      if (native === undefined) return;
      try {
        const set = native.apply(ports.blocks());
        if (set !== undefined)
          log.info('kernel ephemeral ports set to the leased blocks', {
            range: `${set.range[0]}-${set.range[1]}`,
            ...(set.reserved !== '' ? { reserved: set.reserved } : {}),
          });
      } catch (e) {
        log.error('cannot set the kernel ephemeral port range', { error: (e as Error).message });
      }
    };

    const transport =
      opts.papTransport ??
      (await openHostPapTransport(config, (err) => log.warn('PAP transport error', { error: err.message })));
    undo.push(() => transport.close?.());

    const client = new PapClient({
      transport,
      router: papPeer,
      clock,
      leases,
      retransmit: opts.retransmit ?? {},
      retryAfterMs: opts.retryAfterMs ?? 5000,
      ...(opts.leaseSeconds !== undefined ? { leaseSeconds: opts.leaseSeconds } : {}),
      ...(opts.random !== undefined ? { random: opts.random } : {}),
    });
    undo.push(() => client.stop());

    const leaseWaiters = new Set<() => void>();
    let lastEpochLogged = 0;
    const listener: HostLeasesListener = {
      onBlockAdded(b: HeldBlock) {
        log.info(`leased ${b.kind === 'port' ? 'ports' : 'SPIs'} ${formatBlock(b)}`, {
          count: b.count,
          leaseSeconds: b.leaseSeconds,
          epoch: b.epoch.toString(16),
        });
        if (b.kind === 'spi') {
          installIpsec();
          const missing =
            engineStep?.installed === false
              ? engineStep.spisNeeded.filter((spi) => !inSpiBlocks(spi, leases.blocks('spi')))
              : [];
          if (missing.length > 0)
            log.error(
              `inbound SAs of ${config.ipsec} use SPIs outside the leased blocks: they stay uninstalled`,
              {
                spis: missing.map((x) => `0x${x.toString(16)}`),
                held: leases.blocks('spi').map(formatBlock),
              },
            );
        }
        if (b.kind === 'port') {
          applyNative();
          for (const w of [...leaseWaiters]) w();
        }
      },
      onBlockLost(b: HeldBlock, reason: BlockLossReason, inUse: readonly number[]) {
        const flows = b.kind === 'port' ? sptt.dropLease(b.lowest, b.count) : 0;
        if (reason === 'epoch-changed' && lastEpochLogged !== leases.epoch) {
          lastEpochLogged = leases.epoch;
          log.warn('the router restarted without its leases (new epoch): leasing again', {
            epoch: leases.epoch.toString(16),
          });
        }
        const level = reason === 'released' ? 'info' : 'warn';
        log.log(
          level,
          `${reason === 'released' ? 'released' : 'lost'} ${b.kind === 'port' ? 'ports' : 'SPIs'} ${formatBlock(b)}`,
          {
            reason,
            inUse: inUse.length,
            translationsDropped: flows,
          },
        );
        if (b.kind === 'port') applyNative();
      },
      onRenewDue(b: HeldBlock, attempt: 1 | 2) {
        log.debug(`renewing ${formatBlock(b)}`, { attempt });
      },
      onMoreNeeded(kind, count) {
        log.info(`asking router ${routerText} for ${count} ${kind === 'port' ? 'ports' : 'SPIs'}`);
      },
    };
    leases.addListener(listener);

    if (engineStep !== undefined && engineStep.spisNeeded.length === 0) installIpsec();
    forwarder.start();
    undo.push(() => forwarder.stop());
    client.start();

    // Periodic work off the packet path: expiry sweep, pool refresh, and saying so when no lease comes.
    let tick: Timer | undefined;
    let nextNoLeaseLog = started + NO_LEASE_LOG_FIRST_MS;
    let noLeaseGap = NO_LEASE_LOG_FIRST_MS;
    const sweepEvery = opts.sweepIntervalMs ?? 1000;
    const onTick = (): void => {
      const now = clock.now();
      sptt.sweep(now);
      ports.refresh();
      if (ports.held > 0) {
        noLeaseGap = NO_LEASE_LOG_FIRST_MS;
        nextNoLeaseLog = now + noLeaseGap;
      } else if (now >= nextNoLeaseLog) {
        log.warn(`no port lease yet: router ${routerText} has not granted one; still asking`, {
          waitedSeconds: Math.round((now - started) / 1000),
          papSent: client.counters.sent,
          papTimeouts: client.counters.timeouts,
          outboundDropped: forwarder.outboundDrops.get('no-lease'),
        });
        noLeaseGap = Math.min(noLeaseGap * 2, NO_LEASE_LOG_MAX_MS);
        nextNoLeaseLog = now + noLeaseGap;
      }
      tick = clock.setTimeout(onTick, sweepEvery);
    };
    tick = clock.setTimeout(onTick, sweepEvery);
    undo.push(() => tick?.cancel());

    const ioStats = (): Record<string, IoStats> => ({
      tun: tun.stats(),
      'tunnel-in': tunnelIn.stats(),
      'tunnel-out': tunnelOut.stats(),
    });
    const status = (): DaemonStatus => {
      const now = clock.now();
      const st = hostStatus({
        now,
        summary: {
          mode: config.mode,
          router: config.router,
          'pap transport': config.pap.transport,
          'lan address': config.lanAddress,
          'shared address': config.sharedAddress,
          tun: `${config.tun} (MTU ${tunMtu}, LAN MTU ${lanMtu})`,
          epoch: leases.epoch === 0 ? 'none yet' : `0x${leases.epoch.toString(16).padStart(8, '0')}`,
          'ports held': ports.held,
          'ports unused': ports.unused,
          forwarding: ports.held > 0 ? 'yes' : 'no (waiting for a lease)',
          'up for': `${Math.round((now - started) / 1000)}s`,
        },
        blocks: leases.blocks(),
        sptt,
        translator,
        forwarder,
        pap: client.counters,
        io: ioStats(),
      });
      if (engineStep !== undefined) {
        st.summary.ipsec = `${config.ipsec} (${engineStep.installed ? 'SAs installed' : 'waiting for SPI leases'})`;
        Object.assign(st.counters, engineStep.counters());
      }
      if (ike !== undefined) {
        st.summary.ike = ike.summary();
        st.tables.push(...(ike.service?.tables() ?? []));
        Object.assign(st.counters, ike.step.counters(), ike.service?.counters() ?? {});
      }
      return st;
    };

    let controlServer: Server | undefined;
    let controlPath: string | undefined;
    if (opts.control ?? true) {
      controlPath = controlSocketPath(config.runDir, 'host');
      controlServer = await startControlServer(controlPath, status);
      const path = controlPath;
      const server = controlServer;
      undo.push(() => {
        server.close();
        try {
          unlinkSync(path);
        } catch {
          // already gone
        }
      });
    }

    let metricsServer: HttpServer | undefined;
    let metricsAddress: string | undefined;
    if (config.metrics !== undefined) {
      const registry = newRegistry('distnat_host');
      const keyedStep = engineStep ?? ike?.step;
      registerHostMetrics(registry, {
        forwarder,
        translator,
        sptt,
        ports,
        pap: () => client.counters,
        io: ioStats,
        ...(keyedStep !== undefined && {
          ipsec: () => keyedStep.counters(),
          ipsecSas: () => keyedStep.engine?.sad.all().length ?? 0,
        }),
      });
      metricsServer = await startMetricsServer(registry, config.metrics);
      const a = metricsServer.address();
      metricsAddress = a !== null && typeof a === 'object' ? `${a.address}:${a.port}` : config.metrics;
      const server = metricsServer;
      undo.push(() => server.close());
      log.info('serving metrics', { address: metricsAddress });
    }

    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> => {
      stopping ??= (async () => {
        // IKE first: its Delete notifications still have a data path to leave by.
        // (No await without IKE: the release below starts in the same turn as stop().)
        if (ike !== undefined) await ike.stop();
        forwarder.stop();
        tick?.cancel();
        const held = leases.blocks();
        if (held.length > 0) {
          log.info('stopping: giving the leased blocks back', { blocks: held.map(formatBlock) });
          let timer: Timer | undefined;
          const timeout = new Promise<'timeout'>((resolve) => {
            timer = clock.setTimeout(() => resolve('timeout'), opts.releaseTimeoutMs ?? 2000);
          });
          const released = Promise.all(held.map((b) => client.release(b.kind, b.lowest)));
          const outcome = await Promise.race([released, timeout]);
          timer?.cancel();
          if (outcome === 'timeout')
            log.warn(
              `router ${routerText} did not confirm the release in time; its leases will expire on their own`,
            );
        }
        leases.removeListener(listener);
        unwind();
        ports.close();
        log.info('host agent stopped');
      })();
      return stopping;
    };

    const whenLeased = (timeoutMs: number): Promise<boolean> => {
      if (ports.held > 0) return Promise.resolve(true);
      return new Promise((resolve) => {
        const done = (result: boolean): void => {
          leaseWaiters.delete(onLease);
          timer.cancel();
          resolve(result);
        };
        const onLease = (): void => done(true);
        const timer = clock.setTimeout(() => done(false), timeoutMs);
        leaseWaiters.add(onLease);
      });
    };

    return {
      stop,
      status,
      whenLeased,
      forwarder,
      leases,
      ports,
      sptt,
      client,
      ipsec: engineStep,
      ike,
      controlSocket: controlPath,
      metricsAddress,
    };
  } catch (err) {
    unwind();
    throw err;
  }
}
