/**
 * INFORMATIONAL (RFC 7296 1.4, 2.4): deletes, liveness checks, error
 * notifications.
 *
 *   delete child:  SK {D(ESP, our inbound SPIs)} --> SK {D(ESP, its inbound SPIs)}
 *   delete IKE:    SK {D(IKE)}                   --> SK {}
 *   liveness:      SK {}                         --> SK {}
 *
 * Deleting the IKE SA takes its child SAs with it. A peer that never
 * answers a liveness check is dead once the retransmissions run out, and its
 * SAs go (the retransmission logic in ike-sa.ts does that).
 */
import type { ChildSa } from './child-sa.ts';
import { ExchangeType, NotifyType, PayloadType, ProtocolId } from './constants.ts';
import type { ExchangeResult } from './exchange-result.ts';
import type { IkeSa } from './ike-sa.ts';
import { findNotify, payloadsOf, type DeletePayload, type Payload } from './payloads.ts';

const spi4 = (spi: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(spi >>> 0);
  return b;
};

/** Deletes one child SA pair (ours and the peer's half). */
export async function deleteChildSa(
  sa: IkeSa,
  child: ChildSa,
  reason: 'deleted' | 'rekeyed' = 'deleted',
): Promise<void> {
  if (child.state !== 'rekeyed') child.state = 'deleting';
  try {
    await sa.request(ExchangeType.INFORMATIONAL, [
      { type: PayloadType.DELETE, protocol: ProtocolId.ESP, spiSize: 4, spis: [spi4(child.inboundSpi)] },
    ]);
  } finally {
    if (sa.children.includes(child)) sa.ctx.removeChild(sa, child, reason);
  }
}

/** Deletes the IKE SA and with it every child SA. */
export async function deleteIkeSa(sa: IkeSa): Promise<void> {
  if (sa.state === 'dead') return;
  if (sa.state === 'established') sa.state = 'deleting';
  try {
    await sa.request(ExchangeType.INFORMATIONAL, [
      { type: PayloadType.DELETE, protocol: ProtocolId.IKE, spiSize: 0, spis: [] },
    ]);
  } catch {
    // Gone either way.
  }
  sa.die('deleted');
}

/** An empty INFORMATIONAL: true when the peer answers (false: the SA is dead now). */
export async function checkLiveness(sa: IkeSa): Promise<boolean> {
  try {
    await sa.request(ExchangeType.INFORMATIONAL, []);
    return true;
  } catch {
    return false;
  }
}

/** The responder's side of INFORMATIONAL. */
export function respondInformational(sa: IkeSa, payloads: readonly Payload[]): ExchangeResult {
  const deletes = payloadsOf(payloads, PayloadType.DELETE) as DeletePayload[];
  if (deletes.some((d) => d.protocol === ProtocolId.IKE))
    return { payloads: [], after: () => sa.die('deleted by the peer') };
  if (findNotify(payloads, NotifyType.AUTHENTICATION_FAILED) && sa.establishedAt !== undefined) {
    return {
      payloads: [],
      after: () => {
        sa.ctx.emit({ type: 'auth-failed', sa, reason: 'the initiator refused our authentication' });
        sa.die('the initiator refused our authentication');
      },
    };
  }
  const ours: Buffer[] = [];
  const gone: ChildSa[] = [];
  for (const d of deletes) {
    if (d.protocol !== ProtocolId.ESP || d.spiSize !== 4) continue;
    for (const spi of d.spis) {
      const child = sa.children.find((c) => c.outboundSpi === spi.readUInt32BE(0));
      if (child === undefined) continue;
      gone.push(child);
      ours.push(spi4(child.inboundSpi));
    }
  }
  const answer: Payload[] = ours.length
    ? [{ type: PayloadType.DELETE, protocol: ProtocolId.ESP, spiSize: 4, spis: ours }]
    : [];
  return {
    payloads: answer,
    after: () => {
      for (const c of gone)
        if (sa.children.includes(c)) sa.ctx.removeChild(sa, c, c.state === 'rekeyed' ? 'rekeyed' : 'deleted');
    },
  };
}
