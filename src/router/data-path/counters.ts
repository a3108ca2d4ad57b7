/**
 * What the router counts on its packet path: why packets were dropped (one
 * name per reason, so a drop is never "other") and how much went each way.
 * The names are fixed at start so counting is one indexed add (CounterSet).
 */

/** Drops of packets hosts sent (LAN -> WAN, and hairpin before the turn). */
export const OUTBOUND_DROPS = [
  /** The outer IPv4 header, or the IP-in-IP framing around the inner datagram, is broken. */
  'tunnel-malformed',
  /** The outer datagram is a fragment: the router forwards only whole tunnelled datagrams. */
  'tunnel-fragment',
  /** Outer destination is not the router's LAN address (a protocol-4 packet for someone else). */
  'tunnel-not-for-router',
  /** The inner IPv4 header fails its checks. */
  'inner-malformed',
  /** Inner source is not the shared address: the host is not using distributed NAT. */
  'not-shared-source',
  /** The outer source does not own the inner source port or ICMP query id (or a quoted one). */
  'spoofed-port',
  /** ESP, AH, a non-first fragment or an unportable ICMP error from a host that holds no lease. */
  'no-lease',
  /** A hairpinned datagram whose TTL would reach 0 here. */
  'ttl-exceeded',
] as const;

/** Drops of packets arriving for the shared address (WAN -> LAN, and hairpin after the turn). */
export const INBOUND_DROPS = [
  /** The IPv4 header fails its checks. */
  'ip-malformed',
  /** Not addressed to the shared address (a route sent something else into the TUN). */
  'not-shared-destination',
  /** No host owns the port, ICMP id or SPI. */
  'no-owner',
  /** A WAN packet whose source is the shared address itself (spoofed). */
  'wan-shared-source',
  /** ESP/AH whose SPI lies in a block the router withdrew from its host (and has not leased since). */
  'spi-withdrawn',
  /** SPI 0-255: reserved (RFC 4303 2.1), never leased. */
  'reserved-spi',
  /** A non-first fragment whose first fragment was not seen and which could not be held. */
  'fragment-too-big',
] as const;

/** Drops that apply in both directions. */
export const COMMON_DROPS = [
  /** An unfragmented datagram too short for its transport header. */
  'transport-truncated',
  /** A first fragment too short to hold the transport header (RFC 1858 3.1). */
  'tiny-fragment',
  /** A TCP fragment at offset 8 bytes, which could overwrite the first fragment's header (RFC 1858 3.2). */
  'overlapping-fragment',
  /** An ICMP error whose quoted datagram is too short or broken. */
  'icmp-error-malformed',
  /** An ICMP error quoting a datagram that was not from (inbound) or to (outbound) the shared address. */
  'icmp-error-not-ours',
  /** An ICMP type that is neither a query with an identifier nor an error. */
  'unsupported-icmp',
  /** An IP protocol the router cannot demultiplex (not TCP, UDP, ICMP, ESP or AH). */
  'unsupported-protocol',
  /** The encapsulated datagram would exceed the LAN MTU. */
  'too-big',
] as const;

export const DROP_REASONS = [...OUTBOUND_DROPS, ...INBOUND_DROPS, ...COMMON_DROPS] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export const TRAFFIC_COUNTERS = [
  /** IP-in-IP datagrams read from the LAN raw socket, and their bytes (outer header included). */
  'lan-rx-packets',
  'lan-rx-bytes',
  /** Inner datagrams written into the TUN (to the WAN), and their bytes. */
  'outbound-packets',
  'outbound-bytes',
  /** Datagrams read from the TUN (from the WAN), and their bytes. */
  'wan-rx-packets',
  'wan-rx-bytes',
  /** Datagrams tunnelled to hosts, and their bytes (outer header included; hairpin and released fragments too). */
  'inbound-packets',
  'inbound-bytes',
  /** Host-to-shared-address datagrams turned around inside the router. */
  'hairpin-packets',
  /**
   * IKE a host sent from a port block just withdrawn from it, let out for the
   * drain (tables/withdrawn-ports.ts): the Delete telling its peers.
   */
  'withdrawn-ike-drain',
  /** Non-first fragments held until their first fragment, and released to its owner. */
  'fragments-held',
  'fragments-released',
  /** Packets a device refused in sendBatch (queue full or an error; the device's stats say which). */
  'tun-tx-refused',
  'lan-tx-refused',
  /** Batches handled, each way. */
  'lan-batches',
  'wan-batches',
] as const;
export type TrafficCounter = (typeof TRAFFIC_COUNTERS)[number];
