/**
 * The router takes a host's blocks back (the patent: "if the router is
 * allowed to de-allocate DNAT ports, it revokes any security certificates
 * with bindings to these DNAT ports"). Each block goes through
 * PapServer.withdraw, so the lease table journals the end like any other
 * and the host is sent a PAP withdraw (code 2, R=1) where it was last heard
 * from; the local CA, a lease listener, revokes the certificates naming the
 * block with privilegeWithdrawn. The answer waits for the CRL that lists
 * them, so whoever asked can fetch it at once.
 */
import type { WithdrawKind, WithdrawOutcome } from '../../control/protocol.ts';
import type { ResourceKind } from '../../util/block.ts';
import type { Lease } from '../../pap/lease.ts';
import { crlNumberOf } from './local-ca-service.ts';
import type { LocalCaService } from './local-ca-service.ts';
import { blockFields } from './log.ts';

export interface WithdrawSources {
  readonly leases: { leasesOf(host: string): readonly Lease[] };
  readonly pap: { withdraw(kind: ResourceKind, lowest: number): boolean | Promise<boolean> };
  readonly ca?: Pick<LocalCaService, 'validSerialsOf' | 'isRevoked' | 'publishCrl'>;
  /** The shared addresses, first first: with several the reply names each port block's. */
  readonly addresses?: readonly string[];
}

export async function withdrawHost(
  s: WithdrawSources,
  host: string,
  kind: WithdrawKind,
): Promise<WithdrawOutcome> {
  const before = s.ca?.validSerialsOf(host) ?? [];
  const blocks = s.leases
    .leasesOf(host)
    .filter((l) => kind === 'all' || l.kind === kind)
    .map(({ kind, lowest, count }) => ({ kind, lowest, count }));
  const done: ReturnType<typeof blockFields>[] = [];
  // One at a time: with leases on etcd each is a transaction of its own.
  for (const b of blocks) if (await s.pap.withdraw(b.kind, b.lowest)) done.push(blockFields(b, s.addresses));
  if (s.ca === undefined) return { host, blocks: done, revoked: [] };
  const crl = await s.ca.publishCrl();
  return {
    host,
    blocks: done,
    revoked: before.filter((serial) => s.ca!.isRevoked(serial)),
    crlNumber: crlNumberOf(crl),
  };
}
