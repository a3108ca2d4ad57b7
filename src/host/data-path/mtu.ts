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
import { put16, put32, u16 } from '../../wire/bytes.ts';
import { internetChecksum } from '../../wire/checksum.ts';
import { IcmpType, IcmpUnreachableCode } from '../../wire/icmp.ts';
import { nextIpv4Id } from '../../wire/ipip.ts';
import { IpProtocol } from '../../wire/result.ts';

/** RFC 1812 4.3.2.3: an ICMP error holds as much of the original as fits in 576 octets. */
export const ICMP_ERROR_MAX_LENGTH = 576;
const IP_HEADER = 20;
const ICMP_HEADER = 8;

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
  const quote = Math.min(qLen, ICMP_ERROR_MAX_LENGTH - IP_HEADER - ICMP_HEADER);
  const total = IP_HEADER + ICMP_HEADER + quote;
  if (at < 0 || at + total > end || end > out.length) return 0;
  out[at] = 0x45;
  // RFC 1812 4.3.2.5 (precedence "internetwork control"), as Linux sends its own errors.
  out[at + 1] = 0xc0;
  put16(out, at + 2, total);
  put16(out, at + 4, nextIpv4Id());
  put16(out, at + 6, 0);
  out[at + 8] = 64;
  out[at + 9] = IpProtocol.ICMP;
  put16(out, at + 10, 0);
  put32(out, at + 12, src);
  put32(out, at + 16, dst);
  put16(out, at + 10, internetChecksum(out, at, at + IP_HEADER));
  const m = at + IP_HEADER;
  out[m] = IcmpType.DestinationUnreachable;
  out[m + 1] = IcmpUnreachableCode.FragmentationNeeded;
  put16(out, m + 2, 0);
  put16(out, m + 4, 0);
  put16(out, m + 6, mtu);
  out.set(quoted.subarray(qOff, qOff + quote), m + ICMP_HEADER);
  put16(out, m + 2, internetChecksum(out, m, m + ICMP_HEADER + quote));
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
  let i = IP_HEADER;
  while (i < hl) {
    const type = buf[ip + i]!;
    if (type === 0) {
      out.fill(0, at + i, at + hl);
      return;
    }
    if (type === 1) {
      out[at + i] = 1;
      i++;
      continue;
    }
    const len = i + 1 < hl ? buf[ip + i + 1]! : 0;
    const n = len >= 2 && i + len <= hl ? len : hl - i;
    if ((type & 0x80) !== 0 && len >= 2) out.set(buf.subarray(ip + i, ip + i + n), at + i);
    else out.fill(1, at + i, at + i + n);
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
  const hl = (buf[ip]! & 0x0f) << 2;
  const step = ((maxLength - hl) >> 3) << 3;
  if (step < 8 || room < hl + step) return 0;
  const data = total - hl;
  const n = Math.ceil(data / step);
  if (n > maxFragments) return 0;
  const flagsFrag = u16(buf, ip + 6);
  const moreAfter = (flagsFrag & 0x2000) !== 0;
  const baseOffset = flagsFrag & 0x1fff;
  for (let k = 0; k < n; k++) {
    const o = at(k);
    const chunk = Math.min(step, data - k * step);
    out.set(buf.subarray(ip, ip + IP_HEADER), o);
    if (hl > IP_HEADER) {
      if (k === 0) out.set(buf.subarray(ip + IP_HEADER, ip + hl), o + IP_HEADER);
      else copyOptionsForLaterFragment(buf, ip, hl, out, o);
    }
    out.set(buf.subarray(ip + hl + k * step, ip + hl + k * step + chunk), o + hl);
    put16(out, o + 2, hl + chunk);
    const mf = k < n - 1 || moreAfter ? 0x2000 : 0;
    put16(out, o + 6, mf | (baseOffset + ((k * step) >> 3)));
    put16(out, o + 10, 0);
    put16(out, o + 10, internetChecksum(out, o, o + hl));
  }
  return n;
}
