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

/**
 * With several shared addresses the port space is addresses x ports: a port
 * lease is a block of slots, slot = address index * PORT_SPACE + port, so a
 * block never straddles two addresses (every address's pool ends below the
 * next one's slots) and the tables that index ports by number index slots
 * the same way. The first address's slots are its ports, so a router with
 * one address sees no difference.
 */
export const PORT_SPACE = 0x1_0000;

/** The slot of `port` on the address at `addressIndex`. */
export const portSlot = (addressIndex: number, port: number): number => addressIndex * PORT_SPACE + port;

/** The address index of a port slot. */
export const addressIndexOfSlot = (slot: number): number => Math.floor(slot / PORT_SPACE);

/** The port of a port slot. */
export const portOfSlot = (slot: number): number => slot % PORT_SPACE;
