import { createServer, type Server } from 'node:http';
import { Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The Prometheus endpoint. Each daemon registers its metrics on its own
 * Registry (no global state, so tests can run several daemons in one process)
 * and serves them at /metrics on a local address.
 *
 * Names follow Prometheus' conventions (docs/metrics.md): the daemon's own
 * metrics start with `distnat_<role>_`, carry their unit (`_packets`,
 * `_bytes`, `_seconds`, `_timestamp_seconds` for a Unix time) and end in
 * `_total` when they are counters. The process metrics keep the names every
 * client library gives them (`process_cpu_seconds_total`,
 * `nodejs_heap_size_used_bytes`, ...), unprefixed, so that dashboards and
 * alerts written for any exporter apply; the scrape's job and instance
 * labels say which daemon they belong to.
 */
export function newRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

export function startMetricsServer(registry: Registry, listen: string): Promise<Server> {
  const sep = listen.lastIndexOf(':');
  const host = listen.slice(0, sep);
  const port = Number(listen.slice(sep + 1));
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('try /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(e.message),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
