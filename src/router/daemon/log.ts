/**
 * The router daemon's logging helpers: PAP handlers that log instead of
 * throwing, one line per lease event, and a periodic drop summary.
 */
import type { Lease, LeaseEndReason, LeaseListener, LeaseOrigin } from '../../pap/lease.ts';
import type { PapTransport } from '../../pap/transport.ts';
import { addressIndexOfSlot, portOfSlot, type ResourceKind } from '../../util/block.ts';
import type { Logger } from '../../util/log.ts';
import type { DropReason } from '../data-path/counters.ts';
import { DROP_REASONS } from '../data-path/counters.ts';

/** A PAP transport whose handlers cannot take the process down: a failed request is logged. */
export function guarded(t: PapTransport, log: Logger, name: string): PapTransport {
  return {
    send: (bytes, peer) => t.send(bytes, peer),
    onMessage: (handler) =>
      t.onMessage((bytes, peer) => {
        try {
          handler(bytes, peer);
        } catch (e) {
          log.error('PAP request failed', {
            transport: name,
            peer: peer.address,
            error: (e as Error).message,
          });
        }
      }),
  };
}

/**
 * A block as log lines and replies name it: with several shared addresses a
 * port block's lowest is a slot (util/block.ts), so it is shown as the
 * address and the port on it; with one address, as it always was.
 */
export function blockFields(
  b: { readonly kind: ResourceKind; readonly lowest: number; readonly count: number },
  addresses?: readonly string[],
): { kind: ResourceKind; address?: string; lowest: number; count: number } {
  if (b.kind !== 'port' || addresses === undefined || addresses.length < 2)
    return { kind: b.kind, lowest: b.lowest, count: b.count };
  return {
    kind: b.kind,
    address: addresses[addressIndexOfSlot(b.lowest)] ?? '?',
    lowest: portOfSlot(b.lowest),
    count: b.count,
  };
}

/** One log line per lease event; `addresses`, the shared addresses, name each port block's. */
export function leaseLogger(log: Logger, addresses?: readonly string[]): LeaseListener {
  const fields = (l: Lease) => ({
    host: l.host,
    ...blockFields(l, addresses),
    expires: new Date(l.expiresAt).toISOString(),
  });
  return {
    onLeaseAdded: (l, origin?: LeaseOrigin) =>
      log.info(origin === 'reclaimed' ? 'lease reclaimed' : 'lease granted', fields(l)),
    onLeaseRemoved: (l, reason: LeaseEndReason) => log.info('lease ended', { ...fields(l), reason }),
    onLeaseRenewed: (l) => log.debug('lease renewed', fields(l)),
  };
}

/**
 * One log line with the drops of the last window, by reason (both data
 * paths' counts, by the slow path's names); nothing when there were none.
 */
export function logDrops(
  log: Logger,
  drops: Readonly<Record<string, number>>,
  last: Float64Array,
  windowMs: number,
): void {
  const delta: Partial<Record<DropReason, number>> = {};
  let total = 0;
  DROP_REASONS.forEach((reason, i) => {
    const v = drops[reason] ?? 0;
    const d = v - last[i]!;
    last[i] = v;
    if (d > 0) {
      delta[reason] = d;
      total += d;
    }
  });
  if (total === 0) return;
  const suspicious =
    (delta['spoofed-port'] ?? 0) + (delta['not-shared-source'] ?? 0) + (delta['no-lease'] ?? 0);
  log.log(suspicious > 0 ? 'warn' : 'info', 'packets dropped', {
    windowSeconds: windowMs / 1000,
    total,
    ...delta,
  });
}
