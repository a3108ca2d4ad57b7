/**
 * What a host ends when the router withdraws one of its blocks (the patent:
 * the router "revokes any security certificates with bindings to these
 * DNAT ports", and peers must be told). The router has already stopped
 * forwarding ESP/AH for a withdrawn SPI block and put every certificate
 * naming the block on its CRL; the SAs built on either are dead weight that
 * peers would otherwise keep sending on until their own lifetimes ran out.
 *
 * - An IKE SA we authenticated with a certificate that names the block (it
 *   is revoked now) is deleted: one INFORMATIONAL with Delete(IKE), which
 *   takes its child SAs with it (RFC 7296 1.4.1).
 * - On any other IKE SA, the child SAs whose inbound SPI lies in the block
 *   (a withdrawn SPI block) are deleted: INFORMATIONAL with Delete(ESP).
 * - An IKE SA still being set up with the revoked certificate is abandoned
 *   without a word: the peer would refuse it, and there is nothing to delete.
 *
 * Pure: it reads the SAs and says what to do; host-ike.ts does it.
 */
import { blocksOverlap, type Block, type ResourceKind } from '../../util/block.ts';

/** An IKE SA as the plan sees it. */
export interface RevocableIkeSa<C extends RevocableChild = RevocableChild> {
  readonly state: string;
  /** The blocks named by the certificate we authenticated with (undefined: none, or not yet). */
  readonly ownBlocks: { readonly ports: readonly Block[]; readonly spis: readonly Block[] } | undefined;
  readonly children: readonly C[];
}

export interface RevocableChild {
  readonly inboundSpi: number;
  readonly state: string;
}

export interface RevocationPlan<S, C> {
  /** Established IKE SAs to delete (with their children). */
  readonly deleteIke: S[];
  /** Child SAs to delete, each with the IKE SA that carries it. */
  readonly deleteChildren: { sa: S; child: C }[];
  /** IKE SAs not yet established, resting on the revoked certificate: dropped here. */
  readonly abandon: S[];
}

const GONE = new Set(['rekeyed', 'deleting', 'dead']);
const SETTING_UP = new Set(['init-sent', 'auth-sent', 'half-open']);

/** True when the block, of `kind`, is among the blocks a certificate names. */
export function namesBlock(own: RevocableIkeSa['ownBlocks'], kind: ResourceKind, block: Block): boolean {
  if (own === undefined) return false;
  return (kind === 'port' ? own.ports : own.spis).some((b) => blocksOverlap(b, block));
}

export function planRevocation<C extends RevocableChild, S extends RevocableIkeSa<C>>(
  kind: ResourceKind,
  block: Block,
  sas: readonly S[],
): RevocationPlan<S, C> {
  const plan: RevocationPlan<S, C> = { deleteIke: [], deleteChildren: [], abandon: [] };
  for (const sa of sas) {
    if (GONE.has(sa.state)) continue;
    const revoked = namesBlock(sa.ownBlocks, kind, block);
    if (SETTING_UP.has(sa.state)) {
      if (revoked) plan.abandon.push(sa);
      continue;
    }
    if (revoked) {
      plan.deleteIke.push(sa);
      continue;
    }
    if (kind !== 'spi') continue;
    for (const child of sa.children)
      if (child.state !== 'deleting' && blocksOverlap({ lowest: child.inboundSpi, count: 1 }, block))
        plan.deleteChildren.push({ sa, child });
  }
  return plan;
}
