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

// Read here through `Field`, which is not exported: V8 compiles a module's
// own constants into the code, while an exported binding is loaded from its
// module cell at every use.
const Field = { SRC_PORT: 0, DST_PORT: 2 } as const;
export const PortField = Field;
/** Octets the two ports take: what a first fragment must hold for them to be read. */
export const PORTS_LENGTH = 4;

/** Source port of the TCP or UDP header at buf[l4]. */
export function sourcePort(buf: Uint8Array, l4: number): number {
  return u16(buf, l4 + Field.SRC_PORT);
}

/** Destination port of the TCP or UDP header at buf[l4]. */
export function destinationPort(buf: Uint8Array, l4: number): number {
  return u16(buf, l4 + Field.DST_PORT);
}
