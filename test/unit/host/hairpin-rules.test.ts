import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  HAIRPIN_TAGS,
  IPPROTO_TCP,
  IPPROTO_UDP,
  ownPortRanges,
  planHairpin,
  planRemoval,
} from '../../../src/host/daemon/hairpin-rules.ts';
import type { HairpinSpec } from '../../../src/host/daemon/hairpin-rules.ts';
import {
  ipBatchLine,
  KERNEL_PROTOCOL,
  LOCAL_TABLE,
  MemoryPolicyRouting,
  parseRuleList,
} from '../../../src/host/daemon/policy-routing.ts';
import type { PolicyRule, RoutingChange } from '../../../src/host/daemon/policy-routing.ts';
import type { Block } from '../../../src/util/block.ts';

const SHARED = '198.51.100.30';
const SPEC: HairpinSpec = { sharedAddress: SHARED, tun: 'dn0', table: 7032 };
const [A, B] = HAIRPIN_TAGS;

/** Where the kernel's rules send a locally generated packet to the shared address: the first rule that matches. */
function verdict(rules: readonly PolicyRule[], ipproto: number, dport: number): 'local' | 'tunnel' | 'none' {
  for (const r of rules) {
    if (r.foreign === true) continue;
    if (r.to !== undefined && r.to !== SHARED) continue;
    if (r.iif !== undefined && r.iif !== 'lo') continue;
    if (r.ipproto !== undefined && r.ipproto !== ipproto) continue;
    if (r.dport !== undefined && (dport < r.dport[0] || dport > r.dport[1])) continue;
    if (r.table === LOCAL_TABLE) return 'local';
    if (r.table === SPEC.table) return 'tunnel';
  }
  return 'none';
}

/** Applies a plan one change at a time, checking after each that some rule still looks up the local table. */
function applyStepwise(routing: MemoryPolicyRouting, changes: readonly RoutingChange[]): void {
  for (const c of changes) {
    routing.apply([c]);
    expect(verdict(routing.list, 1, 0), `after ${ipBatchLine(c)}`).toBe('local');
  }
}

function install(routing: MemoryPolicyRouting, blocks: readonly Block[]): number {
  const plan = planHairpin(routing.rules(), SPEC, blocks);
  if (!plan.ok) throw new Error(plan.reason);
  applyStepwise(routing, plan.changes);
  return plan.tag;
}

describe('ip command lines', () => {
  it('renders every change as `ip -batch` takes it, naming every selector', () => {
    const rule: PolicyRule = {
      priority: 0,
      iif: 'lo',
      to: SHARED,
      ipproto: 6,
      dport: [1024, 1055],
      table: 7032,
      protocol: A,
    };
    expect(ipBatchLine({ op: 'rule-add', rule })).toBe(
      `rule add pref 0 iif lo to ${SHARED}/32 ipproto 6 dport 1024-1055 lookup 7032 protocol ${A}`,
    );
    expect(ipBatchLine({ op: 'rule-del', rule: { priority: 0, table: 255, protocol: 2 } })).toBe(
      'rule del pref 0 lookup 255 protocol 2',
    );
    expect(
      ipBatchLine({
        op: 'route-replace',
        route: { to: SHARED, dev: 'dn0', src: SHARED, table: 7032, protocol: A },
      }),
    ).toBe(`route replace ${SHARED}/32 dev dn0 src ${SHARED} table 7032 protocol ${A}`);
  });

  it('reads `ip -4 -d -N -j rule show` as iproute2 6.1 prints it', () => {
    // Captured in a namespace with the agent's set, a foreign fwmark rule and the kernel's defaults.
    const json =
      '[{"priority":0,"src":"all","dst":"198.51.100.30","iif":"lo","dport_start":1088,"dport_end":1119,"table":"255","protocol":"100"},' +
      '{"priority":0,"src":"all","dst":"198.51.100.30","iif":"lo","ipproto":"ipproto-6","table":"7032","protocol":"100"},' +
      '{"priority":0,"src":"all","table":"255","protocol":"100"},' +
      '{"priority":5,"src":"all","dst":"198.51.100.0","dstlen":24,"fwmark":"0x3","table":"100","protocol":"0"},' +
      '{"priority":32766,"src":"all","table":"254","protocol":"2"}]';
    expect(parseRuleList(json)).toEqual([
      { priority: 0, to: SHARED, iif: 'lo', dport: [1088, 1119], table: 255, protocol: 100 },
      { priority: 0, to: SHARED, iif: 'lo', ipproto: 6, table: 7032, protocol: 100 },
      { priority: 0, table: 255, protocol: 100 },
      { priority: 5, to: '198.51.100.0', table: 100, protocol: 0, foreign: true },
      { priority: 32766, table: 254, protocol: 2 },
    ]);
  });
});

