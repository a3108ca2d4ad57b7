/**
 * Userspace TCP segmentation offload for IPv4 (what the kernel's
 * tcp4_gso_segment does), for super-packets read from an IFF_VNET_HDR TUN
 * with TSO enabled. virtio_net_hdr has no GSO type for IP-in-IP, so a
 * super-packet headed into the tunnel must be cut into MSS-sized segments
 * here, each then wrapped in its outer header and sent as usual.
 *
 * Per segment k of n (payload bytes [k*mss, min((k+1)*mss, len))):
 *
 * | field            | value                                                  |
 * |------------------|--------------------------------------------------------|
 * | IPv4 total len   | IP header + TCP header + segment payload               |
 * | IPv4 id          | id + k (mod 2^16), as Linux does without FIXEDID       |
 * | IPv4 checksum    | recomputed                                             |
 * | TCP seq          | seq + k*mss (mod 2^32)                                 |
 * | TCP FIN, PSH     | only on the last segment                               |
 * | TCP CWR          | only on the first segment                              |
 * | TCP checksum     | full checksum over pseudo-header, header and payload   |
 *
 * The input's TCP checksum field is ignored (with NEEDS_CSUM it holds only
 * the pseudo-header sum). IP options and TCP options are copied to every
 * segment. Segments land in slots of an output SlotBuffer, each with the
 * slot's headroom free for the outer header.
 *
 * This is the reference implementation; `loadNative().tcp4Segment` does the
 * same in one fused copy-and-checksum pass and is what the data path uses
 * (see docs/io.md for the measured difference).
 */
import { fold, internetChecksum, pseudoHeaderSumFromIp, sumBytes } from '../wire/checksum.ts';
import { GsoError, loadNative } from './native.ts';
import type { SlotBuffer } from './slots.ts';
import type { VirtioNetHdr } from './virtio.ts';
import { VirtioGso, VirtioNetHdrFlag } from './virtio.ts';
import { put16, u16 } from '../wire/bytes.ts';

/** Why a packet from a vnet TUN could not be made sendable. */
export type GsoDrop =
  | 'gso-not-ipv4' // not IPv4, or an IPv4 header that does not parse
  | 'gso-not-tcp' // a TCPv4 GSO type over something else
  | 'gso-bad-length' // lengths in the headers disagree with the bytes
  | 'gso-bad-size' // gso_size 0 or too small to make progress
  | 'gso-no-room' // more segments than output slots
  | 'gso-unsupported' // a GSO type not handled here (UDP, TCPv6)
  | 'csum-bad-offset'; // csum_start/csum_offset outside the packet

const NATIVE_ERRORS: ReadonlyMap<number, GsoDrop> = new Map([
  [GsoError.NotIpv4, 'gso-not-ipv4'],
  [GsoError.NotTcp, 'gso-not-tcp'],
  [GsoError.BadLength, 'gso-bad-length'],
  [GsoError.BadSize, 'gso-bad-size'],
  [GsoError.NoRoom, 'gso-no-room'],
  [GsoError.BadCsumOffset, 'csum-bad-offset'],
]);

/** Maps a negative result of the native tcp4Segment to its reason. */
export function nativeGsoError(code: number): GsoDrop {
  return NATIVE_ERRORS.get(code) ?? 'gso-bad-length';
}

/**
 * Splits the TCP/IPv4 packet src[offset, offset+length) into segments of at
 * most `mss` payload bytes, written to out slots firstSlot, firstSlot+1, ...
 * Returns the number of segments (1 when no split is needed: the packet is
 * copied with its checksum completed) or why it could not.
 */
