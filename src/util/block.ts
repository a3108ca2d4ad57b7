/**
 * Blocks of locally unique values: contiguous runs of ports (FIG. 5, FIG. 8)
 * or of IPsec SPIs (FIG. 5A, FIG. 21), named by their lowest value and how
 * many there are. The allocation protocol hands them out, the local CA
 * certifies them and IKE narrows traffic selectors to them, so the shape
 * lives here, below all three.
 */

export type ResourceKind = 'port' | 'spi';

export interface Block {
  readonly lowest: number;
  readonly count: number;
}

/** One past the highest value of the block. */
export const blockEnd = (b: Block): number => b.lowest + b.count;

export const blockContains = (b: Block, value: number): boolean =>
  value >= b.lowest && value < b.lowest + b.count;

export const blocksOverlap = (a: Block, b: Block): boolean =>
  a.lowest < b.lowest + b.count && b.lowest < a.lowest + a.count;

export const formatBlock = (b: Block): string =>
  b.count === 1 ? `${b.lowest}` : `${b.lowest}-${b.lowest + b.count - 1}`;
