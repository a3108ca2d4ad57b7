/**
 * The host agent's packet devices: the TUN device and the tunnel's raw
 * sockets (or a caller's own), their MTUs, and the optional capture that
 * records every packet they carry.
 */
import type { HostConfig } from '../config/host-config.ts';
import { capture } from '../io/capture.ts';
import { LinkType, PcapWriter } from '../io/pcap.ts';
import type { IoStats, PacketDevice } from '../io/types.ts';
import type { Logger } from '../util/log.ts';
import { DEFAULT_LAN_MTU, DEFAULT_TUN_MTU, interfaceMtu, interfaceOf, openHostDevices } from './devices.ts';
import type { HostDevices } from './devices.ts';

export interface AgentDevices {
  readonly tun: PacketDevice;
  readonly tunnelIn: PacketDevice;
  readonly tunnelOut: PacketDevice;
  readonly tunMtu: number;
  readonly lanMtu: number;
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
  return {
    tun,
    tunnelIn,
    tunnelOut,
    tunMtu,
    lanMtu,
    io: () => ({
      tun: tun.stats(),
      'tunnel-in': tunnelIn.stats(),
      'tunnel-out': tunnelOut.stats(),
    }),
  };
}
