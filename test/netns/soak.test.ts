/**
 * The soak (scripts/bench/soak.ts, docs/soak.md) for two minutes: mixed
 * traffic from both hosts (TCP and UDP with iperf3, curl of a checked file,
 * ICMP echo, TCP through the hosts' IKE child SAs as ESP), a third PAP
 * client leasing and giving back blocks, both hosts' SPI blocks withdrawn at
 * 30 s and 90 s, every daemon sampled every 5 s. The soak makes and removes
 * its own testbed (`bn<pid>-`); this file only runs it and reads what it
 * wrote.
 *
 * It fails when a daemon's heap after a full GC, resident set or open
 * descriptors grew over the second minute by more than the soak's limits,
 * when one TCP transfer failed, when a host did not recover from a
 * withdrawal within a minute, or when a daemon stopped.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describe as describeResult, run } from '../helpers/process.ts';
import { ROOT } from '../helpers/testbed.ts';

interface Growth {
  daemon: string;
  metric: string;
  slopePerMinute: number;
  limit: number;
  halvesPerMinute?: [number, number];
  grew: boolean;
}

interface TrafficTally {
  tcpRuns: number;
  tcpFailures: number;
  curlRuns: number;
  curlFailures: number;
  udpRuns: number;
  pingReceived: number;
  failures: string[];
}

interface Summary {
  seconds: number;
  samples: number;
  withdrawals: { host: string; kind: string; recoverySeconds: number }[];
  churn: { rounds: number; granted: number };
  traffic: Record<'h1' | 'h2', TrafficTally>;
  tcpFailures: number;
  esp: Record<string, { protected: number; accepted: number }>;
  growth: Growth[];
  problems: string[];
  csv: string;
  picture: string;
}

const out = mkdtempSync(join(tmpdir(), 'distnat-soak-test-'));
let summary: Summary;
let output = '';

beforeAll(async () => {
  const r = await run(
    [
      process.execPath,
      '--import',
      'tsx',
      join(ROOT, 'scripts/bench/soak.ts'),
      '--minutes',
      '2',
      '--interval',
      '5',
      '--out',
      out,
    ],
    { cwd: ROOT, timeoutMs: 330_000 },
  );
  output = describeResult(r);
  const file = join(out, 'summary.json');
  if (!existsSync(file)) throw new Error(`the soak wrote no summary\n${output}`);
  summary = JSON.parse(readFileSync(file, 'utf8')) as Summary;
}, 360_000);

afterAll(() => {
  if (process.env['DN_KEEP_CAPTURES'] !== '1') rmSync(out, { recursive: true, force: true });
});

describe('soak: two minutes of mixed traffic, lease churn and withdrawals', () => {
  it('ran the whole time, sampling all four daemons, with churn and withdrawals', () => {
    expect(summary.problems, output).toEqual([]);
    expect(summary.seconds).toBeGreaterThanOrEqual(120);
    expect(summary.samples).toBeGreaterThanOrEqual(20);
    expect(new Set(summary.growth.map((g) => g.daemon))).toEqual(new Set(['router', 'h1', 'h2', 'peer']));
    // Both hosts at 30 s and at 90 s, each back with blocks, IKE and a child SA within a minute.
    expect(summary.withdrawals.map((w) => w.host).sort()).toEqual(['h1', 'h1', 'h2', 'h2']);
    expect(summary.churn.rounds).toBeGreaterThanOrEqual(5);
    expect(summary.churn.granted).toBeGreaterThanOrEqual(10);
  });

  it('no TCP transfer failed; every kind of traffic flowed from both hosts, TCP partly through ESP', () => {
    for (const h of ['h1', 'h2'] as const) {
      const t = summary.traffic[h];
      expect(t.tcpFailures + t.curlFailures, `${h}: ${t.failures.join('\n')}`).toBe(0);
      expect(t.tcpRuns, h).toBeGreaterThanOrEqual(5);
      expect(t.curlRuns, h).toBeGreaterThanOrEqual(5);
      expect(t.udpRuns, h).toBeGreaterThanOrEqual(5);
      expect(t.pingReceived, h).toBeGreaterThan(0);
      expect(summary.esp[h]!.protected, h).toBeGreaterThan(1000);
    }
    expect(summary.tcpFailures).toBe(0);
    expect(summary.esp['peer']!.accepted).toBeGreaterThan(2000);
  });

  it('no daemon grew: heap after GC, resident set and open descriptors flat over the second minute', () => {
    const grew = summary.growth.filter((g) => g.grew);
    expect(
      grew.map(
        (g) =>
          `${g.daemon} ${g.metric} ${g.slopePerMinute}/min > ${g.limit}${g.halvesPerMinute ? ` (halves ${g.halvesPerMinute.join(', ')}/min)` : ''}`,
      ),
      output,
    ).toEqual([]);
  });

  it('wrote the CSV and the picture', () => {
    const csv = readFileSync(summary.csv, 'utf8');
    expect(csv.split('\n')[0]).toBe('seconds,source,metric,value');
    for (const d of ['router', 'h1', 'h2', 'peer']) expect(csv).toContain(`,${d},heap_used_bytes,`);
    expect(readFileSync(summary.picture, 'utf8')).toMatch(/<svg[\s\S]*<\/svg>/);
  });
});
