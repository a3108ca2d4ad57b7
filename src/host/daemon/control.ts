/**
 * The host agent's control socket (`distnat status host`): refused when a
 * live agent already answers on it, a stale file from a crash replaced.
 */
import type { Server } from 'node:net';
import { existsSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import type { DaemonStatus } from '../../control/status.ts';
import { controlSocketPath } from '../../control/protocol.ts';
import { startControlServer } from '../../control/server.ts';

/** True when something listens on the Unix socket at `path` (a live agent, not a stale file). */
function answers(path: string): Promise<boolean> {
  if (!existsSync(path)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const sock = connect(path);
    const done = (live: boolean): void => {
      sock.destroy();
      resolve(live);
    };
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
    sock.setTimeout(1000, () => done(false));
  });
}

/** Throws (code EADDRINUSE) when another agent answers on the run directory's control socket. */
export async function refuseSecondAgent(runDir: string): Promise<void> {
  if (await answers(controlSocketPath(runDir, 'host')))
    throw Object.assign(
      new Error(
        `another host agent answers on ${controlSocketPath(runDir, 'host')}: give each agent its own --run-dir`,
      ),
      { code: 'EADDRINUSE' },
    );
}

export interface AgentControl {
  readonly path: string;
  readonly server: Server;
  /** Stops serving and removes the socket file. */
  close(): void;
}

export async function serveAgentControl(runDir: string, status: () => DaemonStatus): Promise<AgentControl> {
  const path = controlSocketPath(runDir, 'host');
  const server = await startControlServer(path, status);
  return {
    path,
    server,
    close: () => {
      server.close();
      try {
        unlinkSync(path);
      } catch {
        // already gone
      }
    },
  };
}
