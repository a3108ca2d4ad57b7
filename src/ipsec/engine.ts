/**
 * The IPsec data plane of a host (RFC 4301 5.1 outbound, 5.2 inbound):
 * SPD lookup, the SA bundle applied in place, the inbound policy check, and
 * a counter for every verdict.
 *
 * Order with the host's port translation (patent: "All DNAT processing,
 * when used with Internet Protocol security must run above the IP layer"):
 * outbound, translate first and protect second, so the ICV covers the
 * leased port that goes on the wire; inbound, verify and decrypt first and
 * translate back second. Selectors therefore name the shared public address
 * and leased ports, as the peer sees them.
 *
 * Inbound, one call unwraps every IPsec layer addressed to this host
 * (AH over ESP, ESP in a tunnel, ...), at most MAX_LAYERS, then checks the
 * result against policy:
 *
 * | arrived                 | policy for the inner packet | verdict           |
 * |-------------------------|-----------------------------|-------------------|
 * | in clear                | bypass / none (bypass)      | bypass            |
 * | in clear                | protect                     | policy-mismatch   |
 * | in clear                | discard / none (discard)    | policy-discard    |
 * | through SAs of policy P | P's protocols, P's selector | accepted          |
 * | through SAs             | anything else               | policy-mismatch   |
 */
import { u16, u32 } from '../wire/bytes.ts';
import { AH_FIXED_LENGTH, AhField } from '../wire/ah.ts';
import { ESP_HEADER_LENGTH, EspField } from '../wire/esp.ts';
import { checkIpv4, Ipv4Field, Ipv4FragmentWord } from '../wire/ipv4.ts';
import { PortField } from '../wire/ports.ts';
import { IpProtocol } from '../wire/result.ts';
import { UDP_HEADER_LENGTH, UdpField } from '../wire/udp.ts';
import { ahOverhead, ahProtect, ahUnprotect } from './ah-processing.ts';
import { espMaxOverhead, espProtect, espUnprotect } from './esp-processing.ts';
import type { SecurityAssociationDatabase } from './sad.ts';
import type { SecurityAssociation } from './sa.ts';
import { PacketSelectors, selectorMatches } from './selector.ts';
import type { SecurityPolicyDatabase } from './spd.ts';
import { IdentificationCounter } from './tunnel.ts';
import type { InboundVerdict, IpsecDrop, OutboundVerdict, PacketSpan } from './types.ts';

/** Most IPsec headers one inbound packet may peel off (AH + ESP + one nested tunnel). */
export const MAX_LAYERS = 3;

// The wire's constants as module constants (see wire/bytes.ts).
const ESP = IpProtocol.ESP;
const AH = IpProtocol.AH;
const UDP = IpProtocol.UDP;
const ESP_HEADER = ESP_HEADER_LENGTH;
const AH_FIXED = AH_FIXED_LENGTH;
const UDP_HEADER = UDP_HEADER_LENGTH;
const IP_VERSION_IHL = Ipv4Field.VERSION_IHL;
const IP_TOTAL_LENGTH = Ipv4Field.TOTAL_LENGTH;
const IP_FLAGS_FRAGMENT = Ipv4Field.FLAGS_FRAGMENT;
const IP_PROTOCOL = Ipv4Field.PROTOCOL;
const IP_FRAGMENT = Ipv4FragmentWord.FRAGMENT;
const DST_PORT = PortField.DST_PORT;
const UDP_LENGTH = UdpField.LENGTH;
const ESP_SPI = EspField.SPI;
const AH_SPI = AhField.SPI;

const DROPS: readonly IpsecDrop[] = [
  'malformed',
  'fragment',
  'no-sa',
  'replay',
  'too-old',
  'auth-failed',
  'bad-padding',
  'policy-mismatch',
  'policy-discard',
  'seq-exhausted',
  'lifetime-expired',
  'no-room',
  'dummy',
  'nat-keepalive',
  'ecn-drop',
];
export const OUTBOUND_VERDICTS: readonly OutboundVerdict[] = ['protected', 'bypass', ...DROPS];
export const INBOUND_VERDICTS: readonly InboundVerdict[] = ['accepted', 'bypass', 'ike', ...DROPS];

function indexOf<V extends string>(names: readonly V[]): Record<V, number> {
  const index = Object.create(null) as Record<V, number>;
  names.forEach((n, i) => (index[n] = i));
  return index;
}
const OUT_INDEX = indexOf(OUTBOUND_VERDICTS);
const IN_INDEX = indexOf(INBOUND_VERDICTS);

