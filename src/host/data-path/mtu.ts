/**
 * The 20 octets of the tunnel header against the LAN's MTU.
 *
 * The TUN device's MTU (1480 by native-setup/linux/host-setup.sh) already keeps
 * the local stack's packets 20 octets below a 1500-octet LAN, so neither
 * case below happens with the default set-up. They are the safety net for
 * a TUN MTU or a LAN MTU configured otherwise:
 *
 * - DF set (TCP, and UDP under path MTU discovery): the packet is dropped
 *   and the local stack is told, with an ICMP "fragmentation needed" (RFC
 *   1191) written back into the TUN device, to send smaller packets. The
 *   error quotes the packet as the stack sent it (before translation), so
 *   the stack finds its socket.
 * - DF clear: the inner datagram is fragmented before encapsulation (RFC
 *   2003 section 5.1 allows either; the router refuses fragmented outer
 *   headers, so it must be the inner one), and each fragment gets its own
 *   outer header.
 *
 * Both write into a scratch SlotBuffer the forwarder owns: nothing is
 * allocated per packet.
 */
import { put16, put32 } from '../../wire/bytes.ts';
import { internetChecksum } from '../../wire/checksum.ts';
import { ICMP_HEADER_LENGTH, IcmpField, IcmpType, IcmpUnreachableCode } from '../../wire/icmp.ts';
import { nextIpv4Id } from '../../wire/ipip.ts';
import {
  IPV4_DEFAULT_TTL,
  IPV4_MIN_HEADER_LENGTH,
  IPV4_OPTION_COPIED,
  Ipv4Field,
  Ipv4FragmentWord,
  ipv4FragmentOffset,
  ipv4HeaderLengthAt,
  ipv4MoreFragments,
} from '../../wire/ipv4.ts';
import { OPTION_EOL, OPTION_NOP } from '../../wire/option-list.ts';
import { IpProtocol } from '../../wire/result.ts';

/** RFC 1812 4.3.2.3: an ICMP error holds as much of the original as fits in 576 octets. */
export const ICMP_ERROR_MAX_LENGTH = 576;

/**
 * Writes an IPv4 datagram carrying ICMP type 3 code 4 (fragmentation needed
 * and DF set) with next-hop MTU `mtu`, from `src` to `dst`, quoting
 * quoted[qOff, qOff + qLen), at out[at]. Returns its length, or 0 when it
 * does not fit in out[at, end).
 */
export function writeFragmentationNeeded(
  out: Uint8Array,
  at: number,
  end: number,
  src: number,
  dst: number,
  mtu: number,
  quoted: Uint8Array,
  qOff: number,
  qLen: number,
): number {
  const quote = Math.min(qLen, ICMP_ERROR_MAX_LENGTH - IPV4_MIN_HEADER_LENGTH - ICMP_HEADER_LENGTH);
  const total = IPV4_MIN_HEADER_LENGTH + ICMP_HEADER_LENGTH + quote;
  if (at < 0 || at + total > end || end > out.length) return 0;
  out[at + Ipv4Field.VERSION_IHL] = 0x45;
  // RFC 1812 4.3.2.5 (precedence "internetwork control"), as Linux sends its own errors.
  out[at + Ipv4Field.TOS] = 0xc0;
  put16(out, at + Ipv4Field.TOTAL_LENGTH, total);
  put16(out, at + Ipv4Field.IDENTIFICATION, nextIpv4Id());
  put16(out, at + Ipv4Field.FLAGS_FRAGMENT, 0);
  out[at + Ipv4Field.TTL] = IPV4_DEFAULT_TTL;
  out[at + Ipv4Field.PROTOCOL] = IpProtocol.ICMP;
  put16(out, at + Ipv4Field.CHECKSUM, 0);
  put32(out, at + Ipv4Field.SRC, src);
  put32(out, at + Ipv4Field.DST, dst);
  put16(out, at + Ipv4Field.CHECKSUM, internetChecksum(out, at, at + IPV4_MIN_HEADER_LENGTH));
  const m = at + IPV4_MIN_HEADER_LENGTH;
  out[m + IcmpField.TYPE] = IcmpType.DestinationUnreachable;
  out[m + IcmpField.CODE] = IcmpUnreachableCode.FragmentationNeeded;
  put16(out, m + IcmpField.CHECKSUM, 0);
  // The second word: unused, then the next-hop MTU (RFC 1191).
  put16(out, m + IcmpField.REST_OF_HEADER, 0);
  put16(out, m + IcmpField.NEXT_HOP_MTU, mtu);
  out.set(quoted.subarray(qOff, qOff + quote), m + IcmpField.DATA);
  put16(out, m + IcmpField.CHECKSUM, internetChecksum(out, m, m + ICMP_HEADER_LENGTH + quote));
  return total;
}

