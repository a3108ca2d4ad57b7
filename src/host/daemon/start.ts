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
import type { DaemonStatus } from '../../control/status.ts';
import type { HostConfig } from '../../config/host-config.ts';
import { routersOf } from '../../config/host-config.ts';
import { readIkeConfig } from '../../config/ike-config.ts';
import { readManualKeying } from '../../ipsec/index.ts';
import { HostLeases } from '../../pap/host-leases.ts';
import { PapClient } from '../../pap/pap-client.ts';
import type { RetransmitPolicy } from '../../pap/pap-client.ts';
import type { PapTransport } from '../../pap/transport.ts';
import type { Clock } from '../../util/clock.ts';
import { SystemClock } from '../../util/clock.ts';
import type { Logger } from '../../util/log.ts';
import { ipv4FromString } from '../../wire/ipv4.ts';
import { refuseSecondAgent, serveAgentControl } from './control.ts';
import { openAgentDevices } from './devices.ts';
import { openHostDataPath } from './fast-path.ts';
import { agentStatus } from './status.ts';
import { serveAgentMetrics } from './metrics.ts';
import type { HostAgentParts } from './status.ts';
import type { HostDevices } from './devices.ts';
import { HostForwarder } from '../data-path/forwarder.ts';
import { HostIke } from './host-ike.ts';
import { startHousekeeping } from './housekeeping.ts';
import { EngineIpsecStep } from '../data-path/ipsec-engine-step.ts';
import type { IpsecStep } from '../data-path/ipsec-step.ts';
import { leaseEventListener } from './lease-events.ts';
import { LeaseWaiters } from './lease-waiters.ts';
import { LeasedPortPool } from '../data-path/leased-ports.ts';
import { manualKeying, spisToLease } from './manual-keying.ts';
import { beginHairpin } from './hairpin.ts';
import type { Hairpin } from './hairpin.ts';
import { IpPolicyRouting } from './policy-routing.ts';
import type { PolicyRouting } from './policy-routing.ts';
import { beginNativeMode } from './native-mode.ts';
import type { NativeMode } from './native-mode.ts';
import { openHostPapTransport } from './pap-link.ts';
import { releaseBlocks } from './release.ts';
import { RouterFailover } from './router-failover.ts';
import { ProcSysctl } from './sysctl.ts';
import type { SysctlAccess } from './sysctl.ts';
import { PortTranslator, SourcePortTranslationTable } from '../data-path/translation/index.ts';
import type { TranslationTimeouts } from '../data-path/translation/index.ts';
import { runUndo } from '../../util/undo.ts';

export interface StartHostOptions {
  readonly clock?: Clock;
  /** Packet devices (tests pass in-memory ones); default: the TUN device and raw sockets. */
  readonly devices?: HostDevices;
  /** PAP transport (tests pass MemoryNetwork endpoints); default: UDP or ICMP as configured. */
  readonly papTransport?: PapTransport & { close?(): void };
  /** Kernel settings for native mode; default /proc/sys. */
  readonly sysctl?: SysctlAccess;
  /** Policy routing for the hairpin; default `ip` in this network namespace. */
  readonly policyRouting?: PolicyRouting;
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
  /** With several routers: which one the host sends through, and its moves. */
  readonly failover: RouterFailover | undefined;
  /** The engine step built from `config.ipsec`, when there is one. */
  readonly ipsec: EngineIpsecStep | undefined;
  /** IKE, when `config.ike` names a file. */
  readonly ike: HostIke | undefined;
  /** The control socket's path, when one is served. */
  readonly controlSocket: string | undefined;
  /** The metrics server's address, when one is served. */
  readonly metricsAddress: string | undefined;
}

function address(text: string, field: string): number {
  const a = ipv4FromString(text);
  if (a === undefined) throw new Error(`${field}: not an IPv4 address: ${text}`);
  return a;
}

