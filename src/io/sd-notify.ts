/**
 * The service manager's side door (sd_notify(3)): a daemon started by
 * systemd with Type=notify finds a socket in NOTIFY_SOCKET and tells it
 * "READY=1" once it works, "RELOADING=1" / "READY=1" around a reload,
 * "STOPPING=1", and, when the unit asks for it (WatchdogSec=, seen as
 * WATCHDOG_USEC), "WATCHDOG=1" at least that often. Outside systemd, or
 * under a manager that does not listen, every call does nothing.
 */
import { loadNative } from './native.ts';

export type NotifyFields = Readonly<Record<string, string | number>>;

export interface ServiceNotifier {
  /** NOTIFY_SOCKET was given: a service manager listens. */
  readonly listening: boolean;
  /** How often to send WATCHDOG=1 (a quarter of WatchdogSec), when the manager asked for it. */
  readonly watchdogIntervalMs: number | undefined;
  /** Sends the fields as KEY=VALUE lines; the error of the send, or undefined when sent or nobody listens. */
  notify(fields: NotifyFields): Error | undefined;
}

export type NotifySend = (socket: string, message: string) => void;

/** KEY=VALUE lines, one per field; a value's own newlines would start a new field, so they become spaces. */
export function notifyMessage(fields: NotifyFields): string {
  return Object.entries(fields)
    .map(([k, v]) => `${k}=${String(v).replace(/\n/g, ' ')}`)
    .join('\n');
}

/**
 * The notifier of this process, from the environment systemd gives it.
 * WATCHDOG_PID, when set, names the process the watchdog is meant for
 * (a child would otherwise ping on its parent's behalf).
 */
export function serviceNotifier(
  env: NodeJS.ProcessEnv = process.env,
  send: NotifySend = (socket, message) => loadNative().sdNotify(socket, message),
  pid: number = process.pid,
): ServiceNotifier {
  const socket = env.NOTIFY_SOCKET;
  const usec = Number(env.WATCHDOG_USEC);
  const forUs = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === pid;
  const watchdogIntervalMs =
    socket !== undefined && forUs && Number.isFinite(usec) && usec > 0
      ? Math.max(1, Math.floor(usec / 4000))
      : undefined;
  return {
    listening: socket !== undefined && socket !== '',
    watchdogIntervalMs,
    notify(fields) {
      if (socket === undefined || socket === '') return undefined;
      try {
        send(socket, notifyMessage(fields));
        return undefined;
      } catch (e) {
        return e as Error;
      }
    },
  };
}

/** CLOCK_MONOTONIC in microseconds, as RELOADING=1's MONOTONIC_USEC= wants it (libuv's hrtime is that clock). */
export function monotonicUsec(): bigint {
  return process.hrtime.bigint() / 1000n;
}
