/**
 * The host agent's glue for native mode (Method 130 step 136): the kernel's
 * ephemeral port range is pointed at the leased blocks, and the settings as
 * found are kept on disk so a crashed run's originals are restored next time.
 */
import { join } from 'node:path';
import type { Logger } from '../../util/log.ts';
import type { LeasedPortPool } from '../data-path/leased-ports.ts';
import { NativePortRange } from './native-ports.ts';
import type { SysctlAccess } from './sysctl.ts';

export interface NativeMode {
  /** Sets the kernel's range to the blocks held now; failures are logged, never thrown. */
  apply(): void;
  /** Puts back the settings as found. */
  restore(): void;
}

export interface NativeModeOptions {
  readonly sysctl: SysctlAccess;
  readonly stateDir: string;
  readonly lanAddress: string;
  readonly ports: LeasedPortPool;
  readonly log: Logger;
}

/** Reads (and saves) the kernel's settings as found; throws when they cannot be read or saved. */
export function beginNativeMode(o: NativeModeOptions): NativeMode {
  const native = new NativePortRange(
    o.sysctl,
    // One file per LAN address: agents of several namespaces may share a state directory.
    join(o.stateDir, `native-sysctl-${o.lanAddress}.json`),
  );
  const found = native.begin();
  o.log.info('native mode: the kernel ephemeral range will be the leased ports', {
    original: found.range.replace(/\s+/, '-'),
    ...(found.fromCrash ? { note: 'originals recovered from a previous run that did not stop cleanly' } : {}),
  });
  return {
    apply: () => {
      try {
        const set = native.apply(o.ports.blocks());
        if (set !== undefined)
          o.log.info('kernel ephemeral ports set to the leased blocks', {
            range: `${set.range[0]}-${set.range[1]}`,
            ...(set.reserved !== '' ? { reserved: set.reserved } : {}),
          });
      } catch (e) {
        o.log.error('cannot set the kernel ephemeral port range', { error: (e as Error).message });
      }
    },
    restore: () => native.restore(),
  };
}
