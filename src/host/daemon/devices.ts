/**
 * The host agent's packet devices (docs/host.md): the TUN device the shared
 * address lives on, a raw socket receiving protocol 4 (IP-in-IP from the
 * router, outer header included) and an IPPROTO_RAW sender for the
 * encapsulated packets (or a caller's own devices), their MTUs, and the
 * optional capture that records every packet they carry.
 */
import { existsSync } from 'node:fs';
import { openRawSender, openRawSocket } from '../../io/raw.ts';
import { openTun } from '../../io/tun.ts';
import { IpProtocol } from '../../wire/result.ts';
import { offloadByDefault, OffloadTun } from '../../io/offload-tun.ts';
import type { HostConfig } from '../../config/host-config.ts';
import { capture } from '../../io/capture.ts';
import { LinkType, PcapWriter } from '../../io/pcap.ts';
import type { IoStats, PacketDevice } from '../../io/types.ts';
import type { Logger } from '../../util/log.ts';
import { interfaceMtu, interfaceOf } from '../../io/interfaces.ts';

export interface HostDevices {
  readonly tun: PacketDevice;
  readonly tunnelIn: PacketDevice;
  readonly tunnelOut: PacketDevice;
}

/** The MTU native-setup/linux/host-setup.sh gives the TUN device: 1500 minus the outer header. */
export const DEFAULT_TUN_MTU = 1480;
export const DEFAULT_LAN_MTU = 1500;

export interface OpenedDevices extends HostDevices {
  /** True when the TUN device did not exist and was created (without address or routes). */
  readonly createdTun: boolean;
  readonly tunMtu: number;
}

export interface HostDeviceOptions {
  /**
   * Open the TUN with TCP offloads (vnet header, csum, tso4): the local
   * stack's super-packets are segmented before translation, IPsec and
   * encapsulation, and the router's segments coalesced after them. Default
   * true, unless the environment has DISTNAT_TUN_OFFLOAD=off.
   */
  readonly offload?: boolean;
  /**
   * The interface of the LAN address: the tunnel socket receives only what
   * arrives on it. Linux hands a protocol-4 datagram for any local address
   * to every protocol-4 raw socket, whatever the interface, and the shared
   * address is local here: an IP-in-IP datagram the agent itself wrote into
   * the TUN (a remote's datagram that carries one) would come back to the
   * agent as if the router had sent it.
   */
  readonly lanInterface?: string | undefined;
}

/**
 * Opens the devices. A missing TUN device is created (not persistent) with
 * the default MTU and set up; its address and routes are host-setup.sh's
 * job, and the caller says so. Throws the binding's errors (code EPERM
 * without CAP_NET_ADMIN / CAP_NET_RAW).
 */
export function openHostDevices(
  tunName: string,
  onError: (err: Error) => void,
  options: HostDeviceOptions = {},
): OpenedDevices {
  const createdTun = !existsSync(`/sys/class/net/${tunName}`);
  const offload = options.offload ?? offloadByDefault();
  const device = openTun({
    name: tunName,
    onError,
    ...(createdTun ? { mtu: DEFAULT_TUN_MTU, up: true } : {}),
    ...(offload ? { vnetHdr: true, offload: { csum: true, tso4: true }, slotCount: 64 } : {}),
  });
  let tun: PacketDevice = device;
  let tunnelIn: PacketDevice | undefined;
  try {
    if (offload) tun = new OffloadTun(device);
    tunnelIn = openRawSocket(IpProtocol.IPIP, {
      onError,
      ...(options.lanInterface === undefined ? {} : { device: options.lanInterface }),
    });
    const tunnelOut = openRawSender({ onError });
    return { tun, tunnelIn, tunnelOut, createdTun, tunMtu: interfaceMtu(tun.name) ?? DEFAULT_TUN_MTU };
  } catch (err) {
    tunnelIn?.close();
    device.close();
    throw err;
  }
}

export interface AgentDevices {
  readonly tun: PacketDevice;
  readonly tunnelIn: PacketDevice;
  readonly tunnelOut: PacketDevice;
  readonly tunMtu: number;
  readonly lanMtu: number;
  /** The LAN interface the tunnel arrives on; undefined with devices given by the caller. */
  readonly lanInterface: string | undefined;
  /** The devices' counters, by the names status and metrics show. */
  io(): Record<string, IoStats>;
}

export interface AgentDeviceOptions {
  /** Devices to use instead of opening them. */
  readonly devices?: HostDevices | undefined;
  readonly tunMtu?: number | undefined;
  readonly lanMtu?: number | undefined;
}

/** Opens the devices; each closer is pushed onto `undo` as soon as what it closes is open. */
export function openAgentDevices(
  config: HostConfig,
  opts: AgentDeviceOptions,
  log: Logger,
  undo: (() => void)[],
): AgentDevices {
  let devices: HostDevices;
  let tunMtu = opts.tunMtu ?? DEFAULT_TUN_MTU;
  const lanIf = interfaceOf(config.lanAddress);
  if (opts.devices !== undefined) {
    devices = opts.devices;
  } else {
    const opened = openHostDevices(
      config.tun,
      (err) => log.error('packet device failed', { error: err.message }),
      { lanInterface: lanIf },
    );
    if (opened.createdTun)
      log.warn(
        `TUN device ${config.tun} did not exist: created it (not persistent, MTU ${DEFAULT_TUN_MTU})`,
        {
          hint: `it has no address or routes: run native-setup/linux/host-setup.sh up --tun ${config.tun}`,
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
  return {
    tun,
    tunnelIn,
    tunnelOut,
    tunMtu,
    lanMtu,
    lanInterface: opts.devices === undefined ? lanIf : undefined,
    io: () => ({
      tun: tun.stats(),
      'tunnel-in': tunnelIn.stats(),
      'tunnel-out': tunnelOut.stats(),
    }),
  };
}