export async function startHost(
  config: HostConfig,
  log: Logger,
  opts: StartHostOptions = {},
): Promise<HostAgent> {
  const clock = opts.clock ?? new SystemClock();
  const started = clock.now();
  const lan = address(config.lanAddress, 'lanAddress');
  const router = address(config.router, 'router');
  const routerList = routersOf(config);
  const routerAddresses = routerList.map((r) => address(r, 'routers'));
  const shared = address(config.sharedAddress, 'sharedAddress');
  const papPeerOf = (a: string) =>
    config.pap.transport === 'udp' ? { address: a, port: config.pap.udpPort } : { address: a };
  const papPeer = papPeerOf(config.router);
  const routerText =
    config.pap.transport === 'udp'
      ? `${routerList.join(', ')} (UDP port ${config.pap.udpPort})`
      : `${routerList.join(', ')} (ICMP types 32/33)`;
  log.info('host agent starting', {
    mode: config.mode,
    router: config.router,
    ...(routerList.length > 1 ? { routers: routerList.join(',') } : {}),
    lanAddress: config.lanAddress,
    sharedAddress: config.sharedAddress,
    tun: config.tun,
    pap: config.pap.transport,
  });

  // Before anything is opened: a second agent must not take over the first one's control socket.
  if (opts.control ?? true) await refuseSecondAgent(config.runDir);

  // Everything opened so far, closed in reverse if a later step fails.
  const undo: (() => void)[] = [];
  const unwind = (): void =>
    runUndo(undo, (e) => log.warn('a step of the set-up could not be undone', { error: e.message }));
  try {
    const { tun, tunnelIn, tunnelOut, tunMtu, lanMtu, lanInterface, io } = openAgentDevices(
      config,
      opts,
      log,
      undo,
    );

    // --ipsec FILE: the engine step, its inbound SAs installed once their SPIs are leased.
    const engineStep =
      opts.ipsec === undefined && config.ipsec !== undefined
        ? new EngineIpsecStep(readManualKeying(config.ipsec), config.ipsec)
        : undefined;
    const ikeConfig = config.ike !== undefined ? readIkeConfig(config.ike) : undefined;

    const blockSize = config.pap.blockSize;
    const lowWater = Math.ceil(blockSize / 4);
    const leases = new HostLeases({
      clock,
      want: { port: blockSize, spi: spisToLease(config.pap.spis, engineStep, ikeConfig !== undefined) },
      lowWater: { port: lowWater },
    });
    undo.push(() => leases.close());
    // The eBPF fast path beside the agent's own (fast-path.ts): its lease listener first of all.
    const dataPath = openHostDataPath({
      config,
      sharedAddress: shared,
      lanAddress: lan,
      routerAddress: router,
      lanInterface,
      tunMtu,
      lanMtu,
      ipsec: opts.ipsec !== undefined || engineStep !== undefined || ikeConfig !== undefined,
      leases,
      clock,
      log,
    });
    undo.push(() => dataPath.close());
    const ports = new LeasedPortPool(leases, lowWater);
    const sptt = new SourcePortTranslationTable(ports, {
      timeouts: opts.timeouts ?? {},
      ...(dataPath.observer !== undefined ? { observer: dataPath.observer } : {}),
    });
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
      ...(routerList.length > 1 ? { routerAddresses } : {}),
      sharedAddress: shared,
      tunMtu,
      lanMtu,
      ...(ipsecStep !== undefined ? { ipsec: ipsecStep } : {}),
      ...(ike !== undefined ? { servicePorts: ike.servicePorts } : {}),
    });
    const keying = manualKeying(engineStep, config.ipsec, leases, log);

    let native: NativeMode | undefined;
    if (config.mode === 'native') {
      native = beginNativeMode({
        sysctl: opts.sysctl ?? new ProcSysctl(),
        stateDir: config.stateDir,
        lanAddress: config.lanAddress,
        ports,
        log,
      });
      const n = native;
      undo.push(() => n.restore());
    }

    let hairpin: Hairpin | undefined;
    if (config.hairpin.enabled) {
      hairpin = beginHairpin({
        routing: opts.policyRouting ?? new IpPolicyRouting(),
        spec: { sharedAddress: config.sharedAddress, tun: config.tun, table: config.hairpin.table },
        blocks: () => ports.blocks(),
        log,
      });
      const h = hairpin;
      undo.push(() => h.remove());
    }

    const transport =
      opts.papTransport ??
      (await openHostPapTransport(config, (err) => log.warn('PAP transport error', { error: err.message })));
    undo.push(() => transport.close?.());

    const client = new PapClient({
      transport,
      router: papPeer,
      sharedAddress: shared,
      clock,
      leases,
      retransmit: opts.retransmit ?? {},
      retryAfterMs: opts.retryAfterMs ?? 5000,
      ...(opts.leaseSeconds !== undefined ? { leaseSeconds: opts.leaseSeconds } : {}),
      ...(opts.random !== undefined ? { random: opts.random } : {}),
    });
    undo.push(() => client.stop());

    // One router: nothing to move to, and its renewals keep to their schedule.
    const failover =
      routerList.length > 1
        ? new RouterFailover({
            client,
            leases,
            clock,
            log,
            routers: routerList.map(papPeerOf),
            probeMs: config.failover.probeSeconds * 1000,
            silentMs: config.failover.silentSeconds * 1000,
            onSwitch: (to) => {
              const a = address(to.address, 'routers');
              forwarder.setRouter(a);
              dataPath.fast?.setRouter(a);
            },
          })
        : undefined;
    undo.push(() => failover?.stop());

    const waiters = new LeaseWaiters(clock, () => ports.held > 0);
    const listener = leaseEventListener({
      log,
      leases,
      sptt,
      routerText,
      spiBlockAdded: keying.onSpiBlockAdded,
      portsChanged: () => {
        native?.apply();
        hairpin?.apply();
      },
      portBlockAdded: () => waiters.notify(),
    });
    leases.addListener(listener);

    if (engineStep !== undefined && engineStep.spisNeeded.length === 0) keying.install();
    forwarder.start();
    undo.push(() => forwarder.stop());
    client.start();
    failover?.start();

    const housekeeping = startHousekeeping({
      clock,
      log,
      started,
      everyMs: opts.sweepIntervalMs ?? 1000,
      sptt,
      ports,
      client,
      forwarder,
      routerText,
    });
    undo.push(() => housekeeping.cancel());

    const parts: HostAgentParts = {
      config,
      clock,
      started,
      tunMtu,
      lanMtu,
      leases,
      ports,
      sptt,
      translator,
      forwarder,
      client,
      io,
      engineStep,
      ike,
      hairpin,
      dataPath,
      failover,
    };
    const status = (): DaemonStatus => agentStatus(parts);

    let controlPath: string | undefined;
    if (opts.control ?? true) {
      const control = await serveAgentControl(config.runDir, status);
      controlPath = control.path;
      undo.push(() => control.close());
    }

    let metricsAddress: string | undefined;
    if (config.metrics !== undefined) {
      const metrics = await serveAgentMetrics(parts, config.metrics);
      metricsAddress = metrics.address;
      undo.push(() => metrics.server.close());
      log.info('serving metrics', { address: metricsAddress });
    }

    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> => {
      stopping ??= (async () => {
        // IKE first: its Delete notifications still have a data path to leave by.
        // (No await without IKE: the release below starts in the same turn as stop().)
        if (ike !== undefined) await ike.stop();
        // The programs go with the agent's loop: nothing is forwarded past this point, by either.
        dataPath.close();
        forwarder.stop();
        // Before the blocks go: their release would only set the rules once more.
        hairpin?.remove();
        housekeeping.cancel();
        failover?.stop();
        const held = leases.blocks();
        if (held.length > 0)
          await releaseBlocks(held, client, clock, opts.releaseTimeoutMs ?? 2000, log, routerText);
        leases.removeListener(listener);
        unwind();
        ports.close();
        log.info('host agent stopped');
      })();
      return stopping;
    };

    return {
      stop,
      status,
      whenLeased: (timeoutMs) => waiters.wait(timeoutMs),
      forwarder,
      leases,
      ports,
      sptt,
      client,
      failover,
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