describe('hairpin rules', () => {
  it('own blocks merged where they touch; 65535 cannot be named in a rule', () => {
    expect(
      ownPortRanges([
        { lowest: 1056, count: 32 },
        { lowest: 1024, count: 32 },
        { lowest: 2000, count: 8 },
        { lowest: 65504, count: 32 },
      ]),
    ).toEqual([
      [1024, 1087],
      [2000, 2007],
      [65504, 65534],
    ]);
    expect(ownPortRanges([{ lowest: 65535, count: 1 }])).toEqual([]);
  });

  it('puts the set ahead of the local table at its preference, and the local rule after it', () => {
    const routing = new MemoryPolicyRouting();
    expect(install(routing, [{ lowest: 1024, count: 32 }])).toBe(A);
    expect(routing.list).toEqual([
      { priority: 0, iif: 'lo', to: SHARED, dport: [1024, 1055], table: 255, protocol: A },
      { priority: 0, iif: 'lo', to: SHARED, ipproto: IPPROTO_TCP, table: 7032, protocol: A },
      { priority: 0, iif: 'lo', to: SHARED, ipproto: IPPROTO_UDP, table: 7032, protocol: A },
      { priority: 0, table: 255, protocol: A },
      { priority: 32766, table: 254, protocol: KERNEL_PROTOCOL },
      { priority: 32767, table: 253, protocol: KERNEL_PROTOCOL },
    ]);
    expect(routing.routes).toEqual([{ to: SHARED, dev: 'dn0', src: SHARED, table: 7032, protocol: A }]);
    expect(verdict(routing.list, IPPROTO_TCP, 1030)).toBe('local');
    expect(verdict(routing.list, IPPROTO_TCP, 1080)).toBe('tunnel');
    expect(verdict(routing.list, IPPROTO_UDP, 65535)).toBe('tunnel');
    expect(verdict(routing.list, 1, 0)).toBe('local');
  });

  it("a new block replaces the set under the other tag; no moment sends another host's port here", () => {
    const routing = new MemoryPolicyRouting();
    install(routing, [{ lowest: 1024, count: 32 }]);
    const plan = planHairpin(routing.rules(), SPEC, [
      { lowest: 1024, count: 32 },
      { lowest: 3000, count: 32 },
    ]);
    if (!plan.ok) throw new Error(plan.reason);
    expect(plan.tag).toBe(B);
    for (const c of plan.changes) {
      routing.apply([c]);
      // An own port may go round the router for an instant (it still arrives); another host's, never here.
      expect(['local', 'tunnel']).toContain(verdict(routing.list, IPPROTO_TCP, 1030));
      expect(verdict(routing.list, IPPROTO_TCP, 1080)).toBe('tunnel');
      expect(verdict(routing.list, IPPROTO_UDP, 9999)).toBe('tunnel');
      expect(['local', 'tunnel']).toContain(verdict(routing.list, IPPROTO_TCP, 3010));
    }
    expect(verdict(routing.list, IPPROTO_TCP, 1030)).toBe('local');
    expect(verdict(routing.list, IPPROTO_TCP, 3010)).toBe('local');
    expect(routing.list.filter((r) => r.protocol === A)).toEqual([]);
    expect(routing.list.filter((r) => r.protocol === B)).toHaveLength(5);
  });

  it("removal puts the kernel's local rule back and leaves foreign rules alone", () => {
    const initial: PolicyRule[] = [
      { priority: 0, table: LOCAL_TABLE, protocol: KERNEL_PROTOCOL },
      { priority: 0, to: '198.51.100.0', table: LOCAL_TABLE, protocol: KERNEL_PROTOCOL, foreign: true },
      { priority: 100, to: SHARED, table: 50, protocol: 0 },
      { priority: 32766, table: 254, protocol: KERNEL_PROTOCOL },
    ];
    const routing = new MemoryPolicyRouting([...initial]);
    install(routing, [{ lowest: 1024, count: 32 }]);
    install(routing, [{ lowest: 2048, count: 64 }]);
    install(routing, []);
    expect(verdict(routing.list, IPPROTO_TCP, 2050)).toBe('tunnel');
    applyStepwise(routing, planRemoval(routing.rules(), SPEC));
    expect(routing.list).toEqual(
      // The foreign rule at preference 0 was after the local rule and stays after the one put back.
      [initial[1], initial[0], initial[2], initial[3]],
    );
    expect(routing.routes).toEqual([]);
    expect(planRemoval(routing.rules(), SPEC)).toEqual([]);
  });

  it('follows a local rule moved to another preference', () => {
    const routing = new MemoryPolicyRouting([
      { priority: 10, table: LOCAL_TABLE, protocol: 4 },
      { priority: 32766, table: 254, protocol: KERNEL_PROTOCOL },
    ]);
    install(routing, [{ lowest: 1024, count: 32 }]);
    expect(new Set(routing.list.slice(0, 4).map((r) => r.priority))).toEqual(new Set([10]));
    expect(verdict(routing.list, IPPROTO_TCP, 1080)).toBe('tunnel');
  });

  it('refuses when no rule looks up the local table', () => {
    const plan = planHairpin([{ priority: 32766, table: 254, protocol: 2 }], SPEC, []);
    expect(plan).toEqual({ ok: false, reason: 'no rule looks up the local table (ip rule show)' });
  });

  it('clears the rules of an agent stopped in the middle of a change (both tags), then installs', () => {
    const routing = new MemoryPolicyRouting();
    install(routing, [{ lowest: 1024, count: 32 }]);
    const next = planHairpin(routing.rules(), SPEC, [{ lowest: 4096, count: 32 }]);
    if (!next.ok) throw new Error(next.reason);
    // Stopped after the adds, before the deletions.
    routing.apply(next.changes.filter((c) => c.op !== 'rule-del'));
    expect(install(routing, [{ lowest: 5000, count: 32 }])).toBe(A);
    expect(routing.list.filter((r) => r.protocol === B)).toEqual([]);
    expect(verdict(routing.list, IPPROTO_TCP, 1030)).toBe('tunnel');
    expect(verdict(routing.list, IPPROTO_TCP, 4100)).toBe('tunnel');
    expect(verdict(routing.list, IPPROTO_TCP, 5010)).toBe('local');
  });

  it('any sequence of block sets: own ports here, the rest through the tunnel, removal restores the list', () => {
    const block = fc.record({
      lowest: fc.integer({ min: 1024, max: 65535 }),
      count: fc.integer({ min: 1, max: 64 }),
    });
    const blockSet = fc
      .array(block, { maxLength: 4 })
      .map((bs) => bs.map((b) => ({ lowest: b.lowest, count: Math.min(b.count, 65536 - b.lowest) })));
    fc.assert(
      fc.property(
        fc.array(blockSet, { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 1024, max: 65535 }),
        (sets, port) => {
          const routing = new MemoryPolicyRouting();
          const initial = routing.rules();
          const owns = (blocks: readonly Block[]): boolean =>
            blocks.some((b) => port >= b.lowest && port < b.lowest + b.count);
          let before: readonly Block[] | undefined; // undefined: nothing installed yet, all local
          for (const blocks of sets) {
            const plan = planHairpin(routing.rules(), SPEC, blocks);
            if (!plan.ok) throw new Error(plan.reason);
            for (const c of plan.changes) {
              routing.apply([c]);
              // Never here while another host may own the port, at any step of the change.
              if (before !== undefined && !owns(before) && !owns(blocks))
                expect(verdict(routing.list, IPPROTO_TCP, port)).toBe('tunnel');
              expect(verdict(routing.list, 1, 0)).toBe('local');
            }
            // A host's own 65535 goes round the router and comes back: the one port a rule cannot name.
            const want = owns(blocks) && port !== 65535 ? 'local' : 'tunnel';
            expect(verdict(routing.list, IPPROTO_TCP, port)).toBe(want);
            expect(verdict(routing.list, IPPROTO_UDP, port)).toBe(want);
            before = blocks;
          }
          applyStepwise(routing, planRemoval(routing.rules(), SPEC));
          expect(routing.list).toEqual(initial);
        },
      ),
      { numRuns: 200 },
    );
  });
});