export function segmentTcp4(
  src: Uint8Array,
  offset: number,
  length: number,
  mss: number,
  out: SlotBuffer,
  firstSlot: number,
): number | GsoDrop {
  if (length < 20 || src[offset]! >> 4 !== 4) return 'gso-not-ipv4';
  const ihl = (src[offset]! & 0x0f) * 4;
  if (ihl < 20 || ihl > length) return 'gso-not-ipv4';
  if (src[offset + 9] !== 6) return 'gso-not-tcp';
  const total = u16(src, offset + 2);
  if (total > length || total < ihl + 20) return 'gso-bad-length';
  const tcp = offset + ihl;
  const thl = (src[tcp + 12]! >> 4) * 4;
  if (thl < 20 || ihl + thl > total) return 'gso-bad-length';
  const hdrs = ihl + thl;
  const payload = total - hdrs;
  if (payload > 0 && mss < 1) return 'gso-bad-size';
  const n = payload === 0 ? 1 : Math.ceil(payload / mss);
  if (firstSlot < 0 || firstSlot + n > out.slotCount) return 'gso-no-room';
  if (hdrs + Math.min(mss, payload) > out.capacity) return 'gso-no-room';

  const id0 = u16(src, offset + 4);
  const seq0 = ((src[tcp + 4]! << 24) | (src[tcp + 5]! << 16) | (src[tcp + 6]! << 8) | src[tcp + 7]!) >>> 0;
  const flags = src[tcp + 13]!;
  const b = out.bytes;
  for (let k = 0; k < n; k++) {
    const at = out.offset(firstSlot + k);
    const start = k * mss;
    const segLen = Math.min(mss, payload - start);
    b.set(src.subarray(offset, offset + hdrs), at);
    b.set(src.subarray(tcp + thl + start, tcp + thl + start + segLen), at + hdrs);
    put16(b, at + 2, hdrs + segLen);
    put16(b, at + 4, (id0 + k) & 0xffff);
    put16(b, at + 10, 0);
    put16(b, at + 10, internetChecksum(b, at, at + ihl));
    const t = at + ihl;
    const seq = (seq0 + start) >>> 0;
    b[t + 4] = seq >>> 24;
    b[t + 5] = (seq >>> 16) & 0xff;
    b[t + 6] = (seq >>> 8) & 0xff;
    b[t + 7] = seq & 0xff;
    let f = flags;
    if (k < n - 1) f &= ~0x09; // FIN, PSH
    if (k > 0) f &= ~0x80; // CWR
    b[t + 13] = f;
    put16(b, t + 16, 0);
    const tcpLen = thl + segLen;
    put16(b, t + 16, internetChecksum(b, t, t + tcpLen, pseudoHeaderSumFromIp(b, at, 6, tcpLen)));
    out.lengths[firstSlot + k] = hdrs + segLen;
  }
  return n;
}

/**
 * Completes a CHECKSUM_PARTIAL packet in place: the field at
 * csumStart + csumOffset holds the pseudo-header sum; the checksum covers
 * csumStart to the end of the packet.
 */
export function completeChecksum(
  bytes: Uint8Array,
  offset: number,
  length: number,
  csumStart: number,
  csumOffset: number,
): true | GsoDrop {
  const field = offset + csumStart + csumOffset;
  if (csumStart < 0 || csumOffset < 0 || field + 2 > offset + length) return 'csum-bad-offset';
  const sum = ~fold(sumBytes(bytes, offset + csumStart, offset + length)) & 0xffff;
  // A UDP checksum that computes to 0 goes out as 0xFFFF (RFC 768); for TCP 0 is a valid value.
  put16(bytes, field, sum === 0 && bytes[offset + 9] === 17 ? 0xffff : sum);
  return true;
}

/**
 * What a packet read from a vnet TUN needs before it can go into the
 * tunnel: 'plain' (send as is), 'checksum' (complete it in place) or
 * 'segment' (segmentTcp4 with hdr.gsoSize), or why it cannot be handled.
 */
export function vnetAction(hdr: VirtioNetHdr): 'plain' | 'checksum' | 'segment' | GsoDrop {
  const type = hdr.gsoType & ~VirtioGso.Ecn;
  if (type === VirtioGso.TcpV4) return 'segment';
  if (type !== VirtioGso.None) return 'gso-unsupported';
  return hdr.flags & VirtioNetHdrFlag.NeedsCsum ? 'checksum' : 'plain';
}

/** segmentTcp4 done by the native addon: same contract, one fused copy-and-checksum pass. */
export function segmentTcp4Native(
  src: Uint8Array,
  offset: number,
  length: number,
  mss: number,
  out: SlotBuffer,
  firstSlot: number,
): number | GsoDrop {
  const r = loadNative().tcp4Segment(
    src,
    offset,
    length,
    mss,
    out.bytes,
    out.slotSize,
    out.headroom,
    firstSlot,
    out.slotCount,
    out.lengths,
  );
  return r < 0 ? nativeGsoError(r) : r;
}

/** completeChecksum done by the native addon. */
export function completeChecksumNative(
  bytes: Uint8Array,
  offset: number,
  length: number,
  csumStart: number,
  csumOffset: number,
): true | GsoDrop {
  const r = loadNative().completeChecksum(bytes, offset, length, csumStart, csumOffset);
  return r < 0 ? nativeGsoError(r) : true;
}
