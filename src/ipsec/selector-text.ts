/**
 * Selector fields as people write them in configuration files:
 *
 * | field     | forms                                                   |
 * |-----------|---------------------------------------------------------|
 * | address   | any, 198.51.100.30, 203.0.113.0/24, 10.0.0.1-10.0.0.9   |
 * | port      | any, 53, 1024-65535                                     |
 * | protocol  | any, tcp, udp, icmp, esp, ah, or a number 0-255         |
 */
import { ipv4FromString } from '../wire/ipv4.ts';
import { IpProtocol } from '../wire/result.ts';
import { ANY_ADDRESS, ANY_PORT, cidrRange, type Range } from './selector.ts';

/** The range an address text names, or undefined. */
export function parseAddressRange(text: string): Range | undefined {
  if (text === 'any') return ANY_ADDRESS;
  const slash = text.indexOf('/');
  if (slash >= 0) {
    const a = ipv4FromString(text.slice(0, slash));
    const bits = text.slice(slash + 1);
    if (a === undefined || !/^\d{1,2}$/.test(bits) || Number(bits) > 32) return undefined;
    return cidrRange(a, Number(bits));
  }
  const dash = text.indexOf('-');
  if (dash >= 0) {
    const a = ipv4FromString(text.slice(0, dash));
    const b = ipv4FromString(text.slice(dash + 1));
    return a === undefined || b === undefined || a > b ? undefined : { first: a, last: b };
  }
  const a = ipv4FromString(text);
  return a === undefined ? undefined : { first: a, last: a };
}

/** The range a port field names; a string must be "any" or "first-last" (validated by the schema). */
export function parsePortRange(v: 'any' | number | string): Range | undefined {
  if (v === 'any') return ANY_PORT;
  if (typeof v === 'number') return { first: v, last: v };
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(v);
  if (m === null) return undefined;
  const first = Number(m[1]);
  const last = Number(m[2]);
  return first <= last && last <= 65535 ? { first, last } : undefined;
}

/** Protocol names a keying file may use; 0 (any) is the selector's wildcard, not a protocol. */
export const PROTOCOL_NUMBERS: Readonly<Record<string, number>> = {
  any: 0,
  icmp: IpProtocol.ICMP,
  tcp: IpProtocol.TCP,
  udp: IpProtocol.UDP,
  esp: IpProtocol.ESP,
  ah: IpProtocol.AH,
};
