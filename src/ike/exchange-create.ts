/**
 * CREATE_CHILD_SA (RFC 7296 1.3): a new child SA, a child SA rekey, or an
 * IKE SA rekey.
 *
 *   new child:   SK {[N(USE_TRANSPORT_MODE)], SA, Ni, [KEi], TSi, TSr}
 *   rekey child: SK {N(REKEY_SA), [N(USE_TRANSPORT_MODE)], SA, Ni, [KEi], TSi, TSr}
 *                  --> SK {SA, Nr, [KEr], TSi, TSr}
 *                then the initiator deletes the old pair (INFORMATIONAL, D)
 *   rekey IKE:   SK {SA(new SPIi), Ni, KEi} --> SK {SA(new SPIr), Nr, KEr}
 *                SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr), message
 *                IDs restart at 0, the child SAs move to the new IKE SA, and
 *                the initiator deletes the old IKE SA.
 *
 * Simultaneous child SA rekeys (2.8.1): when the peer asks to rekey a
 * child SA we are rekeying ourselves, we answer as usual, so that both
 * exchanges make a new SA. Of the two, the one made with the lowest of the
 * four nonces (compared octet by octet) is redundant and is deleted by the
 * end that started its exchange; the end that started the other deletes
 * the old SA. Both ends reach the same verdict from the same nonces and one
 * pair is left. An IKE SA rekey that meets a rekey of ours is still
 * answered with TEMPORARY_FAILURE.
 */
import { randomBytes } from 'node:crypto';
import { SUPPORTED_DH_GROUPS } from './algorithms.ts';
import type { ChildSa } from './child-sa.ts';
import type { ChildRequest } from './config.ts';
import { ExchangeType, NotifyType, PayloadType, ProtocolId, nameOf } from './constants.ts';
import { createDh, type DhExchange } from './dh.ts';
import { completeChild, NONCE_LENGTH, prepareChild, respondChild } from './exchange-child.ts';
import { deleteChildSa } from './exchange-info.ts';
import { installIkeKeys } from './exchange-init.ts';
import type { ExchangeResult } from './exchange-result.ts';
import { IkeError, IkeSa } from './ike-sa.ts';
import { rekeySkeyseed, spiBytes } from './keys.ts';
import { errorNotifies } from './nat.ts';
import { findNotify, firstPayload, notify, type Payload } from './payloads.ts';
import { acceptChosen, chosenProposal, ikeSuiteOf, offerProposals, selectProposal } from './proposal.ts';

const refuse = (type: number, data?: Buffer): ExchangeResult => ({ payloads: [notify(type, data)] });

function requireEstablished(sa: IkeSa): void {
  if (sa.state !== 'established') throw new IkeError('state', `IKE SA ${sa.name} is ${sa.state}`);
}

/** Asks for another child SA pair on an established IKE SA. */
export async function createChildSa(sa: IkeSa, req: ChildRequest = {}, replaces?: ChildSa): Promise<ChildSa> {
  requireEstablished(sa);
  let request = req;
  for (let attempt = 0; ; attempt++) {
    const prepared = prepareChild(sa, request, { createChild: true, replaces });
    if (prepared === undefined) throw new IkeError('no-spi', 'no inbound SPI left');
    const answer = await sa.request(ExchangeType.CREATE_CHILD_SA, prepared.payloads);
    const invalidKe = findNotify(answer, NotifyType.INVALID_KE_PAYLOAD);
    if (invalidKe && attempt === 0 && invalidKe.data.length === 2) {
      // The peer wants another PFS group: offer our proposals with that group first.
      sa.ctx.config.spis.releaseSpi(prepared.pending.inboundSpi);
      const group = invalidKe.data.readUInt16BE(0);
      const proposals = prepared.pending.request.proposals.filter((p) => p.dhGroups.includes(group));
      if (proposals.length === 0 || !SUPPORTED_DH_GROUPS.includes(group))
        throw new IkeError('no-proposal', `peer wants PFS group ${group}`);
      request = {
        ...request,
        proposals: proposals.map((p) => ({
          ...p,
          dhGroups: [group, ...p.dhGroups.filter((g) => g !== group)],
        })),
      };
      continue;
    }
    const nr = firstPayload(answer, PayloadType.NONCE);
    let result: ChildSa | string;
    if (nr === undefined && errorNotifies(answer).length === 0) {
      sa.ctx.config.spis.releaseSpi(prepared.pending.inboundSpi);
      result = 'answer without nonce';
    } else {
      // An error answer has no nonce; completeChild reports the error.
      const nonce = nr?.data ?? Buffer.alloc(0);
      result = await completeChild(sa, prepared.pending, answer, prepared.pending.nonce!, nonce);
    }
    if (typeof result === 'string') {
      sa.ctx.emit({ type: 'child-failed', sa, reason: result });
      throw new IkeError('child-failed', result);
    }
    sa.ctx.emit({ type: 'child-up', sa, child: result });
    return result;
  }
}

