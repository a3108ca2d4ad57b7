/**
 * The host agent's glue for `--ipsec FILE` (manual keying): how many SPIs to
 * lease, and installing the file's inbound SAs once the router has leased
 * every SPI they use (the router demultiplexes ESP by SPI, FIG. 21, so an SA
 * on an SPI outside this host's blocks would never see a packet).
 */
import { formatBlock } from '../../util/block.ts';
import type { HostLeases } from '../../pap/host-leases.ts';
import type { Logger } from '../../util/log.ts';
import { inSpiBlocks } from '../data-path/ipsec-engine-step.ts';
import type { EngineIpsecStep } from '../data-path/ipsec-engine-step.ts';

/** SPIs leased for a manual keying file when pap.spis does not say (the router's default block). */
const DEFAULT_SPI_LEASE = 64;

/** SPIs to ask for: as configured, else a default block when manual keying or IKE needs some, else none. */
export function spisToLease(configured: number, step: EngineIpsecStep | undefined, ike: boolean): number {
  return configured > 0 ? configured : (step?.spisNeeded.length ?? 0) > 0 || ike ? DEFAULT_SPI_LEASE : 0;
}

export interface ManualKeying {
  /** Installs the SAs when every inbound SPI they need is leased; once. */
  install(): void;
  /** On a new SPI block: install if now possible, else say which SPIs of the file lie outside the leases. */
  onSpiBlockAdded(): void;
}

/** `step` undefined (no file, or a caller's own step): both calls do nothing. */
export function manualKeying(
  step: EngineIpsecStep | undefined,
  file: string | undefined,
  leases: HostLeases,
  log: Logger,
): ManualKeying {
  const install = (): void => {
    if (step === undefined || step.installed) return;
    const held = leases.blocks('spi');
    if (!step.spisNeeded.every((spi) => inSpiBlocks(spi, held))) return;
    try {
      step.install((spi) => inSpiBlocks(spi, leases.blocks('spi')));
      log.info('IPsec SAs installed', { file, overhead: step.maxOverhead });
    } catch (e) {
      log.error('cannot install the IPsec SAs', { error: (e as Error).message });
    }
  };
  const onSpiBlockAdded = (): void => {
    install();
    const missing =
      step?.installed === false
        ? step.spisNeeded.filter((spi) => !inSpiBlocks(spi, leases.blocks('spi')))
        : [];
    if (missing.length > 0)
      log.error(`inbound SAs of ${file} use SPIs outside the leased blocks: they stay uninstalled`, {
        spis: missing.map((x) => `0x${x.toString(16)}`),
        held: leases.blocks('spi').map(formatBlock),
      });
  };
  return { install, onSpiBlockAdded };
}
