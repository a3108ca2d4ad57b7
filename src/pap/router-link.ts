import { ipv4FromString } from '../wire/ipv4.ts';
import type { ResourceKind } from '../util/block.ts';
import type { Lease, LeaseEndReason, LeaseListener } from './lease.ts';

/**
 * The router's forwarding tables key hosts by their IPv4 address as a u32 and
 * name a block by `first`; the lease table keys hosts by address text (so it
 * is not tied to IPv4). This adapter feeds lease events into tables of that
 * shape (src/router/tables RouterTables fits it).
 */
export interface NumericLeaseBlock {
  readonly host: number;
  readonly kind: ResourceKind;
  readonly first: number;
  readonly count: number;
}

export interface NumericLeaseSink {
  onLeaseAdded(lease: NumericLeaseBlock): unknown;
  onLeaseRemoved(lease: NumericLeaseBlock): unknown;
}

/** A LeaseListener that forwards IPv4 hosts' leases to `sink`; `onSkipped` hears of hosts that are not IPv4. */
export function numericLeaseListener(
  sink: NumericLeaseSink,
  onSkipped?: (lease: Lease) => void,
): LeaseListener {
  const convert = (lease: Lease): NumericLeaseBlock | undefined => {
    const host = ipv4FromString(lease.host);
    if (host === undefined) {
      onSkipped?.(lease);
      return undefined;
    }
    return { host, kind: lease.kind, first: lease.lowest, count: lease.count };
  };
  return {
    onLeaseAdded(lease: Lease): void {
      const b = convert(lease);
      if (b !== undefined) sink.onLeaseAdded(b);
    },
    onLeaseRemoved(lease: Lease, _reason: LeaseEndReason): void {
      const b = convert(lease);
      if (b !== undefined) sink.onLeaseRemoved(b);
    },
  };
}
