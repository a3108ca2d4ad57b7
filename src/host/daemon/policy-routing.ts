/**
 * The IPv4 policy routing rules and routes the host agent installs for the
 * hairpin (docs/host.md, "Hairpin"), behind an interface so the planning is
 * testable without root: `ip` for real, a model of the kernel's rule list
 * in tests.
 *
 * Only the selectors the agent itself uses are modelled. A rule listed with
 * any other selector belongs to someone else: it is kept as `foreign`, so
 * that it is neither taken for the local table's rule nor ever deleted.
 */
import { execFileSync } from 'node:child_process';

/** RT_TABLE_LOCAL: the table of local addresses, looked up by the rule at preference 0 on a fresh kernel. */
export const LOCAL_TABLE = 255;
/** RTPROT_KERNEL: the protocol of the rules the kernel makes itself. */
export const KERNEL_PROTOCOL = 2;

export interface PolicyRule {
  readonly priority: number;
  /** Destination, a single address (/32). */
  readonly to?: string;
  readonly iif?: string;
  readonly ipproto?: number;
  /** Destination ports, inclusive. */
  readonly dport?: readonly [number, number];
  readonly table: number;
  /** Who made the rule (`ip rule ... protocol N`): the agent tags its own with this. */
  readonly protocol: number;
  /** A selector the agent does not model: someone else's rule. */
  readonly foreign?: boolean;
}

export interface PolicyRoute {
  /** A single address (/32). */
  readonly to: string;
  readonly dev: string;
  readonly src: string;
  readonly table: number;
  readonly protocol: number;
}

export type RoutingChange =
  | { readonly op: 'rule-add' | 'rule-del'; readonly rule: PolicyRule }
  | { readonly op: 'route-replace' | 'route-del'; readonly route: PolicyRoute };

export interface PolicyRouting {
  /** The IPv4 rules in the kernel's order. */
  rules(): PolicyRule[];
  /** Makes the changes in order; throws at the first one refused, naming it. */
  apply(changes: readonly RoutingChange[]): void;
}

/** A change as one line of `ip -batch`. */
export function ipBatchLine(c: RoutingChange): string {
  if ('route' in c) {
    const r = c.route;
    const verb = c.op === 'route-replace' ? 'replace' : 'del';
    return `route ${verb} ${r.to}/32 dev ${r.dev} src ${r.src} table ${r.table} protocol ${r.protocol}`;
  }
  const r = c.rule;
  const words = [`rule ${c.op === 'rule-add' ? 'add' : 'del'}`, `pref ${r.priority}`];
  if (r.iif !== undefined) words.push(`iif ${r.iif}`);
  if (r.to !== undefined) words.push(`to ${r.to}/32`);
  if (r.ipproto !== undefined) words.push(`ipproto ${r.ipproto}`);
  if (r.dport !== undefined) words.push(`dport ${r.dport[0]}-${r.dport[1]}`);
  words.push(`lookup ${r.table}`, `protocol ${r.protocol}`);
  return words.join(' ');
}

const MODELLED = new Set([
  'priority',
  'src',
  'dst',
  'iif',
  'ipproto',
  'dport_start',
  'dport_end',
  'table',
  'protocol',
]);

/** `ip -4 -d -N -j rule show` (iproute2 5.x and 6.x) as PolicyRules. */
export function parseRuleList(json: string): PolicyRule[] {
  const parsed = JSON.parse(json) as unknown;
  if (!Array.isArray(parsed)) throw new Error('ip rule show: expected a JSON array');
  return parsed.map((entry: Record<string, unknown>) => {
    const num = (v: unknown): number => Number(String(v).replace(/^\D*/, ''));
    const foreign =
      Object.keys(entry).some((k) => !MODELLED.has(k)) ||
      (entry['src'] !== undefined && entry['src'] !== 'all') ||
      entry['table'] === undefined;
    return {
      priority: num(entry['priority'] ?? 0),
      ...(typeof entry['dst'] === 'string' ? { to: entry['dst'] } : {}),
      ...(typeof entry['iif'] === 'string' ? { iif: entry['iif'] } : {}),
      // -numeric prints unnamed protocols as "ipproto-6"
      ...(entry['ipproto'] !== undefined ? { ipproto: num(entry['ipproto']) } : {}),
      ...(entry['dport_start'] !== undefined
        ? { dport: [num(entry['dport_start']), num(entry['dport_end'] ?? entry['dport_start'])] as const }
        : {}),
      table: num(entry['table'] ?? 0),
      protocol: num(entry['protocol'] ?? 0),
      ...(foreign ? { foreign: true } : {}),
    };
  });
}

