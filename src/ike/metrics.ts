/**
 * IKE's Prometheus metrics, read from the service when scraped: the
 * daemon's event and drop counters by name (rekeys started and deferred by
 * the maintenance rate limit, liveness checks, fragments, collisions,
 * malformed input, ...), and gauges of the SAs held and of the bytes kept
 * for fragment reassembly. The service may be replaced while the agent
 * runs (IKE restarted on another port), so it is asked for at each scrape.
 */
import { Counter, Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import type { IkeService } from './service.ts';

export function registerIkeMetrics(registry: Registry, service: () => IkeService | undefined): void {
  const registers = [registry];
  new Counter({
    name: 'distnat_ike_events_total',
    help: 'IKE events and drops by name (rekeys-started, rekey-deferred, liveness-checks-started, liveness-deferred, fragments-received, fragment-*, rekey-collision-*, malformed-*, ...)',
    labelNames: ['event'],
    registers,
    collect() {
      this.reset();
      const s = service();
      if (s !== undefined) for (const [event, v] of s.daemon.counters) this.inc({ event }, v);
    },
  });
  new Gauge({
    name: 'distnat_ike_sas',
    help: 'IKE SAs held (half-open ones included), half-open IKE SAs, and child SAs installed',
    labelNames: ['kind'],
    registers,
    collect() {
      this.reset();
      const s = service();
      if (s === undefined) return;
      this.set({ kind: 'ike' }, s.daemon.sas.length);
      this.set({ kind: 'half-open' }, s.daemon.halfOpenCount);
      this.set({ kind: 'child' }, s.sad.size);
    },
  });
  new Gauge({
    name: 'distnat_ike_fragment_bytes_held',
    help: 'Bytes of IKE fragments held for reassembly, across all SAs',
    registers,
    collect() {
      this.set(service()?.daemon.fragmentBytesHeld ?? 0);
    },
  });
}
