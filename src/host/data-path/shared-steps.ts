/**
 * The per-packet steps both directions of the host's data path share: what
 * a translation outcome means for the packet, the MSS clamp of a SYN, and
 * whether native mode must translate an ICMP message.
 */
import { ICMP_HEADER_LENGTH, IcmpField, isIcmpErrorType } from '../../wire/icmp.ts';
import { IPV4_MIN_HEADER_LENGTH, Ipv4Field } from '../../wire/ipv4.ts';
import { IpProtocol } from '../../wire/result.ts';
import { clampTcpMss, TCP_MIN_HEADER_LENGTH, TcpField, TcpFlag } from '../../wire/tcp.ts';
import type { TranslateOutcome } from './translation/translator.ts';

export type HostMode = 'translate' | 'native';

/** IPv4 and TCP headers without options: the MSS is the MTU less these. */
export const TCP_IP_HEADERS = IPV4_MIN_HEADER_LENGTH + TCP_MIN_HEADER_LENGTH;

// wire's constants as module constants (see wire/bytes.ts).
const SYN = TcpFlag.SYN;
const TCP_HEADER = TCP_MIN_HEADER_LENGTH;
const TCP_DATA_OFFSET = TcpField.DATA_OFFSET;
const TCP_FLAGS = TcpField.FLAGS;
const ICMP_HEADER = ICMP_HEADER_LENGTH;
const ICMP_TYPE = IcmpField.TYPE;
const IP_HEADER = IPV4_MIN_HEADER_LENGTH;
const IP_PROTOCOL = Ipv4Field.PROTOCOL;
const ICMP = IpProtocol.ICMP;

/** True for the outcomes after which the packet goes on. */
export const passes = (o: TranslateOutcome): boolean => o === 'translated' || o === 'unchanged';

/** The drop reason of an outcome that does not pass. */
export function dropOf(o: TranslateOutcome): 'no-mapping' | 'no-free-port' | 'not-translatable' {
  return o === 'no-mapping' || o === 'no-free-port' ? o : 'not-translatable';
}

/**
 * Clamps the MSS of a SYN (or SYN-ACK) whose whole TCP header lies in
 * buf[l4, end); true when it changed the segment.
 */
export function clampSynMss(buf: Uint8Array, l4: number, end: number, max: number): boolean {
  if (l4 + TCP_HEADER > end || (buf[l4 + TCP_FLAGS]! & SYN) === 0) return false;
  const thl = (buf[l4 + TCP_DATA_OFFSET]! >> 4) << 2;
  if (thl <= TCP_HEADER || l4 + thl > end) return false;
  return clampTcpMss(buf, l4, max);
}

/**
 * Native mode: whether an ICMP message carries a query identifier to
 * translate, either itself (a query or reply; the translator tells ours from
 * theirs) or in the datagram an error quotes. Errors quoting TCP or UDP pass
 * as they are, since those ports are not translated in native mode.
 */
export function icmpNeedsTranslation(buf: Uint8Array, l4: number, end: number): boolean {
  if (l4 + ICMP_HEADER > end || !isIcmpErrorType(buf[l4 + ICMP_TYPE]!)) return true;
  const q = l4 + ICMP_HEADER;
  return q + IP_HEADER > end || buf[q + IP_PROTOCOL] === ICMP;
}