/** The real thing: `ip` (iproute2) in this process's network namespace. */
export class IpPolicyRouting implements PolicyRouting {
  rules(): PolicyRule[] {
    return parseRuleList(
      execFileSync('ip', ['-4', '-d', '-N', '-j', 'rule', 'show'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
  }

  apply(changes: readonly RoutingChange[]): void {
    if (changes.length === 0) return;
    const lines = changes.map(ipBatchLine);
    try {
      // One process for the whole list: it stops at the first line the kernel refuses.
      execFileSync('ip', ['-4', '-batch', '-'], {
        input: lines.join('\n') + '\n',
        stdio: ['pipe', 'ignore', 'pipe'],
      });
    } catch (e) {
      const stderr = String((e as { stderr?: unknown }).stderr ?? '').trim();
      const line = /Command failed -:(\d+)/.exec(stderr)?.[1];
      const what = line !== undefined ? `\`ip ${lines[Number(line) - 1]}\`: ` : '';
      throw new Error(`${what}${stderr.split('\n')[0] || (e as Error).message}`);
    }
  }
}

const sameRule = (a: PolicyRule, b: PolicyRule): boolean =>
  a.priority === b.priority &&
  a.to === b.to &&
  a.iif === b.iif &&
  a.ipproto === b.ipproto &&
  a.dport?.[0] === b.dport?.[0] &&
  a.dport?.[1] === b.dport?.[1] &&
  a.table === b.table &&
  a.protocol === b.protocol &&
  a.foreign === b.foreign;

/** fib_rules.c rule_find: what the deletion names must match, what it leaves out matches anything. */
const deletionMatches = (del: PolicyRule, r: PolicyRule): boolean =>
  del.priority === r.priority &&
  del.table === r.table &&
  del.protocol === r.protocol &&
  (del.to === undefined || del.to === r.to) &&
  (del.iif === undefined || del.iif === r.iif) &&
  (del.ipproto === undefined || del.ipproto === r.ipproto) &&
  (del.dport === undefined || (del.dport[0] === r.dport?.[0] && del.dport[1] === r.dport[1]));

/**
 * The kernel's rule list as fib_rules.c keeps it, for tests: a new rule
 * goes after every rule of the same or a lower preference, an identical
 * rule is refused (EEXIST), a deletion takes the first rule that has every
 * selector the deletion names (a selector left out matches anything).
 */
export class MemoryPolicyRouting implements PolicyRouting {
  readonly list: PolicyRule[];
  readonly routes: PolicyRoute[] = [];
  readonly applied: RoutingChange[][] = [];

  constructor(initial?: PolicyRule[]) {
    this.list = initial ?? [
      { priority: 0, table: LOCAL_TABLE, protocol: KERNEL_PROTOCOL },
      { priority: 32766, table: 254, protocol: KERNEL_PROTOCOL },
      { priority: 32767, table: 253, protocol: KERNEL_PROTOCOL },
    ];
  }

  rules(): PolicyRule[] {
    return [...this.list];
  }

  apply(changes: readonly RoutingChange[]): void {
    this.applied.push([...changes]);
    for (const c of changes) {
      if ('route' in c) {
        const at = this.routes.findIndex((r) => r.to === c.route.to && r.table === c.route.table);
        if (c.op === 'route-del') {
          if (at < 0) throw new Error(`\`ip ${ipBatchLine(c)}\`: No such process`);
          this.routes.splice(at, 1);
        } else if (at < 0) this.routes.push(c.route);
        else this.routes[at] = c.route;
      } else if (c.op === 'rule-add') {
        if (this.list.some((r) => sameRule(r, c.rule)))
          throw new Error(`\`ip ${ipBatchLine(c)}\`: RTNETLINK answers: File exists`);
        let at = 0;
        while (at < this.list.length && this.list[at]!.priority <= c.rule.priority) at++;
        this.list.splice(at, 0, c.rule);
      } else {
        const at = this.list.findIndex((r) => deletionMatches(c.rule, r));
        if (at < 0) throw new Error(`\`ip ${ipBatchLine(c)}\`: RTNETLINK answers: No such file or directory`);
        this.list.splice(at, 1);
      }
    }
  }
}
