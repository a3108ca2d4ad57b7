import type { PapMessage } from '../wire/pap.ts';
import { SPI_RANGE } from './block.ts';

/**
 * The content rule of docs/pap.md 5.1: which host messages, well-formed on
 * the wire, the router answers as malformed (status 5) before it looks at
 * any lease. They are the ones that cannot name a block under any router
 * configuration; a message that names values this host merely does not hold
 * (outside this router's pools included, which a host cannot know) is
 * answered unknown-lease by the lease table instead.
 */
export type ContentFault =
  /** A renew naming a block of no values. */
  | 'zero-count'
  /** A renew whose block runs past the top of its value space (65535, or 2^32 - 1 for SPIs). */
  | 'past-top'
  /** An SPI below 256: 0 means "no SA" and 1-255 are reserved (RFC 4303 2.1), so no block holds one. */
  | 'reserved-spi';

const MAX_VALUE = { port: 0xffff, spi: 0xffffffff } as const;

/** The fault of a host message's content, or undefined when the lease table is to judge it. */
export function contentFault(msg: PapMessage): ContentFault | undefined {
  switch (msg.kind) {
    case 'port-renew':
      return blockFault(msg.lowestPort, msg.portCount, MAX_VALUE.port);
    case 'spi-renew':
      if (msg.lowestSpi < SPI_RANGE.min) return 'reserved-spi';
      return blockFault(msg.lowestSpi, msg.spiCount, MAX_VALUE.spi);
    case 'spi-invalidate':
      return msg.spi < SPI_RANGE.min ? 'reserved-spi' : undefined;
    default:
      // Requests: every count is meaningful (0 is the default block) and the
      // lease time is clamped. Port invalidates: any port is looked up (the
      // router presence probe of 6.8 is an invalidate of port 0).
      return undefined;
  }
}

function blockFault(lowest: number, count: number, max: number): ContentFault | undefined {
  if (count === 0) return 'zero-count';
  if (lowest + count - 1 > max) return 'past-top';
  return undefined;
}
