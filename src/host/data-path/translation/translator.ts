import { put16, u16, u32 } from '../../../wire/bytes.ts';
import { updateChecksum16, updateUdpChecksum16, verifiesTo0 } from '../../../wire/checksum.ts';
import { ICMP_HEADER_LENGTH, IcmpField, IcmpType, isIcmpErrorType } from '../../../wire/icmp.ts';
import { checkQuotedIpv4 } from '../../../wire/icmp-quoted.ts';
import { IPV4_MIN_HEADER_LENGTH, Ipv4Field, Ipv4FragmentWord } from '../../../wire/ipv4.ts';
import { PortField } from '../../../wire/ports.ts';
import { IpProtocol } from '../../../wire/result.ts';
import { TCP_MIN_HEADER_LENGTH, TcpField } from '../../../wire/tcp.ts';
import { UDP_HEADER_LENGTH, UdpField } from '../../../wire/udp.ts';
import type { SourcePortTranslationTable } from './sptt.ts';

/**
 * Port translation on the host, in place (patent Method 170 step 178 and
 * Method 184 step 190): outbound, the source port (or ICMP query
 * identifier) becomes the leased port; inbound, the destination port (or
 * identifier) goes back to the local one. Checksums are patched with RFC
 * 1624 incremental updates: the ports are covered by the transport checksum
 * but not by the IPv4 header checksum, so nothing else changes.
 *
 * Field offsets used, relative to the IPv4 header (ip) and to the transport
 * header (l4):
 *
 * | where  | offset | field                                   |
 * |--------|--------|-----------------------------------------|
 * | ip     | 6      | flags and fragment offset (13 low bits)  |
 * | ip     | 9      | protocol                                |
 * | ip     | 12, 16 | source, destination address             |
 * | TCP    | 0, 2   | source, destination port                |
 * | TCP    | 13     | flags (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10) |
 * | TCP    | 16     | checksum                                |
 * | UDP    | 0, 2   | source, destination port                |
 * | UDP    | 6      | checksum (0 = none, RFC 768)            |
 * | ICMP   | 0      | type                                    |
 * | ICMP   | 2      | checksum (whole ICMP message)           |
 * | ICMP   | 4      | query identifier (echo 8/0, timestamp 13/14) |
 * | ICMP   | 8      | error types: the quoted datagram        |
 *
 * ICMP errors (RFC 5508 section 7): an inbound error quotes a packet this
 * host sent, whose source port is a leased one; it is translated back so
 * the local stack can match the error to its socket, fixing the quoted
 * transport checksum when the quote holds it and the ICMP checksum over
 * both changes. An outbound error (the local stack rejecting an inbound
 * packet) quotes that packet with its local destination port, which goes
 * forward to the leased port. Errors do not refresh rows.
 *
 * Fragments: only a datagram's first fragment carries the ports. It is
 * translated; later fragments pass unchanged. The checksum covers the whole
 * datagram and sits in the first fragment, so patching it there is right
 * for the reassembled datagram.
 */

/** What a translation did. Anything but 'translated' and 'unchanged' means: drop the packet and count why. */
export type TranslateOutcome =
  | 'translated' // ports or identifiers rewritten (or already equal), checksums patched
  | 'unchanged' // nothing to translate: native mode, later fragment, ESP/AH/other protocol, a query from outside
  | 'no-mapping' // inbound (or an error quoting a flow) with no live row
  | 'no-free-port' // outbound new flow, but every leased port is in use
  | 'not-translatable'; // malformed, truncated, port 0, or an ICMP error that fails its checks

export type TranslateCounters = Record<TranslateOutcome, number>;

// What the translation reads and writes, as module constants (see
// wire/bytes.ts).
const TCP = IpProtocol.TCP;
const UDP = IpProtocol.UDP;
const ICMP = IpProtocol.ICMP;
const ECHO_REPLY = IcmpType.EchoReply;
const ECHO_REQUEST = IcmpType.EchoRequest;
const TIMESTAMP = IcmpType.Timestamp;
const TIMESTAMP_REPLY = IcmpType.TimestampReply;
const IP_VERSION_IHL = Ipv4Field.VERSION_IHL;
const IP_FLAGS_FRAGMENT = Ipv4Field.FLAGS_FRAGMENT;
const IP_PROTOCOL = Ipv4Field.PROTOCOL;
const IP_SRC = Ipv4Field.SRC;
const IP_DST = Ipv4Field.DST;
const IP_FRAGMENT_OFFSET = Ipv4FragmentWord.OFFSET;
const SRC_PORT = PortField.SRC_PORT;
const DST_PORT = PortField.DST_PORT;
const TCP_FLAGS = TcpField.FLAGS;
const TCP_CHECKSUM = TcpField.CHECKSUM;
const UDP_CHECKSUM = UdpField.CHECKSUM;
const ICMP_TYPE = IcmpField.TYPE;
const ICMP_CHECKSUM = IcmpField.CHECKSUM;
const ICMP_IDENTIFIER = IcmpField.IDENTIFIER;
const TCP_HEADER = TCP_MIN_HEADER_LENGTH;
const UDP_HEADER = UDP_HEADER_LENGTH;
const ICMP_HEADER = ICMP_HEADER_LENGTH;
const IP_HEADER = IPV4_MIN_HEADER_LENGTH;

