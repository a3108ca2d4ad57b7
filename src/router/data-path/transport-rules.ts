/**
 * How many bytes of transport header a first fragment must hold: a fact
 * both directions of the router use.
 */
import { AH_FIXED_LENGTH } from '../../wire/ah.ts';
import { ESP_HEADER_LENGTH } from '../../wire/esp.ts';
import { ICMP_HEADER_LENGTH } from '../../wire/icmp.ts';
import { IpProtocol } from '../../wire/result.ts';
import { TCP_MIN_HEADER_LENGTH } from '../../wire/tcp.ts';
import { UDP_HEADER_LENGTH } from '../../wire/udp.ts';

// wire's header lengths as module constants (see wire/bytes.ts).
const TCP_HEADER = TCP_MIN_HEADER_LENGTH;
const UDP_HEADER = UDP_HEADER_LENGTH;
const ICMP_HEADER = ICMP_HEADER_LENGTH;
const ESP_HEADER = ESP_HEADER_LENGTH;
const AH_HEADER = AH_FIXED_LENGTH;

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
      return TCP_HEADER;
    case IpProtocol.UDP:
      return UDP_HEADER;
    case IpProtocol.ICMP:
      return ICMP_HEADER;
    case IpProtocol.ESP:
      return ESP_HEADER;
    case IpProtocol.AH:
      return AH_HEADER;
    default:
      return 0;
  }
}
