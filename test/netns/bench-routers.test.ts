/**
 * bench:routers (scripts/bench/routers.ts) still runs: all three parts at
 * their smallest (a few PAP clients, one router kill, one-second floods),
 * with --json. The benchmark makes and removes its own two-router testbed
 * (`bn<pid>-`); this file runs it, reads what it printed, and checks that
 * it measured what it says (every request granted on each path, the
 * download intact across the kill, the host on the other router, both
 * routers forwarding in the two-router phase) and that its testbed is gone.
 * No figure is held to a speed: that is the benchmark's job, not a test's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describe as describeResult, run } from '../helpers/process.ts';
import { ROOT } from '../helpers/testbed.ts';

interface BenchOutput {
  testbed: string;
  uptime: string[];
  grants: {
    path: string;
    grants: number;
    requests: number;
    perSecond: number;
    p50Ms: number;
    p99Ms: number;
  }[];
  failover: {
    rounds: { killed: string; movedTo: string; udpGapMs?: number; tcpGapMs: number; intact: boolean }[];
    udpGapMedianMs?: number;
  };
  traffic: {
    results: {
      path: string;
      delivered: number;
      tcpUpGbps: number;
      perRouter: Record<string, { out: number }>;
    }[];
    ratios?: { smallPackets?: number; tcpUp?: number; tcpDown?: number };
  };
}

let output = '';
let bench: BenchOutput;
let exitCode: number | null = null;

const bench_ = (args: string[], timeoutMs = 30_000) =>
  run([process.execPath, '--import', 'tsx', 'scripts/bench/routers.ts', ...args], { cwd: ROOT, timeoutMs });

beforeAll(async () => {
  const r = await bench_(
    ['--json', '--clients', '4', '--requests', '5', '--rounds', '1', '--file-mb', '2', '--seconds', '1'],
    420_000,
  );
  exitCode = r.code;
  output = describeResult(r);
  const line = r.stdout.trim().split('\n').pop() ?? '';
  bench = JSON.parse(line.startsWith('{') ? line : '{}') as BenchOutput;
}, 450_000);

afterAll(async () => {
  // Should the benchmark have left its testbed, the next one's sweep removes it; say so here.
  if (bench?.testbed !== undefined) {
    const list = await run(['ip', 'netns', 'list']);
    if (list.stdout.includes(bench.testbed)) console.error(`bench:routers left ${bench.testbed} behind`);
  }
});

describe('bench:routers, all parts at their smallest', () => {
  it('exits 0 with one JSON object', () => {
    expect(exitCode, output).toBe(0);
    expect(bench.testbed, output).toMatch(/^bn\d+-$/);
    expect(bench.uptime).toHaveLength(2);
  });

  it('grants every request on the journal, on etcd with one router and with two', () => {
    expect(bench.grants.map((g) => g.path)).toEqual([
      'one router, local journal',
      'one router, etcd (3 members)',
      'two routers, etcd (3 members)',
    ]);
    for (const g of bench.grants) {
      expect(g.requests).toBe(20);
      expect(g.grants, g.path).toBe(20);
      expect(g.p99Ms).toBeGreaterThanOrEqual(g.p50Ms);
    }
  });

  it('kills the router the host sends through: the download arrives intact, the host moved, a gap measured', () => {
    expect(bench.failover.rounds).toHaveLength(1);
    const [r] = bench.failover.rounds;
    expect(r!.intact).toBe(true);
    expect(r!.killed).toBe('10.0.0.7');
    expect(r!.movedTo).toBe('10.0.0.8');
    // The host moves only after 3 s of silence (docs/multi-router.md): a gap below that was not a failover.
    expect(r!.udpGapMs).toBeGreaterThan(2_000);
    expect(r!.tcpGapMs).toBeGreaterThan(2_000);
  });

  it('forwards through both routers in the two-router phase and through router 1 alone after', () => {
    const [two, one] = bench.traffic.results;
    expect(two!.perRouter['router']!.out).toBeGreaterThan(0);
    expect(two!.perRouter['router2']!.out).toBeGreaterThan(0);
    expect(Object.keys(one!.perRouter)).toEqual(['router']);
    expect(one!.perRouter['router']!.out).toBeGreaterThan(0);
    for (const t of [two!, one!]) {
      expect(t.delivered, t.path).toBeGreaterThan(0);
      expect(t.tcpUpGbps, t.path).toBeGreaterThan(0);
    }
    expect(bench.traffic.ratios?.smallPackets).toBeGreaterThan(0);
  });

  it('leaves no namespace of its testbed behind', async () => {
    const list = await run(['ip', 'netns', 'list']);
    expect(list.stdout).not.toContain(bench.testbed);
  });

  it('refuses a bad option with exit 64 and a pointer to --help', async () => {
    const r = await bench_(['--rounds', 'none']);
    expect(r.code).toBe(64);
    expect(r.stderr).toContain('--rounds none: a whole number');
    const help = await bench_(['--help']);
    expect(help.code).toBe(0);
    for (const o of ['--parts', '--clients', '--requests', '--rounds', '--udp-rate', '--seconds'])
      expect(help.stdout).toContain(o);
  });
});
