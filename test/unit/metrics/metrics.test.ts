import { describe, expect, it } from 'vitest';
import { Counter } from 'prom-client';
import { CounterSet } from '../../../src/metrics/counters.ts';
import { newRegistry, startMetricsServer } from '../../../src/metrics/server.ts';

describe('CounterSet', () => {
  it('counts by name and snapshots every name, zero or not', () => {
    const c = new CounterSet(['forwarded', 'no-owner', 'spoofed'] as const);
    c.inc('forwarded');
    c.inc('forwarded', 41);
    c.inc('spoofed');
    expect(c.snapshot()).toEqual({ forwarded: 42, 'no-owner': 0, spoofed: 1 });
    expect(c.get('forwarded')).toBe(42);
  });
});

describe('metrics endpoint', () => {
  it('serves the registry in the Prometheus text format on /metrics only', async () => {
    const registry = newRegistry();
    const packets = new Counter({
      name: 'distnat_test_packets_total',
      help: 'packets',
      registers: [registry],
    });
    packets.inc(7);
    const server = await startMetricsServer(registry, '127.0.0.1:0');
    const addr = server.address();
    if (addr === null || typeof addr === 'string') throw new Error('no port');
    try {
      const res = await fetch(`http://127.0.0.1:${addr.port}/metrics`);
      expect(res.status).toBe(200);
      expect(await res.text()).toMatch(/^distnat_test_packets_total 7$/m);
      expect((await fetch(`http://127.0.0.1:${addr.port}/`)).status).toBe(404);
    } finally {
      server.close();
    }
  });
});
