/**
 * The per-packet steps both directions of the host's data path share: what
 * a translation outcome means for the packet, the MSS clamp of a SYN, and
 * whether native mode must translate an ICMP message.
 */
import { isIcmpErrorType } from '../../wire/icmp.ts';
import { IpProtocol } from '../../wire/result.ts';
import { clampTcpMss } from '../../wire/tcp-options.ts';
import type { TranslateOutcome } from './translation/translator.ts';

export type HostMode = 'translate' | 'native';

const SYN = 0x02;
const IPV4_HEADER = 20;
/** IPv4 and TCP headers without options: the MSS is the MTU less these. */
export const TCP_IP_HEADERS = 40;

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
  if (l4 + 20 > end || (buf[l4 + 13]! & SYN) === 0) return false;
  const thl = (buf[l4 + 12]! >> 4) << 2;
  if (thl <= 20 || l4 + thl > end) return false;
  return clampTcpMss(buf, l4, max);
}

/**
 * Native mode: whether an ICMP message carries a query identifier to
 * translate, either itself (a query or reply; the translator tells ours from
 * theirs) or in the datagram an error quotes. Errors quoting TCP or UDP pass
 * as they are, since those ports are not translated in native mode.
 */
export function icmpNeedsTranslation(buf: Uint8Array, l4: number, end: number): boolean {
  if (l4 + 8 > end || !isIcmpErrorType(buf[l4]!)) return true;
  const q = l4 + 8;
  return q + IPV4_HEADER > end || buf[q + 9] === IpProtocol.ICMP;
}
