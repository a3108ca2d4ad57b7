/**
 * The few facts about transport headers both directions of the router use:
 * how many bytes a first fragment must hold, and which ICMP messages carry a
 * query identifier.
 */
import { IcmpType } from '../../wire/icmp.ts';
import { IpProtocol } from '../../wire/result.ts';

/**
 * Bytes of transport header a datagram (or its first fragment) must hold
 * before the router reads its demultiplexing field; 0 for protocols it does
 * not demultiplex.
 *
 * | protocol | bytes | why                                                   |
 * |----------|-------|-------------------------------------------------------|
 * | TCP      | 20    | the whole fixed header: RFC 1858 3.1 drops a first    |
 * |          |       | fragment that splits it (flags in a later fragment)   |
 * | UDP      | 8     | the header                                            |
 * | ICMP     | 8     | type, code, checksum, identifier, sequence            |
 * | ESP      | 8     | SPI and sequence number (RFC 4303 2)                  |
 * | AH       | 12    | next header .. sequence number (RFC 4302 2)           |
 */
export function transportMinimum(protocol: number): number {
  switch (protocol) {
    case IpProtocol.TCP:
      return 20;
    case IpProtocol.UDP:
    case IpProtocol.ICMP:
    case IpProtocol.ESP:
      return 8;
    case IpProtocol.AH:
      return 12;
    default:
      return 0;
  }
}

/** Timestamp request and reply (RFC 792); the codec names only the types it shapes. */
export const ICMP_TIMESTAMP = 13;
export const ICMP_TIMESTAMP_REPLY = 14;

/**
 * ICMP messages with an identifier at offset 4 that the hosts translate like
 * a port (RFC 5508 3): echo and timestamp, requests and replies.
 */
export function isIcmpQuery(type: number): boolean {
  return (
    type === IcmpType.EchoRequest ||
    type === IcmpType.EchoReply ||
    type === ICMP_TIMESTAMP ||
    type === ICMP_TIMESTAMP_REPLY
  );
}
