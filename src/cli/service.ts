/**
 * A started daemon as the service manager sees it (Type=notify units,
 * native-setup/systemd/): READY=1 with a STATUS= line once it works, the
 * watchdog's pings, SIGHUP as "read your configuration again" bracketed by
 * RELOADING=1 and READY=1, and STOPPING=1 when it begins to stop. Without a
 * service manager only the SIGHUP handling remains.
 */
import type { ServiceNotifier } from '../io/sd-notify.ts';
import { monotonicUsec, serviceNotifier } from '../io/sd-notify.ts';
import type { Logger } from '../util/log.ts';

export interface ServiceOptions {
  readonly log: Logger;
  /** One line for `systemctl status`. */
  readonly status: string;
  /** What SIGHUP re-reads; without it SIGHUP only says that nothing can be. */
  readonly reload?: () => void | Promise<void>;
  readonly notifier?: ServiceNotifier;
}

export interface Service {
  /** STOPPING=1; the watchdog stops with it. Call when a stop begins. */
  stopping(): void;
}

export function announceService(o: ServiceOptions): Service {
  const { log } = o;
  const notifier = o.notifier ?? serviceNotifier();
  let warned = false;
  const notify = (fields: Record<string, string | number>): void => {
    const err = notifier.notify(fields);
    // Once: a manager that stopped listening would otherwise fill the log.
    if (err !== undefined && !warned) {
      warned = true;
      log.warn('cannot notify the service manager', { error: err.message });
    }
  };

  let reloading: Promise<void> | undefined;
  const onHangup = (): void => {
    if (o.reload === undefined) {
      log.info('SIGHUP: nothing to read again; restart to apply changes');
      return;
    }
    // A second SIGHUP during a reload joins it rather than starting another.
    reloading ??= (async () => {
      notify({ RELOADING: 1, MONOTONIC_USEC: monotonicUsec().toString(), STATUS: 'reloading' });
      try {
        await o.reload!();
      } catch (e) {
        log.error('reload failed', { error: (e as Error).message });
      }
      notify({ READY: 1, STATUS: o.status });
    })().finally(() => {
      reloading = undefined;
    });
  };
  process.on('SIGHUP', onHangup);

  notify({ READY: 1, STATUS: o.status });
  const interval = notifier.watchdogIntervalMs;
  // From the event loop itself: a loop that stops turning stops the pings.
  const watchdog =
    interval === undefined ? undefined : setInterval(() => notify({ WATCHDOG: 1 }), interval).unref();

  return {
    stopping() {
      if (watchdog !== undefined) clearInterval(watchdog);
      notify({ STOPPING: 1, STATUS: 'stopping' });
    },
  };
}
