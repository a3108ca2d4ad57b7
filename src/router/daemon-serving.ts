/**
 * What the router daemon serves besides forwarding: the control socket
 * (`distnat status`, `distnat withdraw`) and the Prometheus endpoint.
 */
import type { Server as HttpServer } from 'node:http';
import type { Server as NetServer } from 'node:net';
import { unlinkSync } from 'node:fs';
import type { DaemonStatus } from '../control/status.ts';
import { ExitCode, UserError } from '../util/exit-codes.ts';
import { startControlServer } from '../control/server.ts';
import { newRegistry, startMetricsServer } from '../metrics/server.ts';
import type { Logger } from '../util/log.ts';
import { registerRouterMetrics, type RouterMetricSources } from './router-metrics.ts';
import { withdrawHost, type WithdrawSources } from './withdraw.ts';

/** Serves status and withdraw on `path`; resolves with a close that also removes the socket file. */
export async function serveRouterControl(
  path: string,
  status: () => DaemonStatus,
  withdraw: WithdrawSources,
  log: Logger,
): Promise<() => Promise<void>> {
  const control: NetServer = await startControlServer(path, status, {
    withdraw: async (host, kind) => {
      const outcome = await withdrawHost(withdraw, host, kind);
      log.info('withdrawn on request', { ...outcome, blocks: outcome.blocks.length });
      return outcome;
    },
  });
  return () =>
    new Promise<void>((resolve) => {
      control.close(() => resolve());
      try {
        unlinkSync(path);
      } catch {
        // already gone
      }
    });
}

/** Serves metrics on `listen` (host:port); resolves with the address taken and a close. */
export async function serveRouterMetrics(
  sources: RouterMetricSources,
  listen: string,
): Promise<{ address: string; close: () => Promise<void> }> {
  const registry = newRegistry('distnat_router');
  registerRouterMetrics(registry, sources);
  let server: HttpServer;
  try {
    server = await startMetricsServer(registry, listen);
  } catch (e) {
    throw new UserError(`cannot serve metrics on ${listen}: ${(e as Error).message}`, ExitCode.CANTCREATE);
  }
  const a = server.address();
  return {
    address: a !== null && typeof a === 'object' ? `${a.address}:${a.port}` : listen,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