function snapshot<V extends string>(names: readonly V[], counts: Float64Array): Record<V, number> {
  const out = {} as Record<V, number>;
  names.forEach((n, i) => (out[n] = counts[i]!));
  return out;
}

export interface IpsecEngineOptions {
  /** First identification value for outer tunnel headers (default random). */
  readonly identification?: number;
}

export class IpsecEngine {
  readonly spd: SecurityPolicyDatabase;
  readonly sad: SecurityAssociationDatabase;
  /** Outer-header identification counter (tests set `ids.value`). */
  readonly ids: IdentificationCounter;
  private readonly outCounts = new Float64Array(OUTBOUND_VERDICTS.length);
  private readonly inCounts = new Float64Array(INBOUND_VERDICTS.length);
  private readonly selectors = new PacketSelectors();
  /** The SAs the last inbound packet went through, outermost first; `inboundDepth` of them are valid. */
  readonly inboundPath: (SecurityAssociation | null)[] = new Array<SecurityAssociation | null>(
    MAX_LAYERS,
  ).fill(null);
  inboundDepth = 0;

  constructor(
    spd: SecurityPolicyDatabase,
    sad: SecurityAssociationDatabase,
    options: IpsecEngineOptions = {},
  ) {
    this.spd = spd;
    this.sad = sad;
    this.ids = new IdentificationCounter(options.identification);
  }

  /** Verdicts since start, per direction (a snapshot for status and metrics). */
  get counters(): {
    readonly outbound: Record<OutboundVerdict, number>;
    readonly inbound: Record<InboundVerdict, number>;
  } {
    return {
      outbound: snapshot(OUTBOUND_VERDICTS, this.outCounts),
      inbound: snapshot(INBOUND_VERDICTS, this.inCounts),
    };
  }

  /**
   * The most the bundles bound now can add to a datagram (worst-case
   * padding), for path MTU sums. Walks the SPD: call it when SAs change,
   * not per packet.
   */
  maxOverhead(): number {
    let worst = 0;
    for (const p of this.spd.policies) {
      let sum = 0;
      for (const sa of p.outbound) sum += sa.protocol === 'esp' ? espMaxOverhead(sa) : ahOverhead(sa);
      worst = Math.max(worst, sum);
    }
    return worst;
  }

  /**
   * A datagram the local stack sends (after port translation). On
   * 'protected' the span holds the protected datagram, on 'bypass' it is
   * unchanged; anything else is a drop.
   */
  outbound(buf: Uint8Array, span: PacketSpan): OutboundVerdict {
    const v = this.processOutbound(buf, span);
    this.outCounts[OUT_INDEX[v]]! += 1;
    return v;
  }

  /**
   * A datagram from the network (after the virtual tunnel header is gone,
   * before port translation). On 'accepted' the span holds the datagram
   * inside every IPsec layer; 'bypass' and 'ike' leave it unchanged
   * ('ike': a non-ESP-marker datagram on an ESP-in-UDP port, for the IKE
   * daemon with the marker still in front); anything else is a drop.
   */
  inbound(buf: Uint8Array, span: PacketSpan): InboundVerdict {
    const v = this.processInbound(buf, span);
    this.inCounts[IN_INDEX[v]]! += 1;
    return v;
  }

  private processOutbound(buf: Uint8Array, span: PacketSpan): OutboundVerdict {
    const ip = span.offset;
    if (!spanFits(buf, span)) return 'no-room';
    // Our own stack wrote this header: its checksum is not worth verifying.
    if (checkIpv4(buf, ip, span.length, false) !== null) return 'malformed';
    const policy = this.spd.lookup(buf, ip, ip + u16(buf, ip + IP_TOTAL_LENGTH), true);
    const action = policy === null ? this.spd.defaultAction : policy.action;
    if (action === 'bypass') return 'bypass';
    if (action === 'discard') return 'policy-discard';
    const bundle = policy!.outbound;
    if (bundle.length === 0) return 'no-sa';
    // Innermost first: for [ah, esp] ESP is applied, then AH over it.
    for (let i = bundle.length - 1; i >= 0; i--) {
      const sa = bundle[i]!;
      const v =
        sa.protocol === 'esp' ? espProtect(sa, buf, span, this.ids) : ahProtect(sa, buf, span, this.ids);
      if (v !== 'protected') return v;
    }
    return 'protected';
  }

