/**
 * The testbed's daemons as their control sockets report them, and the waits
 * built on that: a host agent that forwards, a host that holds a child SA.
 * The demo, the test helpers and the benchmarks ask the same way.
 */
import { controlRequest } from '../../../src/control/client.ts';
import { controlSocketPath } from '../../../src/control/protocol.ts';
import { waitUntil } from '../../../test/helpers/process.ts';

/** What `distnat status <role> --json` prints and the control socket answers. */
export type { DaemonStatus, StatusTable } from '../../../src/control/status.ts';
import type { DaemonStatus } from '../../../src/control/status.ts';

export type DaemonRole = 'router' | 'host' | 'peer';

/** A daemon's status from the control socket in its run directory. */
export async function readStatus(runDir: string, role: DaemonRole): Promise<DaemonStatus> {
  const reply = await controlRequest(controlSocketPath(runDir, role), { command: 'status' }, 5000);
  if (!reply.ok)
    throw new Error(`the ${role} in ${runDir} answered its control socket with an error: ${reply.error}`);
  return reply.status as DaemonStatus;
}

/** Rows of a status table by its exact title ([] if there is no such table). */
export function tableRows(status: DaemonStatus, title: string): (string | number)[][] {
  return status.tables.find((t) => t.title === title)?.rows ?? [];
}

/** Polls `read` (every 200 ms; an unreachable socket counts as not yet) until `ready`; returns the last status. */
export async function waitForStatus(
  what: string,
  read: () => Promise<DaemonStatus>,
  ready: (s: DaemonStatus) => boolean,
  timeoutMs: number,
): Promise<DaemonStatus> {
  let status: DaemonStatus | undefined;
  await waitUntil(
    what,
    async () => {
      try {
        status = await read();
      } catch {
        return false;
      }
      return ready(status);
    },
    { timeoutMs, intervalMs: 200 },
  );
  return status!;
}

/** Waits until a host agent holds a lease and forwards. */
export function waitForwarding(hostRunDir: string, timeoutMs = 30_000): Promise<DaemonStatus> {
  return waitForStatus(
    `the host agent of ${hostRunDir} to forward`,
    () => readStatus(hostRunDir, 'host'),
    (s) => s.summary['forwarding'] === 'yes',
    timeoutMs,
  );
}

/** Waits until `read` shows at least `n` child SAs. */
export function waitForChildSas(
  what: string,
  read: () => Promise<DaemonStatus>,
  n: number,
  timeoutMs = 20_000,
): Promise<DaemonStatus> {
  return waitForStatus(what, read, (s) => tableRows(s, 'Child SAs (ESP)').length >= n, timeoutMs);
}
