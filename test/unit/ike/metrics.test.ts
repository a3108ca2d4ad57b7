/** IKE's Prometheus metrics: the daemon's counters and gauges, read at scrape time from the current service. */
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerIkeMetrics } from '../../../src/ike/metrics.ts';
import type { IkeService } from '../../../src/ike/service.ts';
import { hostAndPeer, until } from './harness.ts';
import { makePki, PEER, type TestPki } from './pki-fixture.ts';

let pki: TestPki;
beforeAll(async () => {
  pki = await makePki();
});
afterAll(() => pki?.cleanup());

describe('registerIkeMetrics', () => {
  it('exports the counters of whatever service is current, and nothing when there is none', async () => {
    const { host, peer } = hostAndPeer(pki, { maintenanceRate: { perSecond: 1, burst: 1 } });
    const current: { service?: IkeService } = {};
    const registry = new Registry();
    registerIkeMetrics(registry, 'host', () => current.service);
    expect(await registry.metrics()).not.toMatch(/distnat_host_ike_events_total\{/);
    await host.daemon.initiate({ address: PEER, port: 500 });
    await until(() => peer.sad.live.length === 1);
    host.daemon.counters.set('rekey-deferred', 3);
    current.service = { daemon: host.daemon, sad: { size: 1 } } as unknown as IkeService;
    const text = await registry.metrics();
    expect(text).toContain('distnat_host_ike_events_total{event="rekey-deferred"} 3');
    expect(text).toContain('distnat_host_ike_sas{kind="ike"} 1');
    expect(text).toContain('distnat_host_ike_sas{kind="child"} 1');
    expect(text).toContain('distnat_host_ike_fragment_held_bytes 0');
    await host.daemon.close();
  });
});
