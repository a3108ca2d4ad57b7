/**
 * The two fields TCP (RFC 9293 3.1) and UDP (RFC 768) headers both open
 * with, 16 bits each:
 *
 * | offset | size | field            |
 * |--------|------|------------------|
 * | 0      | 2    | source port      |
 * | 2      | 2    | destination port |
 *
 * Steps that treat a datagram of either protocol alike (the router's
 * demultiplexing, the hosts' port translation, IPsec selectors) read them
 * here; TcpField and UdpField give the same offsets under their own names.
 */
import { u16 } from './bytes.ts';

// Module constants, as bytes.ts explains; PortField gathers them for other
// modules.
const SRC_PORT = 0;
const DST_PORT = 2;
export const PortField = { SRC_PORT, DST_PORT } as const;
/** Octets the two ports take: what a first fragment must hold for them to be read. */
export const PORTS_LENGTH = 4;

/** Source port of the TCP or UDP header at buf[l4]. */
export function sourcePort(buf: Uint8Array, l4: number): number {
  return u16(buf, l4 + SRC_PORT);
}

/** Destination port of the TCP or UDP header at buf[l4]. */
export function destinationPort(buf: Uint8Array, l4: number): number {
  return u16(buf, l4 + DST_PORT);
}
