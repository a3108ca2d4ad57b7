/**
 * The hairpin for unmodified programs (docs/host.md, "Hairpin"): every host
 * carries the shared address, so its kernel delivers a datagram for
 * shared:<port> locally, even when the port belongs to another host. From
 * this host the shared address should mean what it means from outside: its
 * own leased ports here, every other TCP or UDP port through the tunnel,
 * where the router turns it around to the port's owner.
 *
 * Policy routing does it, ahead of the local table, for locally generated
 * packets only (`iif lo`: output route lookups are made as if from lo):
 *
 *   L: iif lo to SHARED dport <own block>  lookup local   (one per block)
 *   L: iif lo to SHARED ipproto tcp        lookup TABLE   (TABLE: SHARED dev TUN)
 *   L: iif lo to SHARED ipproto udp        lookup TABLE
 *   L: lookup local                                       (the kernel's rule, moved below)
 *
 * The own blocks are named rather than the others' ports because a rule's
 * port range cannot reach 65535 (the kernel refuses it): a host's own 65535
 * then goes round the router and back, which still arrives, where a missing
 * "others" range would deliver another host's port here. The routes are
 * chosen when a socket connects (ip_route_connect passes the ports), so TCP
 * sizes its segments for the TUN device, not for lo.
 *
 * All rules share the local rule's preference L (0 on a fresh kernel): a
 * rule added at a preference goes after those already there, so the set is
 * added and then the local rule added again after it and the old one
 * removed. No moment lacks a local rule, and rules at other preferences keep
 * their order relative to the local one. The kernel refuses a rule identical
 * to one that exists, so consecutive sets alternate between two protocol
 * tags; the tags also find what a crashed agent left behind.
 */
import type { Block } from '../../util/block.ts';
import { KERNEL_PROTOCOL, LOCAL_TABLE } from './policy-routing.ts';
import type { PolicyRoute, PolicyRule, RoutingChange } from './policy-routing.ts';

/** The two protocol tags (`ip rule ... protocol N`) of the agent's rules, in turn. */
export const HAIRPIN_TAGS = [0x64, 0x65] as const;

export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
/** A fib rule's port range must end below 65535 (fib_rule_port_range_valid). */
const HIGHEST_RULE_PORT = 65534;

export interface HairpinSpec {
  readonly sharedAddress: string;
  readonly tun: string;
  /** The routing table holding the route into the TUN device. */
  readonly table: number;
}

const isTag = (protocol: number): boolean => (HAIRPIN_TAGS as readonly number[]).includes(protocol);

const isLocalRule = (r: PolicyRule): boolean =>
  r.table === LOCAL_TABLE &&
  r.foreign !== true &&
  r.to === undefined &&
  r.iif === undefined &&
  r.ipproto === undefined &&
  r.dport === undefined;