/** Replaces a child SA by a fresh one with new keys, then deletes the old one. */
export async function rekeyChildSa(sa: IkeSa, child: ChildSa): Promise<ChildSa> {
  requireEstablished(sa);
  if (child.state !== 'installed') throw new IkeError('state', `${child.name} is ${child.state}`);
  child.state = 'rekeying';
  child.collision = undefined;
  let fresh: ChildSa;
  try {
    fresh = await createChildSa(sa, child.request, child);
  } catch (e) {
    const theirs = await child.collision;
    if (theirs !== undefined && sa.children.includes(theirs)) {
      // Ours failed but the peer's rekey went through: that one replaces the old SA, which the peer deletes.
      sa.ctx.count('rekey-collision-peer-only');
      child.state = 'rekeyed';
      return theirs;
    }
    if (child.state === 'rekeying') child.state = 'installed';
    throw e;
  }
  // The peer's rekey of the same SA may still be in the making: its verdict needs that SA's nonces.
  const theirs = await child.collision;
  child.state = 'rekeyed';
  if (theirs !== undefined && sa.children.includes(theirs)) {
    if (redundant(fresh, theirs)) {
      // Ours was made with the lowest nonce: we made it, we delete it; the peer deletes the old SA.
      sa.ctx.count('rekey-collision-lost');
      sa.ctx.log(
        'info',
        `${sa.name}: simultaneous rekey of ${child.name}, ours is redundant: deleting ${fresh.name}`,
      );
      fresh.state = 'rekeyed';
      await deleteChildSa(sa, fresh, 'deleted');
      awaitPeerDelete(sa, child);
      return theirs;
    }
    sa.ctx.count('rekey-collision-won');
    sa.ctx.log('info', `${sa.name}: simultaneous rekey of ${child.name}, ours survives`);
  }
  await deleteChildSa(sa, child, 'rekeyed');
  return fresh;
}

/**
 * RFC 7296 2.8.1: of two SAs made by simultaneous rekeys, the one whose
 * exchange holds the lowest of the four nonces is redundant. Buffer.compare
 * is the octet-by-octet order the RFC asks for (a nonce that is a prefix of
 * the other is lower).
 */
function redundant(ours: ChildSa, theirs: ChildSa): boolean {
  const lowest = (n: readonly Buffer[]): Buffer => (Buffer.compare(n[0]!, n[1]!) <= 0 ? n[0]! : n[1]!);
  const a = lowest(ours.rekeyNonces ?? []);
  const b = lowest(theirs.rekeyNonces ?? []);
  return Buffer.compare(a, b) < 0;
}

/**
 * After losing a rekey collision the old SA is the peer's to delete. A
 * peer that did not see the collision will not, so after a while we do.
 */
function awaitPeerDelete(sa: IkeSa, old: ChildSa): void {
  const r = sa.ctx.config.retransmit;
  sa.schedule(
    () => {
      if (sa.state === 'established' && sa.children.includes(old)) {
        sa.ctx.count('rekey-collision-old-deleted-late');
        deleteChildSa(sa, old, 'rekeyed').catch(() => undefined);
      }
    },
    r.timeoutMs * r.base ** 2,
  );
}

/** Rekeys the IKE SA; resolves with its successor once the old one is deleted. */
export async function rekeyIkeSa(sa: IkeSa): Promise<IkeSa> {
  requireEstablished(sa);
  if (sa.ikeRekeyInFlight) throw new IkeError('state', `IKE SA ${sa.name} is being rekeyed`);
  sa.ikeRekeyInFlight = true;
  try {
    return await rekeyIke(sa);
  } finally {
    sa.ikeRekeyInFlight = false;
  }
}

