/**
 * The Port Allocation Protocol's facts about blocks (util/block.ts): which
 * values may be leased, the sizes a message can carry, and the defaults.
 */

import type { Block, ResourceKind } from '../util/block.ts';
import { MIN_SPI } from '../wire/esp.ts';

export interface PortBlock extends Block {
  readonly kind: 'port';
}

export interface SpiBlock extends Block {
  readonly kind: 'spi';
}

export type KindedBlock = PortBlock | SpiBlock;

/** Inclusive bounds of the values a pool may ever hand out. */
export interface ValueRange {
  readonly min: number;
  readonly max: number;
}

/** Ports below 1024 stay with the router and the hosts' own services. */
export const PORT_RANGE: ValueRange = { min: 1024, max: 65535 };
/** SPIs 1-255 are reserved by IANA (RFC 4303 section 2.1) and 0 means "no SA". */
export const SPI_RANGE: ValueRange = { min: MIN_SPI, max: 0xffffffff };

/** The patent's code 0 asks for ports below this value, code 1 for ports at or above it. */
export const PORT_PREFERENCE_SPLIT = 10000;

/** The response's count field is one byte for ports (FIG. 5) and two for SPIs (FIG. 5A). */
export const MAX_BLOCK: Readonly<Record<ResourceKind, number>> = { port: 255, spi: 0xffff };
export const DEFAULT_BLOCK: Readonly<Record<ResourceKind, number>> = { port: 32, spi: 64 };

/** Which side of PORT_PREFERENCE_SPLIT a port request prefers (the request's code 0 or 1). */
export type PortPreference = 'low' | 'high';
