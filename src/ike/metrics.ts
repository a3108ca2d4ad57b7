/**
 * IKE's Prometheus metrics, named after the daemon that serves them
 * (`distnat_<role>_ike_*`, docs/metrics.md), read from the service when scraped: the
 * daemon's event and drop counters by name (rekeys started and deferred by
 * the maintenance rate limit, liveness checks, fragments, collisions,
 * malformed input, ...), and gauges of the SAs held and of the bytes kept
 * for fragment reassembly. The service may be replaced while the agent
 * runs (IKE restarted on another port), so it is asked for at each scrape.
 */
import { Counter, Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import type { IkeService } from './service.ts';

export function registerIkeMetrics(
  registry: Registry,
  role: 'host' | 'router',
  service: () => IkeService | undefined,
  /** Events the daemon around the service counts itself (the host agent's revocation-*). */
  events?: () => ReadonlyMap<string, number>,
): void {
  const prefix = `distnat_${role}_ike`;
  const registers = [registry];
  new Counter({
    name: `${prefix}_events_total`,
    help: 'IKE events and drops by name (rekeys-started, revocation-*, rekey-deferred, liveness-checks-started, liveness-deferred, fragments-received, fragment-*, rekey-collision-*, malformed-*, ...)',
    labelNames: ['event'],
    registers,
    collect() {
      this.reset();
      const s = service();
      if (s !== undefined) for (const [event, v] of s.daemon.counters) this.inc({ event }, v);
      for (const [event, v] of events?.() ?? []) this.inc({ event }, v);
    },
  });
  new Gauge({
    name: `${prefix}_sas`,
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
    name: `${prefix}_fragment_held_bytes`,
    help: 'Bytes of IKE fragments held for reassembly, across all SAs',
    registers,
    collect() {
      this.set(service()?.daemon.fragmentBytesHeld ?? 0);
    },
  });
}