// Outcomes travel as small integers inside the translator and are counted
// in typed arrays: a keyed property increment per packet costs more than
// the translation itself.
const TRANSLATED = 0;
const UNCHANGED = 1;
const NO_MAPPING = 2;
const NO_FREE_PORT = 3;
const NOT_TRANSLATABLE = 4;
const OUTCOMES: readonly TranslateOutcome[] = [
  'translated',
  'unchanged',
  'no-mapping',
  'no-free-port',
  'not-translatable',
];

function toRecord(counts: Float64Array): TranslateCounters {
  return {
    translated: counts[TRANSLATED]!,
    unchanged: counts[UNCHANGED]!,
    'no-mapping': counts[NO_MAPPING]!,
    'no-free-port': counts[NO_FREE_PORT]!,
    'not-translatable': counts[NOT_TRANSLATABLE]!,
  };
}

export class PortTranslator {
  private readonly outboundCounts = new Float64Array(OUTCOMES.length);
  private readonly inboundCounts = new Float64Array(OUTCOMES.length);

  constructor(readonly table: SourcePortTranslationTable) {}

  /** Packets by outcome and direction since start (a snapshot, for status and metrics). */
  get counters(): { readonly outbound: TranslateCounters; readonly inbound: TranslateCounters } {
    return { outbound: toRecord(this.outboundCounts), inbound: toRecord(this.inboundCounts) };
  }

  /**
   * Translates a packet the local stack sent (read from the TUN device).
   * `ipOffset` and `l4Offset` locate the IPv4 and transport headers in
   * `buf`; `end` is where the IPv4 datagram ends (ipOffset + total length).
   */
  outbound(buf: Uint8Array, ipOffset: number, l4Offset: number, end: number, now: number): TranslateOutcome {
    const code = this.translate(buf, ipOffset, l4Offset, end, now, false);
    this.outboundCounts[code]! += 1;
    return OUTCOMES[code]!;
  }

  /** Translates a packet from the router, before it is written to the TUN device. Arguments as for `outbound`. */
  inbound(buf: Uint8Array, ipOffset: number, l4Offset: number, end: number, now: number): TranslateOutcome {
    const code = this.translate(buf, ipOffset, l4Offset, end, now, true);
    this.inboundCounts[code]! += 1;
    return OUTCOMES[code]!;
  }

  private translate(
    buf: Uint8Array,
    ip: number,
    l4: number,
    end: number,
    now: number,
    inbound: boolean,
  ): number {
    if (this.table.native) return UNCHANGED;
    if (!(ip >= 0 && l4 >= ip + IP_HEADER && l4 <= end && end <= buf.length)) return NOT_TRANSLATABLE;
    if ((u16(buf, ip + IP_FLAGS_FRAGMENT) & IP_FRAGMENT_OFFSET) !== 0) return UNCHANGED;
    const protocol = buf[ip + IP_PROTOCOL]!;
    const table = this.table;

    if (protocol === TCP || protocol === UDP) {
      const isTcp = protocol === TCP;
      if (l4 + (isTcp ? TCP_HEADER : UDP_HEADER) > end) return NOT_TRANSLATABLE;
      const portAt = l4 + (inbound ? DST_PORT : SRC_PORT);
      const from = u16(buf, portAt);
      if (from === 0) return NOT_TRANSLATABLE;
      const flags = isTcp ? buf[l4 + TCP_FLAGS]! : 0;
      const to = inbound
        ? table.inbound(protocol, from, flags, now)
        : table.outbound(protocol, from, flags, now);
      if (to < 0) return inbound ? NO_MAPPING : NO_FREE_PORT;
      if (to !== from) {
        put16(buf, portAt, to);
        const ckAt = l4 + (isTcp ? TCP_CHECKSUM : UDP_CHECKSUM);
        const ck = u16(buf, ckAt);
        put16(buf, ckAt, isTcp ? updateChecksum16(ck, from, to) : updateUdpChecksum16(ck, from, to));
      }
      return TRANSLATED;
    }

    if (protocol !== ICMP) return UNCHANGED;
    if (l4 + ICMP_HEADER > end) return NOT_TRANSLATABLE;
    const type = buf[l4 + ICMP_TYPE]!;
    if (isIcmpErrorType(type)) return this.translateQuoted(buf, ip, l4, end, now, inbound);
    // Our queries go out and their replies come back; queries from outside
    // (and our replies to them) carry the remote's identifier: untouched.
    const ours = inbound
      ? type === ECHO_REPLY || type === TIMESTAMP_REPLY
      : type === ECHO_REQUEST || type === TIMESTAMP;
    if (!ours) return UNCHANGED;
    const from = u16(buf, l4 + ICMP_IDENTIFIER);
    const to = inbound ? table.inbound(ICMP, from, 0, now) : table.outbound(ICMP, from, 0, now);
    if (to < 0) return inbound ? NO_MAPPING : NO_FREE_PORT;
    if (to !== from) {
      put16(buf, l4 + ICMP_IDENTIFIER, to);
      put16(buf, l4 + ICMP_CHECKSUM, updateChecksum16(u16(buf, l4 + ICMP_CHECKSUM), from, to));
    }
    return TRANSLATED;
  }

