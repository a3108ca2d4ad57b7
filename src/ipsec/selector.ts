/**
 * Traffic selectors (RFC 4301 4.4.1.1): address ranges, next-layer
 * protocol and port ranges, seen from this end as local and remote. An
 * outbound packet's local side is its source; an inbound packet's local
 * side is its destination.
 *
 * Ports exist for TCP and UDP only, and only in a datagram's first
 * fragment. Elsewhere they are OPAQUE (RFC 4301 4.4.1): a selector whose
 * port range is the whole 0-65535 (ANY) matches, a narrower one does not.
 * ICMP type and code are not used as selectors.
 *
 * Packet fields read, relative to the IPv4 header (ip) and the transport
 * header (l4):
 *
 * | where | offset | field                          |
 * |-------|--------|--------------------------------|
 * | ip    | 0      | version and IHL                |
 * | ip    | 6      | flags, fragment offset         |
 * | ip    | 9      | protocol                       |
 * | ip    | 12, 16 | source, destination address    |
 * | l4    | 0, 2   | TCP/UDP source, destination port |
 */
import { u16, u32 } from '../wire/bytes.ts';
import { Ipv4Field, Ipv4FragmentWord } from '../wire/ipv4.ts';
import { PortField, PORTS_LENGTH } from '../wire/ports.ts';
import { IpProtocol } from '../wire/result.ts';

/** Inclusive range of addresses (unsigned 32-bit) or ports. */
export interface Range {
  readonly first: number;
  readonly last: number;
}

export interface TrafficSelector {
  readonly local: Range;
  readonly remote: Range;
  /** IP protocol number; 0 matches any. */
  readonly protocol: number;
  readonly localPort: Range;
  readonly remotePort: Range;
}

export const ANY_ADDRESS: Range = Object.freeze({ first: 0, last: 0xffff_ffff });
export const ANY_PORT: Range = Object.freeze({ first: 0, last: 65535 });

/** A selector that matches every packet, with the given fields narrowed. */
export function selector(fields: Partial<TrafficSelector> = {}): TrafficSelector {
  return {
    local: fields.local ?? ANY_ADDRESS,
    remote: fields.remote ?? ANY_ADDRESS,
    protocol: fields.protocol ?? 0,
    localPort: fields.localPort ?? ANY_PORT,
    remotePort: fields.remotePort ?? ANY_PORT,
  };
}

/** The address range of a CIDR prefix: `cidr(0xc6336400, 24)`. */
export function cidrRange(address: number, prefixLength: number): Range {
  if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > 32) {
    throw new RangeError(`prefix length must be 0..32, got ${prefixLength}`);
  }
  const hostBits = 32 - prefixLength;
  const size = 2 ** hostBits;
  const first = Math.floor((address >>> 0) / size) * size;
  return { first, last: first + size - 1 };
}

// The wire's constants as module constants (see wire/bytes.ts).
const TCP = IpProtocol.TCP;
const UDP = IpProtocol.UDP;
const IP_VERSION_IHL = Ipv4Field.VERSION_IHL;
const IP_FLAGS_FRAGMENT = Ipv4Field.FLAGS_FRAGMENT;
const IP_PROTOCOL = Ipv4Field.PROTOCOL;
const IP_SRC = Ipv4Field.SRC;
const IP_DST = Ipv4Field.DST;
const IP_FRAGMENT_OFFSET = Ipv4FragmentWord.OFFSET;
const SRC_PORT = PortField.SRC_PORT;
const DST_PORT = PortField.DST_PORT;
const PORTS = PORTS_LENGTH;

/** The selector fields of one packet; reuse one instance. Ports are -1 when OPAQUE. */
export class PacketSelectors {
  src = 0;
  dst = 0;
  protocol = 0;
  srcPort = -1;
  dstPort = -1;

  /**
   * Reads the fields of the IPv4 datagram at buf[ip, end); the header is
   * assumed checked. Ports are read when the transport header is present.
   */
  read(buf: Uint8Array, ip: number, end: number): this {
    this.src = u32(buf, ip + IP_SRC);
    this.dst = u32(buf, ip + IP_DST);
    const protocol = buf[ip + IP_PROTOCOL]!;
    this.protocol = protocol;
    this.srcPort = -1;
    this.dstPort = -1;
    if (
      (protocol === TCP || protocol === UDP) &&
      (u16(buf, ip + IP_FLAGS_FRAGMENT) & IP_FRAGMENT_OFFSET) === 0
    ) {
      const l4 = ip + (buf[ip + IP_VERSION_IHL]! & 0x0f) * 4;
      if (l4 + PORTS <= end) {
        this.srcPort = u16(buf, l4 + SRC_PORT);
        this.dstPort = u16(buf, l4 + DST_PORT);
      }
    }
    return this;
  }
}

function inRange(r: Range, v: number): boolean {
  return v >= r.first && v <= r.last;
}

function portMatches(r: Range, port: number): boolean {
  if (port < 0) return r.first === 0 && r.last === 65535;
  return port >= r.first && port <= r.last;
}

/** Whether a packet's fields fall in the selector; `outbound` says which side is local. */
export function selectorMatches(s: TrafficSelector, p: PacketSelectors, outbound: boolean): boolean {
  const local = outbound ? p.src : p.dst;
  const remote = outbound ? p.dst : p.src;
  if (!inRange(s.local, local) || !inRange(s.remote, remote)) return false;
  if (s.protocol !== 0 && s.protocol !== p.protocol) return false;
  return (
    portMatches(s.localPort, outbound ? p.srcPort : p.dstPort) &&
    portMatches(s.remotePort, outbound ? p.dstPort : p.srcPort)
  );
}
