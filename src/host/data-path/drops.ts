import type { IpsecDropReason } from './ipsec-step.ts';

/**
 * Why the host agent dropped a packet, by direction. Each is a counter
 * (CounterSet) shown by `distnat status host` and exported to Prometheus.
 */
export const OUTBOUND_DROPS = [
  'no-lease', // no port block held yet (or any more): nothing may leave
  'not-ipv4', // an IPv6 (or other version) packet in the TUN device
  'malformed', // IPv4 header checks failed (truncated, bad IHL or length, bad checksum, bad options)
  'wrong-source', // the source is not the shared address (the router would drop it)
  'unleased-port', // native mode: a TCP/UDP source port outside the leased blocks
  'no-free-port', // translation: a new flow and every leased port in use
  'no-mapping', // translation: an ICMP error quoting a flow with no translation
  'not-translatable', // translation: transport header truncated, port 0, or a failing ICMP error
  'too-big', // DF set and too long for the LAN after encapsulation ("fragmentation needed" sent back)
  'no-room', // an oversized datagram without DF that needed more fragments than the scratch buffer holds
  'ipsec-no-sa',
  'ipsec-auth-failed',
  'ipsec-replay',
  'ipsec-policy',
  'tx-refused', // the raw socket refused it (queue full, EMSGSIZE, no route ...)
] as const;
export type OutboundDrop = (typeof OUTBOUND_DROPS)[number];

export const INBOUND_DROPS = [
  'malformed', // the outer header, or the IP-in-IP framing, failed its checks
  'not-from-router', // the outer source is not the router's LAN address
  'inner-malformed', // the inner IPv4 header failed its checks
  'not-for-us', // the inner destination is not the shared address
  'no-mapping', // translation back: no live row for the leased port or identifier
  'not-translatable', // translation back: transport header truncated, port 0, or a failing ICMP error
  'ipsec-no-sa',
  'ipsec-auth-failed',
  'ipsec-replay',
  'ipsec-policy',
  'tx-refused', // the TUN device refused it
] as const;
export type InboundDrop = (typeof INBOUND_DROPS)[number];

/** Things that happened to packets that went on. */
export const FORWARDER_EVENTS = [
  'outbound', // packets sent to the router
  'inbound', // packets written into the TUN device
  'fragmentation-needed', // ICMP errors written into the TUN device
  'fragmented', // oversized datagrams without DF split before encapsulation
  'fragments', // fragments those made
  'mss-clamped-outbound',
  'mss-clamped-inbound',
  'ipsec-passthrough-outbound', // ESP/AH passed unchanged (no IPsec step yet)
  'ipsec-passthrough-inbound',
] as const;
export type ForwarderEvent = (typeof FORWARDER_EVENTS)[number];

// The IPsec step's reasons are drop reasons of both directions (a compile-time check).
type Covers<A extends string, B extends string> = [A] extends [B] ? true : false;
export const IPSEC_REASONS_COUNTED: Covers<IpsecDropReason, OutboundDrop & InboundDrop> = true;
