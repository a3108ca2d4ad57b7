/**
 * The router daemon's control socket: `distnat status` and `distnat withdraw`.
 */
import type { Server as NetServer } from 'node:net';
import { unlinkSync } from 'node:fs';
import type { DaemonStatus } from '../../control/status.ts';
import { startControlServer } from '../../control/server.ts';
import type { Logger } from '../../util/log.ts';
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