/**
 * Writes the options of the header at buf[ip] for a fragment other than the
 * first at out[at]: options with the copied flag (0x80) are copied, the others
 * become No-Operation octets (RFC 791 3.2), so the header keeps its length.
 */
function copyOptionsForLaterFragment(
  buf: Uint8Array,
  ip: number,
  hl: number,
  out: Uint8Array,
  at: number,
): void {
  let i = Ipv4Field.OPTIONS;
  while (i < hl) {
    const type = buf[ip + i]!;
    if (type === OPTION_EOL) {
      out.fill(0, at + i, at + hl);
      return;
    }
    if (type === OPTION_NOP) {
      out[at + i] = OPTION_NOP;
      i++;
      continue;
    }
    const len = i + 1 < hl ? buf[ip + i + 1]! : 0;
    const n = len >= 2 && i + len <= hl ? len : hl - i;
    if ((type & IPV4_OPTION_COPIED) !== 0 && len >= 2) out.set(buf.subarray(ip + i, ip + i + n), at + i);
    else out.fill(OPTION_NOP, at + i, at + i + n);
    i += n;
  }
}

/**
 * Cuts the (checked, DF clear) datagram at buf[ip, ip + total) into fragments
 * of at most `maxLength` octets, header included, written at the offsets
 * `at(k)` for k = 0, 1, ... (each with room for `room` octets). Returns the
 * number of fragments, or 0 when more than `maxFragments` would be needed or
 * `maxLength` leaves no room for 8 octets of data.
 */
export function fragmentDatagram(
  buf: Uint8Array,
  ip: number,
  total: number,
  maxLength: number,
  out: Uint8Array,
  at: (k: number) => number,
  room: number,
  maxFragments: number,
): number {
  const hl = ipv4HeaderLengthAt(buf, ip);
  const step = ((maxLength - hl) >> 3) << 3;
  if (step < 8 || room < hl + step) return 0;
  const data = total - hl;
  const n = Math.ceil(data / step);
  if (n > maxFragments) return 0;
  const moreAfter = ipv4MoreFragments(buf, ip);
  const baseOffset = ipv4FragmentOffset(buf, ip);
  for (let k = 0; k < n; k++) {
    const o = at(k);
    const chunk = Math.min(step, data - k * step);
    out.set(buf.subarray(ip, ip + IPV4_MIN_HEADER_LENGTH), o);
    if (hl > IPV4_MIN_HEADER_LENGTH) {
      if (k === 0) out.set(buf.subarray(ip + IPV4_MIN_HEADER_LENGTH, ip + hl), o + IPV4_MIN_HEADER_LENGTH);
      else copyOptionsForLaterFragment(buf, ip, hl, out, o);
    }
    out.set(buf.subarray(ip + hl + k * step, ip + hl + k * step + chunk), o + hl);
    put16(out, o + Ipv4Field.TOTAL_LENGTH, hl + chunk);
    const mf = k < n - 1 || moreAfter ? Ipv4FragmentWord.MF : 0;
    put16(out, o + Ipv4Field.FLAGS_FRAGMENT, mf | (baseOffset + ((k * step) >> 3)));
    put16(out, o + Ipv4Field.CHECKSUM, 0);
    put16(out, o + Ipv4Field.CHECKSUM, internetChecksum(out, o, o + hl));
  }
  return n;
}
