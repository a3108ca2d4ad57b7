/**
 * struct virtio_net_hdr (virtio spec 1.x, 5.1.6; linux/virtio_net.h), the
 * 10 bytes an IFF_VNET_HDR TUN puts before every packet it hands over and
 * expects before every packet written to it. Fields are in the host's byte
 * order, which for a TUN without TUNSETVNETBE is little-endian on every
 * machine distnat runs on.
 *
 *    0        1        2        3        4        5        6        7        8        9
 *   +--------+--------+--------+--------+--------+--------+--------+--------+--------+--------+
 *   | flags  |gso_type|     hdr_len     |    gso_size     |   csum_start    |   csum_offset   |
 *   +--------+--------+--------+--------+--------+--------+--------+--------+--------+--------+
 *
 * | field       | offset | meaning                                                            |
 * |-------------|--------|--------------------------------------------------------------------|
 * | flags       | 0      | NEEDS_CSUM: checksum from csum_start to the end is still to be done |
 * | gso_type    | 1      | NONE, TCPV4, UDP, TCPV6; ECN bit 0x80                               |
 * | hdr_len     | 2      | bytes of headers (IP + TCP) in front of the payload (a hint)        |
 * | gso_size    | 4      | payload bytes per segment (the MSS)                                 |
 * | csum_start  | 6      | where the checksummed region starts (the TCP/UDP header)            |
 * | csum_offset | 8      | where, from csum_start, the result goes (16 for TCP, 6 for UDP)     |
 *
 * With NEEDS_CSUM the checksum field already holds the folded pseudo-header
 * sum (not inverted): summing the region from csum_start with that field in
 * place and inverting gives the final checksum (CHECKSUM_PARTIAL).
 */

export const VIRTIO_NET_HDR_LEN = 10;

export const VirtioNetHdrFlag = { NeedsCsum: 1, DataValid: 2 } as const;
export const VirtioGso = { None: 0, TcpV4: 1, Udp: 3, TcpV6: 4, UdpL4: 5, Ecn: 0x80 } as const;

export interface VirtioNetHdr {
  flags: number;
  gsoType: number;
  hdrLen: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
}

export function newVirtioNetHdr(): VirtioNetHdr {
  return { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 };
}

const le16 = (b: Uint8Array, o: number): number => b[o]! | (b[o + 1]! << 8);
const putLe16 = (b: Uint8Array, o: number, v: number): void => {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
};

/** Reads the header at bytes[offset] into `out` (reused: no allocation). */
export function readVirtioNetHdr(bytes: Uint8Array, offset: number, out: VirtioNetHdr): VirtioNetHdr {
  out.flags = bytes[offset]!;
  out.gsoType = bytes[offset + 1]!;
  out.hdrLen = le16(bytes, offset + 2);
  out.gsoSize = le16(bytes, offset + 4);
  out.csumStart = le16(bytes, offset + 6);
  out.csumOffset = le16(bytes, offset + 8);
  return out;
}

export function writeVirtioNetHdr(bytes: Uint8Array, offset: number, hdr: VirtioNetHdr): void {
  bytes[offset] = hdr.flags;
  bytes[offset + 1] = hdr.gsoType;
  putLe16(bytes, offset + 2, hdr.hdrLen);
  putLe16(bytes, offset + 4, hdr.gsoSize);
  putLe16(bytes, offset + 6, hdr.csumStart);
  putLe16(bytes, offset + 8, hdr.csumOffset);
}

/** A header meaning "a plain packet with complete checksums". */
export function zeroVirtioNetHdr(bytes: Uint8Array, offset: number): void {
  bytes.fill(0, offset, offset + VIRTIO_NET_HDR_LEN);
}
