/**
 * The host agent's three packet devices (docs/host.md): the TUN device the
 * shared address lives on, a raw socket receiving protocol 4 (IP-in-IP from
 * the router, outer header included), and an IPPROTO_RAW sender for the
 * encapsulated packets. Also where the MTUs come from.
 */
import { existsSync } from 'node:fs';
import { interfaceMtu } from '../io/interfaces.ts';
import type { PacketDevice } from '../io/types.ts';
import { openRawSender, openRawSocket } from '../io/raw.ts';
import { openTun } from '../io/tun.ts';
import { IpProtocol } from '../wire/result.ts';
import { offloadByDefault, OffloadTun } from '../io/offload-tun.ts';

export interface HostDevices {
  readonly tun: PacketDevice;
  readonly tunnelIn: PacketDevice;
  readonly tunnelOut: PacketDevice;
}

/** The MTU native-setup/host-setup.sh gives the TUN device: 1500 minus the outer header. */
export const DEFAULT_TUN_MTU = 1480;
export const DEFAULT_LAN_MTU = 1500;

// Where the agent's devices and addresses are looked up (kept importable from here).
export { addressOf, interfaceMtu, interfaceOf } from '../io/interfaces.ts';

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
    tunnelIn = openRawSocket(IpProtocol.IPIP, { onError });
    const tunnelOut = openRawSender({ onError });
    return { tun, tunnelIn, tunnelOut, createdTun, tunMtu: interfaceMtu(tun.name) ?? DEFAULT_TUN_MTU };
  } catch (err) {
    tunnelIn?.close();
    device.close();
    throw err;
  }
}
