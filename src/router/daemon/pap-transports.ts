/**
 * The router's PAP transports as the daemon opens them: the UDP socket (the
 * first sign of another router on this LAN address), the broadcast probe and
 * its listener (another router on this LAN, on another machine: lan-probe.ts),
 * and the raw ICMP socket. Each failure becomes a UserError that says what to
 * change.
 */
import { ExitCode, UserError } from '../../util/exit-codes.ts';
import type { RouterConfig } from '../../config/router-config.ts';
import { IcmpPapTransport } from '../../pap/icmp-transport.ts';
import type { PapServer } from '../../pap/pap-server.ts';
import { UdpPapTransport } from '../../pap/udp-transport.ts';
import type { PacketDevice, PacketSink } from '../../io/types.ts';
import type { Logger } from '../../util/log.ts';
import type { RouterDevices } from './devices.ts';
import { explainOpenError } from './devices.ts';
import { listenForLanProbes, probeLanForRouter } from './lan-probe.ts';

export async function openPapUdp(lanAddress: string, port: number, log: Logger): Promise<UdpPapTransport> {
  try {
    return await UdpPapTransport.open({
      address: lanAddress,
      port,
      onError: (e) => log.warn('PAP UDP socket error', { error: e.message }),
    });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE')
      throw new UserError(
        `UDP ${lanAddress}:${port} is taken: another router (or PAP server) serves this LAN address`,
        ExitCode.CANTCREATE,
      );
    if (code === 'EADDRNOTAVAIL')
      throw new UserError(
        `the LAN address ${lanAddress} is not on any interface here: fix lanAddress / --lan-address`,
        ExitCode.CONFIG,
      );
    throw explainOpenError(`PAP's UDP socket ${lanAddress}:${port}`, e);
  }
}

/** Throws when another router answers PAP on `broadcast` (docs/router.md, "One router per LAN"). */
export async function refuseOtherRouterOnLan(
  lanAddress: string,
  broadcast: string,
  port: number,
): Promise<void> {
  const other = await probeLanForRouter({ lanAddress, broadcast, port });
  if (other !== undefined)
    throw new UserError(
      `another router answers PAP on this LAN at ${other.address}:${other.port ?? port} ` +
        `(probe to ${broadcast}:${port}): one router per LAN; stop that one first`,
      ExitCode.CANTCREATE,
    );
}

/** Answers other routers' probes from the PAP socket, so they refuse to start; resolves with a close. */
export function answerLanProbes(
  pap: PapServer,
  udp: UdpPapTransport,
  broadcast: string,
  port: number,
): Promise<() => Promise<void>> {
  return listenForLanProbes({
    broadcast,
    port,
    answer: (bytes, peer) => {
      void pap.receiveAsync(bytes, peer).then(
        (reply) => {
          if (reply !== undefined) udp.send(reply, peer);
        },
        () => undefined,
      );
    },
  });
}

/**
 * PAP over ICMP: on the LAN interface's own raw socket, or on the caller's
 * icmpRx; undefined when the caller gave devices without one.
 */
export function openPapIcmp(
  config: RouterConfig,
  given: RouterDevices | undefined,
  lanTx: PacketDevice,
  lanInterface: string | undefined,
): IcmpPapTransport | undefined {
  try {
    return given === undefined
      ? IcmpPapTransport.open({
          address: config.lanAddress,
          device: lanInterface!,
          sender: lanTx as PacketSink,
        })
      : given.icmpRx === undefined
        ? undefined
        : IcmpPapTransport.open({
            address: config.lanAddress,
            receiver: given.icmpRx,
            sender: lanTx,
          });
  } catch (e) {
    throw explainOpenError('the raw ICMP socket for PAP', e);
  }
}
