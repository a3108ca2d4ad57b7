/**
 * The host's PAP transport for a configuration: UDP from the host's LAN
 * address (any port) to the router's port 7032 by default, or ICMP types
 * 32/33 from the LAN address. The socket stays open while the agent runs:
 * the router sends its withdraws to where it last heard the host from.
 */
import type { HostConfig } from '../../config/host-config.ts';
import { IcmpPapTransport } from '../../pap/icmp-transport.ts';
import type { PapTransport } from '../../pap/transport.ts';
import { UdpPapTransport } from '../../pap/udp-transport.ts';

export type ClosablePapTransport = PapTransport & { close(): unknown };

/** Rejects with the bind error (EADDRNOTAVAIL when the LAN address is not this host's; EPERM for ICMP without CAP_NET_RAW). */
export async function openHostPapTransport(
  config: HostConfig,
  onError: (err: Error) => void,
): Promise<ClosablePapTransport> {
  if (config.pap.transport === 'icmp') return IcmpPapTransport.open({ address: config.lanAddress });
  return UdpPapTransport.open({
    address: config.lanAddress,
    port: 0,
    defaultPeerPort: config.pap.udpPort,
    onError,
  });
}