/** The own blocks merged where they touch, as rule ranges (65535 left out, see above). */
export function ownPortRanges(blocks: readonly Block[]): [number, number][] {
  const sorted = [...blocks].sort((a, b) => a.lowest - b.lowest);
  const merged: [number, number][] = [];
  for (const b of sorted) {
    const lo = b.lowest;
    const hi = Math.min(b.lowest + b.count - 1, HIGHEST_RULE_PORT);
    if (lo > hi) continue;
    const last = merged[merged.length - 1];
    if (last !== undefined && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else merged.push([lo, hi]);
  }
  return merged;
}

/** The route into the TUN device; one for every set, so it keeps the first tag. */
export function hairpinRoute(spec: HairpinSpec): PolicyRoute {
  return {
    to: spec.sharedAddress,
    dev: spec.tun,
    src: spec.sharedAddress,
    table: spec.table,
    protocol: HAIRPIN_TAGS[0],
  };
}

/** The rule set for `blocks`, in the order it must have, the local rule last. */
export function hairpinRules(
  spec: HairpinSpec,
  blocks: readonly Block[],
  priority: number,
  tag: number,
): PolicyRule[] {
  const to = spec.sharedAddress;
  return [
    ...ownPortRanges(blocks).map((dport): PolicyRule => ({
      priority,
      iif: 'lo',
      to,
      dport,
      table: LOCAL_TABLE,
      protocol: tag,
    })),
    { priority, iif: 'lo', to, ipproto: IPPROTO_TCP, table: spec.table, protocol: tag },
    { priority, iif: 'lo', to, ipproto: IPPROTO_UDP, table: spec.table, protocol: tag },
    { priority, table: LOCAL_TABLE, protocol: tag },
  ];
}

/**
 * Deletions of `rules` in the one order that never sends another host's
 * port to the local table: the own-block rules first (their ports go round
 * the router for that instant, and still arrive), then the local rule (its
 * deletion names no selector, so it would take an own-block rule still
 * there), the TCP and UDP rules last (before them, the local rule would
 * catch every port).
 */
function deletions(rules: readonly PolicyRule[]): RoutingChange[] {
  const ordered = [
    ...rules.filter((r) => r.table === LOCAL_TABLE && !isLocalRule(r)),
    ...rules.filter(isLocalRule),
    ...rules.filter((r) => r.table !== LOCAL_TABLE),
  ];
  return ordered.map((rule) => ({ op: 'rule-del', rule }));
}

export type HairpinPlan =
  | { readonly ok: true; readonly tag: number; readonly changes: RoutingChange[] }
  | { readonly ok: false; readonly reason: string };

/**
 * From the rules as listed now to the set for `blocks`: the new set and a
 * local rule after it, then every rule of an earlier set and the local rule
 * that stood before. Left-overs under both tags (an agent stopped in the
 * middle of a change) are cleared first.
 */
export function planHairpin(
  current: readonly PolicyRule[],
  spec: HairpinSpec,
  blocks: readonly Block[],
): HairpinPlan {
  const ours = current.filter((r) => r.foreign !== true && isTag(r.protocol));
  const tagsFound = new Set(ours.map((r) => r.protocol));
  if (tagsFound.size > 1) {
    const cleared = planRemoval(current, spec);
    const after = applyToList(current, cleared);
    const next = planHairpin(after, spec, blocks);
    return next.ok ? { ...next, changes: [...cleared, ...next.changes] } : next;
  }
  const local = current.find(isLocalRule);
  if (local === undefined) return { ok: false, reason: 'no rule looks up the local table (ip rule show)' };
  const tag = tagsFound.has(HAIRPIN_TAGS[0]) ? HAIRPIN_TAGS[1] : HAIRPIN_TAGS[0];
  const priority = local.priority;
  const adds = hairpinRules(spec, blocks, priority, tag).map((rule): RoutingChange => ({
    op: 'rule-add',
    rule,
  }));
  const old = [...ours, ...(isTag(local.protocol) ? [] : [local])];
  return {
    ok: true,
    tag,
    changes: [{ op: 'route-replace', route: hairpinRoute(spec) }, ...adds, ...deletions(old)],
  };
}

/**
 * Back to the kernel's own local rule: added again after the agent's set
 * unless it is still there (a set never completed), then the set removed,
 * and the route.
 */
export function planRemoval(current: readonly PolicyRule[], spec: HairpinSpec): RoutingChange[] {
  const ours = current.filter((r) => r.foreign !== true && isTag(r.protocol));
  if (ours.length === 0) return [];
  const ourLocal = ours.find(isLocalRule);
  const kernelLocal = current.find((r) => isLocalRule(r) && r.protocol === KERNEL_PROTOCOL);
  const restore: RoutingChange[] =
    kernelLocal === undefined
      ? [
          {
            op: 'rule-add',
            rule: { priority: ourLocal?.priority ?? 0, table: LOCAL_TABLE, protocol: KERNEL_PROTOCOL },
          },
        ]
      : [];
  return [...restore, ...deletions(ours), { op: 'route-del', route: hairpinRoute(spec) }];
}

/** The list as it will be after `changes` (only what planning needs: rules, in order). */
function applyToList(current: readonly PolicyRule[], changes: readonly RoutingChange[]): PolicyRule[] {
  const list = [...current];
  for (const c of changes) {
    if (c.op === 'rule-add') {
      let at = 0;
      while (at < list.length && list[at]!.priority <= c.rule.priority) at++;
      list.splice(at, 0, c.rule);
    } else if (c.op === 'rule-del') {
      const at = list.findIndex((r) => r === c.rule);
      if (at >= 0) list.splice(at, 1);
    }
  }
  return list;
}
