/**
 * Traffic selectors as IKE negotiates them (RFC 7296 2.9): IPv4 ranges with
 * protocol and ports. The initiator proposes, the responder may narrow to a
 * subset; the initiator then checks the answer is such a subset.
 */
import type { Block } from '../util/block.ts';
import { ipv4Bytes } from './nat.ts';
import type { TrafficSelectorPayloadEntry } from './ts-payload.ts';

export type Ipv4Selector = Extract<TrafficSelectorPayloadEntry, { kind: 'ipv4' }>;

export const ipv4ToNumber = (address: string): number => ipv4Bytes(address).readUInt32BE(0);
export const numberToIpv4 = (n: number): string =>
  [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff].join('.');

/** A selector for one address (or a range), all protocols and ports unless given. */
export function hostSelector(
  address: string,
  fields: { protocol?: number; startPort?: number; endPort?: number; endAddress?: string } = {},
): Ipv4Selector {
  const a = ipv4ToNumber(address);
  return {
    kind: 'ipv4',
    protocol: fields.protocol ?? 0,
    startPort: fields.startPort ?? 0,
    endPort: fields.endPort ?? 65535,
    startAddress: a,
    endAddress: fields.endAddress === undefined ? a : ipv4ToNumber(fields.endAddress),
  };
}

/** A selector for a CIDR prefix: `subnetSelector('198.51.100.0', 24)`. */
export function subnetSelector(address: string, prefix: number): Ipv4Selector {
  const a = ipv4ToNumber(address);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return {
    kind: 'ipv4',
    protocol: 0,
    startPort: 0,
    endPort: 65535,
    startAddress: (a & mask) >>> 0,
    endAddress: ((a & mask) | (~mask >>> 0)) >>> 0,
  };
}

/** The overlap of two selectors, or undefined when there is none. */
export function intersect(a: Ipv4Selector, b: Ipv4Selector): Ipv4Selector | undefined {
  if (a.protocol !== 0 && b.protocol !== 0 && a.protocol !== b.protocol) return undefined;
  const startAddress = Math.max(a.startAddress, b.startAddress);
  const endAddress = Math.min(a.endAddress, b.endAddress);
  const startPort = Math.max(a.startPort, b.startPort);
  const endPort = Math.min(a.endPort, b.endPort);
  if (startAddress > endAddress || startPort > endPort) return undefined;
  return { kind: 'ipv4', protocol: a.protocol || b.protocol, startPort, endPort, startAddress, endAddress };
}

/** Every overlap of a proposed list with an allowed list (the responder's narrowing). */
export function narrow(proposed: readonly Ipv4Selector[], allowed: readonly Ipv4Selector[]): Ipv4Selector[] {
  const out: Ipv4Selector[] = [];
  for (const p of proposed)
    for (const a of allowed) {
      const x = intersect(p, a);
      if (x !== undefined && !out.some((o) => sameSelector(o, x))) out.push(x);
    }
  return out;
}

export function sameSelector(a: Ipv4Selector, b: Ipv4Selector): boolean {
  return (
    a.protocol === b.protocol &&
    a.startPort === b.startPort &&
    a.endPort === b.endPort &&
    a.startAddress === b.startAddress &&
    a.endAddress === b.endAddress
  );
}

/** True when `inner` lies inside `outer` in every dimension. */
export function within(inner: Ipv4Selector, outer: Ipv4Selector): boolean {
  return (
    (outer.protocol === 0 || outer.protocol === inner.protocol) &&
    inner.startAddress >= outer.startAddress &&
    inner.endAddress <= outer.endAddress &&
    inner.startPort >= outer.startPort &&
    inner.endPort <= outer.endPort
  );
}

/** True when every answered selector lies inside one of the proposed ones (the initiator's check). */
export function isNarrowing(answer: readonly Ipv4Selector[], proposed: readonly Ipv4Selector[]): boolean {
  return answer.length > 0 && answer.every((a) => proposed.some((p) => within(a, p)));
}

/**
 * The selectors of a port binding: the shared address with each certified
 * port block, for TCP and for UDP (RFC 7296 3.13.1: a selector with
 * protocol 0 must cover all ports, so port ranges need a protocol).
 */
export function bindingSelectors(address: string, ports: readonly Block[]): Ipv4Selector[] {
  return ports.flatMap((b) =>
    [6, 17].map((protocol) =>
      hostSelector(address, { protocol, startPort: b.lowest, endPort: b.lowest + b.count - 1 }),
    ),
  );
}

/**
 * `list` with one UDP port cut out of every selector that covers it: the
 * selectors a host offers for its child SAs, less the leased port IKE itself
 * runs on, so that no peer routes IKE into the SA it negotiates.
 */
export function withoutUdpPort(list: readonly Ipv4Selector[], port: number): Ipv4Selector[] {
  return list.flatMap((s) => {
    if ((s.protocol !== 17 && s.protocol !== 0) || port < s.startPort || port > s.endPort) return [s];
    if (s.protocol === 0) return [s]; // protocol 0 must cover all ports (RFC 7296 3.13.1): left to the responder
    const parts: Ipv4Selector[] = [];
    if (port > s.startPort) parts.push({ ...s, endPort: port - 1 });
    if (port < s.endPort) parts.push({ ...s, startPort: port + 1 });
    return parts;
  });
}

export const ipv4Only = (list: readonly TrafficSelectorPayloadEntry[]): Ipv4Selector[] =>
  list.filter((s): s is Ipv4Selector => s.kind === 'ipv4');

/** "198.51.100.30/32[udp/1026-1057]" as strongSwan prints selectors. */
export function describeSelector(s: Ipv4Selector): string {
  let addr: string;
  const size = s.endAddress - s.startAddress + 1;
  const prefix = 32 - Math.log2(size);
  if (Number.isInteger(prefix) && (s.startAddress & (size - 1)) === 0)
    addr = `${numberToIpv4(s.startAddress)}/${prefix}`;
  else addr = `${numberToIpv4(s.startAddress)}..${numberToIpv4(s.endAddress)}`;
  const proto =
    s.protocol === 0 ? '' : s.protocol === 6 ? 'tcp' : s.protocol === 17 ? 'udp' : String(s.protocol);
  const ports =
    s.startPort === 0 && s.endPort === 65535
      ? ''
      : s.startPort === s.endPort
        ? `${s.startPort}`
        : `${s.startPort}-${s.endPort}`;
  return proto || ports ? `${addr}[${proto}${ports ? (proto ? '/' : '') + ports : ''}]` : addr;
}
