/**
 * Every metric the router and the host agent serve follows Prometheus'
 * naming rules (docs/metrics.md): the process metrics under their standard
 * names (no `distnat_router_process_process_*`), distnat's own under
 * `distnat_<role>_`, counters ending in `_total` and nothing else, Unix
 * times ending in `_timestamp_seconds`, base units only. The registries are
 * built as the daemons build them, over stand-ins for the counters they
 * read, and scraped.
 */
import { describe, expect, it } from 'vitest';
import type { Registry } from 'prom-client';
import { registerHostMetrics, type HostMetricSources } from '../../../src/host/daemon/metrics.ts';
import { registerIkeMetrics } from '../../../src/ike/metrics.ts';
import { emptyStats } from '../../../src/io/types.ts';
import { newRegistry } from '../../../src/metrics/server.ts';
import { registerRouterMetrics, type RouterMetricSources } from '../../../src/router/daemon/metrics.ts';

const zero = { get: () => 0, snapshot: () => ({}) };

function routerRegistry(): Registry {
  const registry = newRegistry();
  registerRouterMetrics(registry, {
    forwarder: { traffic: zero, drops: zero, tables: { ownership: { hostCount: 0 }, iaptt: { size: 0 } } },
    leases: { stats: () => ({ port_leases: 0, spi_leases: 0 }), free: () => 0 },
    pap: { counters: { answered: { 'port-request': 0 }, dropped: { malformed: 0 } } },
    devices: { tun: { stats: emptyStats } },
    pki: { stats: () => ({ issued: 0, valid: 0, revoked: 0, crlNumber: 1, crlNextUpdate: Date.now() }) },
    // The eBPF fast path's metrics are held to the same rules.
    fastPath: {
      active: true,
      counters: { read: () => ({ traffic: {}, drops: {}, pass: { lan: {}, wan: {} } }) },
      mapMemory: () => ({ total: 0 }),
    },
  } as unknown as RouterMetricSources);
  return registry;
}

function hostRegistry(): Registry {
  const registry = newRegistry();
  registerHostMetrics(registry, {
    forwarder: {
      events: { snapshot: () => ({ outbound: 0 }) },
      counters: () => ({ outboundDrops: { x: 0 }, inboundDrops: { y: 0 } }),
    },
    translator: { counters: { outbound: { new: 0 }, inbound: { hit: 0 } } },
    sptt: { size: 0 },
    ports: { held: 0, unused: 0 },
    pap: () => ({ sent: 0 }),
    io: () => ({ tun: emptyStats() }),
    ipsec: () => ({ 'ipsec.outbound.protected': 0 }),
    ipsecSas: () => 0,
    // The eBPF fast path's metrics are held to the same rules.
    fast: () => ({
      packets: { outbound: 0, inbound: 0 },
      bytes: { outbound: 0, inbound: 0 },
      error: 0,
      pass: { out: { unleased: 0 }, in: { other: 0 } },
      active: true,
    }),
  } as unknown as HostMetricSources);
  registerIkeMetrics(registry, 'host', () => undefined);
  return registry;
}

/** The base units Prometheus names end in; anything else (ms, kb, percent) is a naming error. */
const NON_BASE_UNITS =
  /_(ms|milliseconds|us|microseconds|minutes|hours|kb|kilobytes|mb|megabytes|percent)(_total)?$/;

describe.for([
  ['router', routerRegistry],
  ['host', hostRegistry],
] as const)('the %s metrics', ([role, make]) => {
  it('are named by the Prometheus conventions', async () => {
    const metrics = await make().getMetricsAsJSON();
    const own = metrics.filter((m) => m.name.startsWith('distnat_'));
    expect(own.length).toBeGreaterThan(5);
    for (const m of metrics) {
      expect(m.name, m.name).toMatch(/^[a-z][a-z0-9_]*$/);
      expect(m.name, m.name).toMatch(new RegExp(`^(distnat_${role}_|process_|nodejs_)`));
      expect(m.name, m.name).not.toMatch(/process_process|distnat_\w*_(process|nodejs)_/);
    }
    // The process metrics are prom-client's, under the names every Node exporter uses (its
    // nodejs_active_handles_total is a gauge); the rules below are for distnat's own.
    for (const m of own) {
      expect(m.name, m.name).not.toMatch(NON_BASE_UNITS);
      if (String(m.type) === 'counter') expect(m.name, m.name).toMatch(/_total$/);
      else expect(m.name, m.name).not.toMatch(/_total$/);
      if (/unix time/i.test(m.help)) expect(m.name, m.name).toMatch(/_timestamp_seconds$/);
      if (m.name.endsWith('_timestamp_seconds')) expect(m.help, m.name).toMatch(/unix time/i);
    }
  });

  it('include the standard process metrics under their usual names', async () => {
    const names = (await make().getMetricsAsJSON()).map((m) => m.name);
    expect(names).toEqual(
      expect.arrayContaining([
        'process_cpu_seconds_total',
        'process_resident_memory_bytes',
        'nodejs_eventloop_lag_seconds',
      ]),
    );
  });
});

it('the CRL next update is a Unix time in seconds', async () => {
  const m = (await routerRegistry().getMetricsAsJSON()).find(
    (x) => x.name === 'distnat_router_pki_crl_next_update_timestamp_seconds',
  );
  const v = m?.values[0]?.value ?? 0;
  expect(Math.abs(v - Date.now() / 1000)).toBeLessThan(5);
});
