/**
 * The router's packet devices: the TUN device the shared address is routed
 * into, a raw socket receiving hosts' IP-in-IP (protocol 4) and an
 * IPPROTO_RAW sender for the router's own tunnels, both bound to the LAN
 * interface (or a caller's own devices), with the optional capture that
 * records every packet forwarded. Failures become UserErrors that say what
 * is missing.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { interfaceMtu, interfaceOf } from '../../io/interfaces.ts';
import { ExitCode, UserError } from '../../util/exit-codes.ts';
import type { RouterConfig } from '../../config/router-config.ts';
import { capture } from '../../io/capture.ts';
import { LinkType, PcapWriter } from '../../io/pcap.ts';
import { NativeAddonError } from '../../io/native.ts';
import { openRawSender, openRawSocket, type RawSocket } from '../../io/raw.ts';
import { openTun, type TunDevice } from '../../io/tun.ts';
import type { PacketDevice } from '../../io/types.ts';
import type { Logger } from '../../util/log.ts';
import { sharedAddressesOf } from '../../config/router-config.ts';
import { IpProtocol } from '../../wire/result.ts';
import { FORWARDED_WRITES, offloadByDefault, OffloadTun } from '../../io/offload-tun.ts';

/** 1500 of an Ethernet LAN minus the 20-byte outer header (docs/testbed.md, router-setup.sh). */
export const ROUTER_TUN_MTU = 1480;

export interface RouterDeviceConfig {
  readonly tun: string;
  /** The shared address, or sharedAddresses: each is routed into the TUN. */
  readonly sharedAddress?: string;
  readonly sharedAddresses?: readonly string[];
  readonly lanAddress: string;
  /**
   * Open the TUN with TCP offloads (vnet header, csum, tso4): super-packets
   * from the WAN are segmented before they are tunnelled, hosts' segments
   * coalesced before they go to the WAN. Default true; DISTNAT_TUN_OFFLOAD=off
   * in the environment turns them off whatever this says.
   */
  readonly tunOffload?: boolean;
  /**
   * Forwarding workers (workers.ts): above 1 the TUN is opened multi-queue,
   * and this queue only stands until the workers have attached theirs.
   */
  readonly workers?: number;
}

export interface OpenedDevices {
  /** The TUN, seen as a plain packet device (an OffloadTun over it when offloads are on). */
  readonly tun: PacketDevice;
  readonly lanRx: RawSocket;
  readonly lanTx: RawSocket;
  /** The interface that carries the LAN address. */
  readonly lanInterface: string;
  readonly lanMtu: number;
}

const PRIVILEGE_HINT =
  'distnat router needs root, or the capabilities CAP_NET_ADMIN (TUN device) and CAP_NET_RAW (raw sockets): ' +
  'run it with sudo, or `setcap cap_net_admin,cap_net_raw+ep "$(readlink -f "$(command -v node)")"`';

export { interfaceOf };

