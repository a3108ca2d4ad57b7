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
 * demultiplexing, the hosts' port translation, IPsec selectors) take the
 * offsets from here; TcpField and UdpField are built on them.
 */
export const PortField = { SRC_PORT: 0, DST_PORT: 2 } as const;

/** Octets the two ports take: what a first fragment must hold for them to be read. */
export const PORTS_LENGTH = 4;
