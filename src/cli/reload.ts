/**
 * What a running router or host agent does with its configuration file on
 * SIGHUP (`systemctl reload`): reads and validates it again with the same
 * command-line overrides, applies what can change while it runs, and names
 * every other changed field, which waits for a restart.
 *
 * Only `logLevel` is applied. The rest shapes what was opened and agreed at
 * start: the addresses, the TUN device and the PAP port are in the kernel's
 * and the hosts' state; block size, lease time and SPI counts are in leases
 * already granted; the state and run directories hold the journal, the lock
 * and the control socket; metrics, capture, IPsec and IKE files each built
 * a running part. Changing any of these safely is a restart (the router
 * keeps its leases across one: its journal).
 */
import { ConfigError } from '../config/config-error.ts';
import type { Logger } from '../util/log.ts';

export interface ReloadableConfig {
  readonly logLevel: string;
}

export interface ConfigReloadOptions<C extends ReloadableConfig> {
  readonly log: Logger;
  /** The file re-read, for the log; undefined when the daemon runs on flags alone. */
  readonly file: string | undefined;
  /** The configuration the daemon runs with. */
  readonly running: C;
  /** Reads the file again and merges the flags; throws ConfigError when it is not valid. */
  readonly read: () => C;
}

/** The top-level fields whose values differ. */
export function changedFields(a: object, b: object): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  return [...keys].filter((k) => JSON.stringify(ra[k]) !== JSON.stringify(rb[k])).sort();
}

/** The reload step for announceService: each call re-reads and applies. */
export function configReloader<C extends ReloadableConfig>(o: ConfigReloadOptions<C>): () => void {
  const { log } = o;
  // Compared with what runs: a field changed in the file stays "waiting for a
  // restart" at every reload until there is one.
  let logLevel = o.running.logLevel;
  return () => {
    if (o.file === undefined) {
      log.info('SIGHUP: no configuration file to read again (started with flags only)');
      return;
    }
    let next: C;
    try {
      next = o.read();
    } catch (e) {
      const why = e instanceof ConfigError ? e.message : (e as Error).message;
      log.error('configuration not re-read: the file is not valid; running on as before', {
        file: o.file,
        error: why,
      });
      return;
    }
    if (next.logLevel !== logLevel) {
      log.level = next.logLevel;
      logLevel = next.logLevel;
    }
    const waiting = changedFields(o.running, next).filter((k) => k !== 'logLevel');
    for (const field of waiting)
      log.warn(`configuration: ${field} changed; it takes effect at the next restart`, { field });
    log.info('configuration re-read', { file: o.file, logLevel, waitingForRestart: waiting });
  };
}