function readNumber(path: string): number | undefined {
  try {
    const n = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

/** Turns an error from opening a device into one a person can act on. */
export function explainOpenError(what: string, e: unknown): Error {
  if (e instanceof UserError) return e;
  if (e instanceof NativeAddonError) return new UserError(e.message, ExitCode.UNAVAILABLE);
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'EPERM' || code === 'EACCES')
    return new UserError(`cannot open ${what}: ${(e as Error).message}\n${PRIVILEGE_HINT}`, ExitCode.NOPERM);
  if (code === 'EBUSY')
    return new UserError(
      `cannot open ${what}: ${(e as Error).message}: another process holds it (is a router already running?)`,
      ExitCode.CANTCREATE,
    );
  return new UserError(`cannot open ${what}: ${(e as Error).message}`, ExitCode.CANTCREATE);
}

/**
 * Opens the TUN device (attaching to the persistent one router-setup.sh
 * made, or creating a temporary one, and saying so) and the LAN sockets.
 * Closes what it opened if a later step fails.
 */
export function openRouterDevices(config: RouterDeviceConfig, log: Logger): OpenedDevices {
  const lanInterface = interfaceOf(config.lanAddress);
  if (lanInterface === undefined) {
    throw new UserError(
      `the LAN address ${config.lanAddress} is not on any interface here: ` +
        `add it (\`ip addr add ${config.lanAddress}/24 dev <lan-if>\`) or fix lanAddress / --lan-address`,
      ExitCode.CONFIG,
    );
  }
  const lanMtu = interfaceMtu(lanInterface) ?? 1500;
  const opened: { close(): void }[] = [];
  try {
    const existed = existsSync(`/sys/class/net/${config.tun}`);
    const offload = (config.tunOffload ?? true) && offloadByDefault();
    let device: TunDevice;
    let tun: PacketDevice;
    const multiQueue = (config.workers ?? 1) > 1;
    try {
      device = openTun({
        name: config.tun,
        multiQueue,
        up: true,
        ...(existed ? {} : { mtu: ROUTER_TUN_MTU }),
        ...(offload ? { vnetHdr: true, offload: { csum: true, tso4: true }, slotCount: 64 } : {}),
      });
    } catch (e) {
      if (existed && (e as NodeJS.ErrnoException).code === 'EINVAL')
        throw new UserError(
          `cannot open the TUN device ${config.tun} ${multiQueue ? 'multi-queue' : 'single-queue'}: ` +
            `it exists with the other queue mode. ${
              multiQueue
                ? `workers: ${config.workers} needs \`native-setup/linux/router-setup.sh up --multi-queue\``
                : 'workers: 1 needs it made without --multi-queue'
            } (or remove it and let the router create its own)`,
          ExitCode.CONFIG,
        );
      throw explainOpenError(`the TUN device ${config.tun}`, e);
    }
    opened.push(device);
    try {
      tun = offload ? new OffloadTun(device, FORWARDED_WRITES) : device;
    } catch (e) {
      throw explainOpenError(`TCP offloads on ${config.tun}`, e);
    }
    // Every shared address reaches the router through the TUN: the kernel forwards them all into it.
    const shared = sharedAddressesOf(config);
    if (!existed) {
      const failed = shared.filter(
        (a) => tryIp(['route', 'replace', `${a}/32`, 'dev', config.tun]) === undefined,
      );
      const routes = shared.map((a) => `${a}/32`).join(', ');
      log.warn(
        `TUN device ${config.tun} did not exist: created it (MTU ${ROUTER_TUN_MTU}, up, not persistent: it goes when the router stops)` +
          (failed.length === 0
            ? ` and routed ${routes} into it`
            : `; routing ${failed.map((a) => `${a}/32`).join(', ')} into it failed`) +
          '. `native-setup/linux/router-setup.sh up` makes it persistent and sets ip_forward and rp_filter',
        { tun: config.tun },
      );
    } else {
      for (const a of shared) {
        const route = tryIp(['-4', 'route', 'show', `${a}/32`]);
        if (route !== undefined && !route.includes(`dev ${config.tun}`))
          log.warn(`no route ${a}/32 dev ${config.tun}: inbound packets will not reach the router`, {
            fix: 'native-setup/linux/router-setup.sh up',
          });
      }
    }
    const tunMtu = interfaceMtu(config.tun);
    if (tunMtu !== undefined && tunMtu + 20 > lanMtu)
      log.warn(
        `TUN MTU ${tunMtu} + 20 exceeds the LAN MTU ${lanMtu}: larger inbound packets will be dropped (too-big)`,
        {
          fix: `ip link set ${config.tun} mtu ${lanMtu - 20}`,
        },
      );
    if (readNumber('/proc/sys/net/ipv4/ip_forward') === 0)
      log.warn('ip_forward is off: the kernel will not forward what the router writes into the TUN', {
        fix: 'native-setup/linux/router-setup.sh up',
      });

    let lanRx: RawSocket;
    let lanTx: RawSocket;
    try {
      lanRx = openRawSocket(IpProtocol.IPIP, { device: lanInterface });
      opened.push(lanRx);
      lanTx = openRawSender({ device: lanInterface });
      opened.push(lanTx);
    } catch (e) {
      throw explainOpenError(`raw IPv4 sockets on ${lanInterface}`, e);
    }
    return { tun, lanRx, lanTx, lanInterface, lanMtu };
  } catch (e) {
    for (const d of opened.reverse()) d.close();
    throw e;
  }
}

function tryIp(args: string[]): string | undefined {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return undefined;
  }
}

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

export interface DaemonDevices {
  readonly tun: PacketDevice;
  readonly lanRx: PacketDevice;
  readonly lanTx: PacketDevice;
  readonly lanMtu: number;
  /** The interface holding the LAN address; undefined with a caller's devices. */
  readonly lanInterface: string | undefined;
}

/** Opens the devices (unless given) and the capture; each closer goes onto `closers` once its device is open. */
export function openDaemonDevices(
  config: RouterConfig,
  given: RouterDevices | undefined,
  log: Logger,
  closers: (() => void | Promise<void>)[],
): DaemonDevices {
  let tun: PacketDevice;
  let lanRx: PacketDevice;
  let lanTx: PacketDevice;
  let lanMtu: number;
  let lanInterface: string | undefined;
  if (given !== undefined) {
    ({ tun, lanRx, lanTx } = given);
    lanMtu = given.lanMtu ?? 1500;
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
  return { tun, lanRx, lanTx, lanMtu, lanInterface };
}
