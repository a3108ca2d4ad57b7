/**
 * The host's PAP transport for a configuration: UDP to the router's port
 * 7032 (default), or ICMP types 32/33.
 */
import type { HostConfig } from '../config/host-config.ts';
import { openHostPapIcmp } from './pap-icmp.ts';
import { openHostPapUdp } from './pap-udp.ts';
import type { ClosablePapTransport } from './pap-udp.ts';

export function openHostPapTransport(
  config: HostConfig,
  onError: (err: Error) => void,
): Promise<ClosablePapTransport> {
  if (config.pap.transport === 'icmp') return Promise.resolve(openHostPapIcmp(config.lanAddress, onError));
  return openHostPapUdp(config.lanAddress, onError);
}
