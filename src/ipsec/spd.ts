/**
 * Security policy database (RFC 4301 4.4.1): an ordered list; the first
 * policy whose selector matches a packet decides what happens to it.
 *
 * | action  | outbound                               | inbound (after IPsec processing)            |
 * |---------|----------------------------------------|---------------------------------------------|
 * | protect | apply the bound SA bundle              | must have arrived through SAs of the policy |
 * | bypass  | send in clear                          | accept in clear                             |
 * | discard | drop ('policy-discard')                | drop ('policy-discard')                     |
 *
 * A policy applies to outbound packets, inbound packets or both. Packets
 * no policy matches get the database's default action: 'bypass' suits a
 * distnat host, where IPsec is the exception; 'discard' is RFC 4301's
 * closed default.
 *
 * Lookup walks the list: a host has a handful of policies, and each test
 * is a few comparisons. A database with hundreds would want the
 * decorrelated, indexed form RFC 4301 4.4.1 describes.
 */
import type { SecurityAssociation } from './sa.ts';
import { PacketSelectors, selectorMatches, type TrafficSelector } from './selector.ts';
import type { IpsecProtocol } from './types.ts';

export type PolicyAction = 'protect' | 'bypass' | 'discard';
export type PolicyDirection = 'in' | 'out' | 'both';

export interface SecurityPolicyParams {
  readonly name: string;
  readonly selector: TrafficSelector;
  readonly action: PolicyAction;
  /** Default 'both'. */
  readonly direction?: PolicyDirection;
  /**
   * For 'protect': the protocols applied, outermost first (['esp'],
   * ['ah'], or ['ah', 'esp'] for AH over ESP as in FIG. 18 packet 268).
   */
  readonly protect?: readonly IpsecProtocol[];
}

export class SecurityPolicy {
  readonly name: string;
  readonly selector: TrafficSelector;
  readonly action: PolicyAction;
  readonly direction: PolicyDirection;
  readonly template: readonly IpsecProtocol[];
  /** Outbound SAs, outermost first, one per template entry; empty until bound. */
  outbound: readonly SecurityAssociation[] = [];

  /** Throws RangeError for a policy that cannot work (configuration error). */
  constructor(p: SecurityPolicyParams) {
    this.name = p.name;
    this.selector = p.selector;
    this.action = p.action;
    this.direction = p.direction ?? 'both';
    const template = p.protect ?? [];
    if (p.action === 'protect') {
      if (template.length === 0 || template.length > 2) {
        throw new RangeError(`policy ${p.name}: protect needs one or two protocols (outermost first)`);
      }
      if (template.length === 2 && (template[0] !== 'ah' || template[1] !== 'esp')) {
        throw new RangeError(`policy ${p.name}: a two-protocol bundle is AH over ESP: [ah, esp]`);
      }
      for (const t of template) {
        if (t !== 'ah' && t !== 'esp')
          throw new RangeError(`policy ${p.name}: unknown protocol ${String(t)}`);
      }
    } else if (template.length > 0) {
      throw new RangeError(`policy ${p.name}: only protect policies name protocols`);
    }
    this.template = Object.freeze([...template]);
  }

  appliesOutbound(): boolean {
    return this.direction !== 'in';
  }

  appliesInbound(): boolean {
    return this.direction !== 'out';
  }
}

export class SecurityPolicyDatabase {
  private list: SecurityPolicy[] = [];
  private readonly scratch = new PacketSelectors();

  constructor(readonly defaultAction: 'bypass' | 'discard' = 'bypass') {}

  get policies(): readonly SecurityPolicy[] {
    return this.list;
  }

  /** Adds at `position` (default: last, lowest priority). Throws for a duplicate name. */
  add(policy: SecurityPolicy, position = this.list.length): SecurityPolicy {
    if (this.get(policy.name) !== undefined) throw new RangeError(`policy ${policy.name} exists already`);
    const list = [...this.list];
    list.splice(Math.max(0, Math.min(position, list.length)), 0, policy);
    // Replaced, not edited: a lookup in progress keeps iterating the old list.
    this.list = list;
    return policy;
  }

  remove(name: string): boolean {
    const list = this.list.filter((p) => p.name !== name);
    const removed = list.length !== this.list.length;
    this.list = list;
    return removed;
  }

  get(name: string): SecurityPolicy | undefined {
    return this.list.find((p) => p.name === name);
  }

  /** The first policy for this direction whose selector matches `p`, or null (then `defaultAction` applies). */
  match(p: PacketSelectors, outbound: boolean): SecurityPolicy | null {
    const list = this.list;
    for (let i = 0; i < list.length; i++) {
      const policy = list[i]!;
      if (policy.direction !== 'both' && (policy.direction === 'out') !== outbound) continue;
      if (selectorMatches(policy.selector, p, outbound)) return policy;
    }
    return null;
  }

  /** `match` for the IPv4 datagram at buf[ip, end), header already checked. */
  lookup(buf: Uint8Array, ip: number, end: number, outbound: boolean): SecurityPolicy | null {
    return this.match(this.scratch.read(buf, ip, end), outbound);
  }
}
