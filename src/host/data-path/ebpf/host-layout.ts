/**
 * The host fast path's maps as native-setup/bpf/host.h lays them out.
 * test/unit/host/ebpf-host-layout.test.ts compares this file with the
 * header and the compiled object.
 */

export const HOST_OBJECT = 'host';

export const HostProgram = { out: 'dn_host_out', in: 'dn_host_in' } as const;

export const HostMap = {
  config: 'host_config',
  counters: 'host_counters',
  leased: 'leased',
  outPort: 'out_port',
  inPort: 'in_port',
  lastUse: 'last_use',
} as const;

export const HOST_CONFIG_OFFSETS = {
  alive_until_ns: 0,
  shared: 8,
  lan_addr: 12,
  router: 16,
  lan_ifindex: 20,
  tun_ifindex: 24,
  lan_mtu: 28,
  tun_mtu: 30,
  mode: 32,
  ipsec: 36,
} as const;
export const HOST_CONFIG_BYTES = 48;

export const HostMode = { native: 0, translate: 1 } as const;

export interface HostFastPathConfig {
  readonly aliveUntilNs: bigint;
  readonly sharedAddress: number;
  readonly lanAddress: number;
  readonly routerAddress: number;
  readonly lanIfindex: number;
  readonly tunIfindex: number;
  readonly lanMtu: number;
  readonly tunMtu: number;
  readonly mode: 'native' | 'translate';
  readonly ipsec: boolean;
}

export function encodeHostConfig(c: HostFastPathConfig, out: Uint8Array): void {
  out.fill(0);
  const o = HOST_CONFIG_OFFSETS;
  const v = new DataView(out.buffer, out.byteOffset, HOST_CONFIG_BYTES);
  v.setBigUint64(o.alive_until_ns, c.aliveUntilNs, true);
  v.setUint32(o.shared, c.sharedAddress >>> 0, false);
  v.setUint32(o.lan_addr, c.lanAddress >>> 0, false);
  v.setUint32(o.router, c.routerAddress >>> 0, false);
  v.setUint32(o.lan_ifindex, c.lanIfindex, true);
  v.setUint32(o.tun_ifindex, c.tunIfindex, true);
  v.setUint16(o.lan_mtu, c.lanMtu, true);
  v.setUint16(o.tun_mtu, c.tunMtu, true);
  v.setUint32(o.mode, HostMode[c.mode], true);
  v.setUint32(o.ipsec, c.ipsec ? 1 : 0, true);
}

export const HOST_TRAFFIC = ['out-packets', 'out-bytes', 'in-packets', 'in-bytes'] as const;

export const HOST_PASSES = [
  'other',
  'stale',
  'ipsec',
  'gso',
  'malformed',
  'options',
  'fragment',
  'not-shared',
  'not-router',
  'too-big',
  'tcp-control',
  'icmp',
  'protocol',
  'unleased',
  'no-mapping',
  'no-route',
  'adjust-failed',
] as const;

/** traffic, error, pass[out], pass[in]; u64 each. */
export const HOST_COUNTER_SLOTS = HOST_TRAFFIC.length + 1 + 2 * HOST_PASSES.length;
export const HOST_COUNTERS_BYTES = HOST_COUNTER_SLOTS * 8;

/** Planes of out_port, in_port and last_use. */
export const HOST_PLANE_OF_PROTOCOL: Readonly<Record<number, number>> = { 6: 0, 17: 1 };