async function rekeyIke(sa: IkeSa): Promise<IkeSa> {
  const ctx = sa.ctx;
  let group = sa.suite!.dhGroup;
  for (let attempt = 0; ; attempt++) {
    const dh = createDh(group)!;
    const spiI = ctx.newSpi();
    const ni = randomBytes(NONCE_LENGTH);
    const offered = offerProposals(ctx.config.ikeProposals, ProtocolId.IKE, spiBytes(spiI), true, group);
    const answer = await sa.request(ExchangeType.CREATE_CHILD_SA, [
      { type: PayloadType.SA, proposals: offered },
      { type: PayloadType.NONCE, data: ni },
      { type: PayloadType.KE, group, data: dh.publicValue },
    ]);
    const invalidKe = findNotify(answer, NotifyType.INVALID_KE_PAYLOAD);
    if (invalidKe && attempt === 0 && invalidKe.data.length === 2) {
      group = invalidKe.data.readUInt16BE(0);
      if (
        !ctx.config.ikeProposals.some((p) => p.dhGroups.includes(group)) ||
        !SUPPORTED_DH_GROUPS.includes(group)
      )
        throw new IkeError('no-proposal', `peer wants DH group ${group} for the IKE rekey`);
      continue;
    }
    const error = errorNotifies(answer)[0];
    if (error)
      throw new IkeError('refused', `IKE rekey refused: ${nameOf(NotifyType, error.notifyType, 'notify')}`);
    const saPayload = firstPayload(answer, PayloadType.SA);
    const ke = firstPayload(answer, PayloadType.KE);
    const nr = firstPayload(answer, PayloadType.NONCE);
    const chosen = saPayload && acceptChosen(saPayload.proposals, offered, ProtocolId.IKE);
    if (!chosen || !ke || !nr || chosen.spi.length !== 8 || ke.group !== chosen.dh || chosen.dh !== group)
      throw new IkeError('malformed', 'IKE rekey answer is not usable');
    const secret = dh.computeSecret(ke.data);
    if (!secret) throw new IkeError('bad-ke', 'invalid KE in the IKE rekey answer');
    const successor = successorOf(
      sa,
      'initiator',
      spiI,
      chosen.spi.readBigUInt64BE(0),
      ni,
      nr.data,
      chosen,
      secret,
    );
    ctx.register(successor);
    successor.markEstablished(sa);
    sa.state = 'rekeyed';
    sa.successor = successor;
    ctx.emit({ type: 'ike-rekeyed', old: sa, sa: successor });
    try {
      await sa.request(ExchangeType.INFORMATIONAL, [
        { type: PayloadType.DELETE, protocol: ProtocolId.IKE, spiSize: 0, spis: [] },
      ]);
    } catch {
      // The old SA is done with either way.
    }
    sa.die('rekeyed');
    return successor;
  }
}

/** The new IKE SA made by a rekey, with the old one's children and peer. */
function successorOf(
  old: IkeSa,
  role: 'initiator' | 'responder',
  spiI: bigint,
  spiR: bigint,
  ni: Buffer,
  nr: Buffer,
  chosen: NonNullable<ReturnType<typeof acceptChosen>>,
  secret: Buffer,
): IkeSa {
  const s = new IkeSa(old.ctx, role, spiI, spiR, old.remote, 'established');
  s.natt = old.natt;
  // RFC 7383 2.3: a rekeyed IKE SA keeps what was negotiated about fragmentation.
  s.fragmentation = old.fragmentation;
  s.ni = Buffer.from(ni);
  s.nr = Buffer.from(nr);
  s.peer = old.peer;
  // A rekeyed SA rests on the authentication of the one it replaces.
  s.ownCertificate = old.ownCertificate;
  s.peerHashes = old.peerHashes;
  s.nat = old.nat;
  const suite = ikeSuiteOf(chosen);
  installIkeKeys(s, suite, rekeySkeyseed(old.suite!.prf, old.keys!.skD, secret, ni, nr));
  s.setMessageIds(0, 0);
  s.children.push(...old.children.splice(0));
  return s;
}

