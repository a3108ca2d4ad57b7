/**
 * The router's packet devices as the daemon uses them: the TUN device and
 * the LAN raw sockets (or a caller's own), with the optional capture that
 * records every packet forwarded.
 */
import { ExitCode, UserError } from '../util/exit-codes.ts';
import type { RouterConfig } from '../config/router-config.ts';
import { capture } from '../io/capture.ts';
import { LinkType, PcapWriter } from '../io/pcap.ts';
import type { PacketDevice } from '../io/types.ts';
import type { Logger } from '../util/log.ts';
import { openRouterDevices } from './devices.ts';

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

export interface DataPath {
  readonly tun: PacketDevice;
  readonly lanRx: PacketDevice;
  readonly lanTx: PacketDevice;
  readonly lanMtu: number;
  /** The interface holding the LAN address; undefined with a caller's devices. */
  readonly lanInterface: string | undefined;
}

/** Opens the devices (unless given) and the capture; each closer goes onto `closers` once its device is open. */
export function openDataPath(
  config: RouterConfig,
  given: RouterDevices | undefined,
  log: Logger,
  closers: (() => void | Promise<void>)[],
): DataPath {
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
