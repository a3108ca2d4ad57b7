/**
 * The router fast path's maps as native-setup/bpf/router.h lays them out:
 * map names, the config record, the counters and their names, the FIG. 12
 * planes. test/unit/router/ebpf-layout.test.ts compares this file with the
 * header, so the two cannot drift apart unnoticed.
 */

export const ROUTER_OBJECT = 'router';

export const RouterProgram = {
  lanTc: 'dn_router_lan',
  wanTc: 'dn_router_wan',
  lanXdp: 'dn_router_lan_xdp',
  wanXdp: 'dn_router_wan_xdp',
} as const;

export const RouterMap = {
  config: 'config',
  counters: 'counters',
  portOwner: 'port_owner',
  spiBlocks: 'spi_blocks',
  spiExact: 'spi_exact',
  holders: 'holders',
  lastSeen: 'last_seen',
  outboundSa: 'outbound_sa',
  withdrawnSpis: 'withdrawn_spis',
} as const;

/** DN_MAX_SHARED: the most shared addresses the programs look at (the configuration's limit too). */
export const MAX_SHARED = 16;

/** DN_PORTS: port_owner holds this many slots per shared address, last_seen PLANES times as many. */
export const PORTS = 65536;

/** struct dn_router_config: byte offsets of its fields, and its size. */
export const CONFIG_OFFSETS = {
  alive_until_ns: 0,
  shared_count: 8,
  lan_addr: 12,
  lan_ifindex: 16,
  wan_ifindex: 20,
  tun_ifindex: 24,
  spi_shift: 28,
  tun_mtu: 32,
  lan_mtu: 34,
  lan_mac: 36,
  wan_mac: 42,
  shared: 48,
} as const;
export const CONFIG_BYTES = 48 + 4 * MAX_SHARED + 8;

export interface FastPathConfig {
  /** CLOCK_MONOTONIC nanoseconds after which the programs leave everything to the slow path. */
  readonly aliveUntilNs: bigint;
  /** 1..MAX_SHARED, in the configuration's order: an address's index makes its port slots. */
  readonly sharedAddresses: readonly number[];
  readonly lanAddress: number;
  readonly lanIfindex: number;
  readonly wanIfindex: number;
  readonly tunIfindex: number;
  readonly spiShift: number;
  readonly tunMtu: number;
  readonly lanMtu: number;
  /** XDP only; six bytes each. */
  readonly lanMac?: Uint8Array;
  readonly wanMac?: Uint8Array;
}

/** Writes the config record into `out` (CONFIG_BYTES long): addresses in network order, the rest in host order. */
export function encodeConfig(c: FastPathConfig, out: Uint8Array): void {
  out.fill(0);
  const o = CONFIG_OFFSETS;
  const v = new DataView(out.buffer, out.byteOffset, CONFIG_BYTES);
  v.setBigUint64(o.alive_until_ns, c.aliveUntilNs, true);
  const shared = c.sharedAddresses;
  if (shared.length < 1 || shared.length > MAX_SHARED)
    throw new RangeError(`the fast path serves 1 to ${MAX_SHARED} shared addresses, not ${shared.length}`);
  v.setUint32(o.shared_count, shared.length, true);
  shared.forEach((a, i) => v.setUint32(o.shared + 4 * i, a >>> 0, false));
  v.setUint32(o.lan_addr, c.lanAddress >>> 0, false);
  v.setUint32(o.lan_ifindex, c.lanIfindex, true);
  v.setUint32(o.wan_ifindex, c.wanIfindex, true);
  v.setUint32(o.tun_ifindex, c.tunIfindex, true);
  v.setUint32(o.spi_shift, c.spiShift, true);
  v.setUint16(o.tun_mtu, c.tunMtu, true);
  v.setUint16(o.lan_mtu, c.lanMtu, true);
  if (c.lanMac) out.set(c.lanMac.subarray(0, 6), o.lan_mac);
  if (c.wanMac) out.set(c.wanMac.subarray(0, 6), o.wan_mac);
}

/** enum dn_traffic: the slow path's traffic counter names for what the fast path took. */
export const FAST_TRAFFIC = [
  'lan-rx-packets',
  'lan-rx-bytes',
  'outbound-packets',
  'outbound-bytes',
  'wan-rx-packets',
  'wan-rx-bytes',
  'inbound-packets',
  'inbound-bytes',
] as const;
export type FastTraffic = (typeof FAST_TRAFFIC)[number];

/** enum dn_drop: the slow path's drop reasons the fast path decides too, and its own failure. */
export const FAST_DROPS = [
  'not-shared-source',
  'spoofed-port',
  'no-lease',
  'spi-withdrawn',
  'fastpath-error',
] as const;
export type FastDrop = (typeof FAST_DROPS)[number];

/** enum dn_pass: why a packet went on to the kernel (and the slow path) unchanged. */
export const FAST_PASSES = [
  'other',
  'stale',
  'gso',
  'outer-malformed',
  'outer-options',
  'outer-fragment',
  'malformed',
  'options',
  'fragment',
  'hairpin',
  'shared-source',
  'ttl',
  'truncated',
  'icmp',
  'protocol',
  'no-owner',
  'reserved-spi',
  'too-big',
  'no-route',
  'other-interface',
  'no-neighbour',
  'adjust-failed',
] as const;
export type FastPass = (typeof FAST_PASSES)[number];

/** enum dn_direction. */
export const FAST_DIRECTIONS = ['lan', 'wan'] as const;

/** struct dn_router_counters: u64 each, traffic, drop, pass[lan], pass[wan]. */
export const COUNTER_SLOTS = FAST_TRAFFIC.length + FAST_DROPS.length + 2 * FAST_PASSES.length;
export const COUNTERS_BYTES = COUNTER_SLOTS * 8;

/**
 * last_seen planes, by IP protocol: key (address index * PLANES + plane) * 65536 + port,
 * so a one-address router's keys are plane * 65536 + port.
 */
export const PLANE_OF_PROTOCOL: Readonly<Record<number, number>> = { 6: 0, 17: 1, 1: 2 };
export const PROTOCOL_OF_PLANE = [6, 17, 1] as const;
export const PLANES = 3;

/** The last_seen key of `plane` for a port slot (address index * 65536 + port). */
export const lastSeenKey = (plane: number, slot: number): number =>
  (Math.floor(slot / PORTS) * PLANES + plane) * PORTS + (slot % PORTS);

/** withdrawn_spis: key spi >> WITHDRAWN_SHIFT (u32), value a u64 with bit (spi & 63) per withdrawn SPI. */
export const WITHDRAWN_SHIFT = 6;
export const WITHDRAWN_VALUE_BYTES = 8;

/** struct dn_sa_key / dn_sa_value. */
export const SA_KEY_BYTES = 12;
export const SA_VALUE_BYTES = 16;