/** The responder's side of CREATE_CHILD_SA. */
export async function respondCreateChild(sa: IkeSa, payloads: readonly Payload[]): Promise<ExchangeResult> {
  if (sa.state !== 'established') return refuse(NotifyType.TEMPORARY_FAILURE);
  const saPayload = firstPayload(payloads, PayloadType.SA);
  const ni = firstPayload(payloads, PayloadType.NONCE);
  if (!saPayload || !ni) return refuse(NotifyType.INVALID_SYNTAX);
  if (saPayload.proposals.some((p) => p.protocol === ProtocolId.IKE))
    return sa.ikeRekeyInFlight ? refuse(NotifyType.TEMPORARY_FAILURE) : respondIkeRekey(sa, payloads);
  const rekey = findNotify(payloads, NotifyType.REKEY_SA);
  let replaces: ChildSa | undefined;
  if (rekey) {
    const spi = rekey.spi.length === 4 ? rekey.spi.readUInt32BE(0) : -1;
    replaces = sa.children.find((c) => c.outboundSpi === spi);
    if (!replaces || replaces.state === 'rekeyed' || replaces.state === 'deleting')
      return refuse(NotifyType.CHILD_SA_NOT_FOUND);
  }
  const nr = randomBytes(NONCE_LENGTH);
  const pending = respondChild(sa, payloads, { ni: Buffer.from(ni.data), nr }, replaces);
  const collision = replaces?.state === 'rekeying';
  if (collision) {
    // Both ends rekey it at once: rekeyChildSa decides which new SA stays once ours completes.
    sa.ctx.count('rekey-collision');
    replaces!.collision = pending.then((a) => a.child);
  }
  const answer = await pending;
  return {
    payloads: answer.payloads,
    after: () => {
      if (answer.child) {
        if (replaces && !collision) {
          // The initiator of the rekey deletes the old pair; until then both stay.
          replaces.state = 'rekeyed';
        }
        sa.ctx.emit({ type: 'child-up', sa, child: answer.child });
      } else if (answer.failure) sa.ctx.emit({ type: 'child-failed', sa, reason: answer.failure });
    },
  };
}

function respondIkeRekey(sa: IkeSa, payloads: readonly Payload[]): ExchangeResult {
  const ctx = sa.ctx;
  const saPayload = firstPayload(payloads, PayloadType.SA)!;
  const ni = firstPayload(payloads, PayloadType.NONCE)!;
  const ke = firstPayload(payloads, PayloadType.KE);
  const chosen = selectProposal(saPayload.proposals, ctx.config.ikeProposals, ProtocolId.IKE, true);
  if (!chosen) return refuse(NotifyType.NO_PROPOSAL_CHOSEN);
  if (chosen.spi.length !== 8 || chosen.spi.readBigUInt64BE(0) === 0n)
    return refuse(NotifyType.INVALID_SYNTAX);
  if (!ke || ke.group !== chosen.dh) {
    const g = Buffer.alloc(2);
    g.writeUInt16BE(chosen.dh);
    return refuse(NotifyType.INVALID_KE_PAYLOAD, g);
  }
  const dh: DhExchange = createDh(chosen.dh)!;
  const secret = dh.computeSecret(ke.data);
  if (!secret) return refuse(NotifyType.NO_PROPOSAL_CHOSEN);
  const spiR = ctx.newSpi();
  const nr = randomBytes(NONCE_LENGTH);
  const successor = successorOf(
    sa,
    'responder',
    chosen.spi.readBigUInt64BE(0),
    spiR,
    ni.data,
    nr,
    chosen,
    secret,
  );
  return {
    payloads: [
      { type: PayloadType.SA, proposals: [chosenProposal(chosen, ProtocolId.IKE, spiBytes(spiR), true)] },
      { type: PayloadType.NONCE, data: nr },
      { type: PayloadType.KE, group: dh.group, data: dh.publicValue },
    ],
    after: () => {
      ctx.register(successor);
      successor.markEstablished(sa);
      sa.state = 'rekeyed';
      sa.successor = successor;
      ctx.emit({ type: 'ike-rekeyed', old: sa, sa: successor });
    },
  };
}