  /**
   * The datagram quoted in an ICMP error at l4 + 8. Inbound, it is one this
   * host sent: its source is our address (the error's destination) and its
   * source port a leased one. Outbound, it is one this host received: its
   * destination is our address and its destination port a local one.
   */
  private translateQuoted(
    buf: Uint8Array,
    ip: number,
    l4: number,
    end: number,
    now: number,
    inbound: boolean,
  ): number {
    // RFC 5508 REQ-3: an error whose ICMP checksum fails is dropped, not translated.
    if (!verifiesTo0(buf, l4, end)) return NOT_TRANSLATABLE;
    const q = l4 + ICMP_HEADER;
    if (checkQuotedIpv4(buf, q, end - q) !== null) return NOT_TRANSLATABLE;
    if ((u16(buf, q + IP_FLAGS_FRAGMENT) & IP_FRAGMENT_OFFSET) !== 0) return UNCHANGED;
    if (u32(buf, inbound ? q + IP_SRC : q + IP_DST) !== u32(buf, inbound ? ip + IP_DST : ip + IP_SRC))
      return NOT_TRANSLATABLE;
    const qt = q + (buf[q + IP_VERSION_IHL]! & 0x0f) * 4;
    const protocol = buf[q + IP_PROTOCOL]!;

    let portAt: number;
    let ckAt: number; // -1 when the quote stops before the transport checksum
    let udp = false;
    if (protocol === TCP || protocol === UDP) {
      portAt = qt + (inbound ? SRC_PORT : DST_PORT);
      udp = protocol === UDP;
      ckAt = udp ? qt + UDP_CHECKSUM : qt + TCP_CHECKSUM + 2 <= end ? qt + TCP_CHECKSUM : -1;
    } else if (protocol === ICMP) {
      const qtype = buf[qt + ICMP_TYPE]!;
      const translatedQuery = inbound
        ? qtype === ECHO_REQUEST || qtype === TIMESTAMP
        : qtype === ECHO_REPLY || qtype === TIMESTAMP_REPLY;
      if (!translatedQuery) return UNCHANGED;
      portAt = qt + ICMP_IDENTIFIER;
      ckAt = qt + ICMP_CHECKSUM;
    } else {
      return UNCHANGED;
    }

    const from = u16(buf, portAt);
    const to = inbound
      ? this.table.peekLocal(protocol, from, now)
      : this.table.peekLeased(protocol, from, now);
    if (to < 0) return NO_MAPPING;
    if (to === from) return TRANSLATED;
    put16(buf, portAt, to);
    let icmpCk = updateChecksum16(u16(buf, l4 + ICMP_CHECKSUM), from, to);
    if (ckAt >= 0) {
      const oldCk = u16(buf, ckAt);
      const newCk = udp ? updateUdpChecksum16(oldCk, from, to) : updateChecksum16(oldCk, from, to);
      put16(buf, ckAt, newCk);
      icmpCk = updateChecksum16(icmpCk, oldCk, newCk);
    }
    put16(buf, l4 + ICMP_CHECKSUM, icmpCk);
    return TRANSLATED;
  }
}