  private processInbound(buf: Uint8Array, span: PacketSpan): InboundVerdict {
    this.inboundDepth = 0;
    if (!spanFits(buf, span)) return 'malformed';
    const sad = this.sad;
    let depth = 0;
    for (; depth < MAX_LAYERS; depth++) {
      const ip = span.offset;
      if (checkIpv4(buf, ip, span.length, true) !== null) return 'malformed';
      const end = ip + u16(buf, ip + IP_TOTAL_LENGTH);
      const hl = (buf[ip + IP_VERSION_IHL]! & 0x0f) * 4;
      const protocol = buf[ip + IP_PROTOCOL]!;
      const fragment = (u16(buf, ip + IP_FLAGS_FRAGMENT) & IP_FRAGMENT) !== 0;
      let v: 'accepted' | IpsecDrop;
      let sa: SecurityAssociation;
      if (protocol === ESP) {
        // RFC 4303 3.4.1: reassembly comes before ESP processing.
        if (fragment) return 'fragment';
        const esp = ip + hl;
        if (end - esp < ESP_HEADER) return 'malformed';
        const found = sad.inboundEsp(u32(buf, esp + ESP_SPI));
        if (found === undefined) return 'no-sa';
        if (found.encap !== null) return 'policy-mismatch';
        sa = found;
        v = espUnprotect(found, buf, span, hl, esp, end);
      } else if (protocol === AH) {
        if (fragment) return 'fragment';
        const ah = ip + hl;
        if (end - ah < AH_FIXED) return 'malformed';
        const found = sad.inboundAh(u32(buf, ah + AH_SPI));
        if (found === undefined) return 'no-sa';
        sa = found;
        v = ahUnprotect(found, buf, span, hl, end);
      } else if (
        protocol === UDP &&
        end - ip - hl >= UDP_HEADER &&
        sad.isEncapPort(u16(buf, ip + hl + DST_PORT))
      ) {
        if (fragment) return 'fragment';
        const udp = ip + hl;
        const udpEnd = udp + u16(buf, udp + UDP_LENGTH);
        if (udpEnd < udp + UDP_HEADER || udpEnd > end) return 'malformed';
        const payload = udp + UDP_HEADER;
        const n = udpEnd - payload;
        // RFC 3948 2.2/2.3: keepalives are one 0xFF byte; IKE starts with a zero non-ESP marker.
        if (n === 1 && buf[payload] === 0xff) return 'nat-keepalive';
        if (n >= 4 && u32(buf, payload) === 0) return depth === 0 ? 'ike' : 'malformed';
        if (n < ESP_HEADER) return 'malformed';
        const found = sad.inboundEsp(u32(buf, payload + ESP_SPI));
        if (found === undefined) return 'no-sa';
        if (found.encap === null || found.encap.localPort !== u16(buf, udp + DST_PORT))
          return 'policy-mismatch';
        sa = found;
        v = espUnprotect(found, buf, span, hl, payload, udpEnd);
      } else {
        break;
      }
      if (v !== 'accepted') return v;
      this.inboundPath[depth] = sa;
      this.inboundDepth = depth + 1;
    }
    return this.inboundPolicy(buf, span, depth);
  }

  /** RFC 4301 5.2 step 4: is what came out (and how it came) what the SPD asks for? */
  private inboundPolicy(buf: Uint8Array, span: PacketSpan, depth: number): InboundVerdict {
    const ip = span.offset;
    // Every layer left a checked header behind: rebuilt (transport) or verified (tunnel).
    const sel = this.selectors.read(buf, ip, ip + u16(buf, ip + IP_TOTAL_LENGTH));
    if (depth === 0) {
      const policy = this.spd.match(sel, false);
      const action = policy === null ? this.spd.defaultAction : policy.action;
      if (action === 'bypass') return 'bypass';
      return action === 'discard' ? 'policy-discard' : 'policy-mismatch';
    }
    const first = this.inboundPath[0]!;
    const policy = this.sad.policyOf(first) ?? this.spd.match(sel, false);
    if (policy === null || policy.action !== 'protect' || !policy.appliesInbound()) return 'policy-mismatch';
    const template = policy.template;
    if (template.length !== depth) return 'policy-mismatch';
    for (let i = 0; i < depth; i++) {
      const sa = this.inboundPath[i]!;
      const bound = this.sad.policyOf(sa);
      if (sa.protocol !== template[i] || (bound !== null && bound !== policy)) return 'policy-mismatch';
    }
    return selectorMatches(policy.selector, sel, false) ? 'accepted' : 'policy-mismatch';
  }
}

function spanFits(buf: Uint8Array, s: PacketSpan): boolean {
  return (
    s.roomStart >= 0 &&
    s.roomStart <= s.offset &&
    s.length >= 0 &&
    s.offset + s.length <= s.roomEnd &&
    s.roomEnd <= buf.length
  );
}
