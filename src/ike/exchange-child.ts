/**
 * Negotiating an ESP child SA pair, the part IKE_AUTH and CREATE_CHILD_SA
 * share (RFC 7296 1.3.1, 2.9, 2.17, 3.3):
 *
 *   request:   [N(REKEY_SA)], [N(USE_TRANSPORT_MODE)], SA, [Ni, [KEi]], TSi, TSr
 *   response:  [N(USE_TRANSPORT_MODE)], SA, [Nr, [KEr]], TSi, TSr
 *              or an error notification (NO_PROPOSAL_CHOSEN, TS_UNACCEPTABLE,
 *              INVALID_KE_PAYLOAD, NO_ADDITIONAL_SAS)
 *
 * Nonces and KE appear only in CREATE_CHILD_SA; in IKE_AUTH the child SA's
 * keys come from the IKE_SA_INIT nonces and DH transforms are left out.
 * TSi always describes the exchange initiator's traffic, TSr the responder's.
 */
import { randomBytes } from 'node:crypto';
import { ChildSa } from './child-sa.ts';
import type { ChildLifetime, ChildRequest } from './config.ts';
import type { SaLifetime } from '../ipsec/sa.ts';
import { proposals as parseProposals } from './config.ts';
import { NotifyType, PayloadType, ProtocolId } from './constants.ts';
import { createDh, type DhExchange } from './dh.ts';
import type { IkeSa } from './ike-sa.ts';
import { deriveChildKeys, type ChildKeys } from './keys.ts';
import { errorNotifies } from './nat.ts';
import { findNotify, firstPayload, notify, type Payload } from './payloads.ts';
import type { NegotiatedChildSa } from './policy.ts';
import {
  acceptChosen,
  chosenProposal,
  offerProposals,
  selectProposal,
  type Chosen,
  type ProposalConfig,
} from './proposal.ts';
import { hostSelector, ipv4Only, isNarrowing, type Ipv4Selector } from './selectors.ts';
import type { Proposal } from './sa-payload.ts';
import { nameOf } from './constants.ts';

export const NONCE_LENGTH = 32;

/** An initiator's child SA request waiting for its answer. */
export interface PendingChild {
  readonly request: Required<Omit<ChildRequest, 'proposals'>> & {
    readonly proposals: readonly ProposalConfig[];
  };
  readonly inboundSpi: number;
  readonly offered: Proposal[];
  readonly dh: DhExchange | undefined;
  readonly nonce: Buffer | undefined;
  readonly replaces: ChildSa | undefined;
}

const spi4 = (spi: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(spi >>> 0);
  return b;
};

/** Fills in a child request's defaults for this IKE SA. */
export function resolveChildRequest(sa: IkeSa, req: ChildRequest): PendingChild['request'] {
  return {
    mode: req.mode ?? 'tunnel',
    localSelectors: req.localSelectors ?? [hostSelector(sa.ctx.transport.local.address)],
    remoteSelectors: req.remoteSelectors ?? [hostSelector(sa.remote.address)],
    proposals: req.proposals ? parseProposals(req.proposals, 'esp') : sa.ctx.config.espProposals,
  };
}

/**
 * Payloads asking for a child SA, or undefined when no inbound SPI is
 * left. `createChild` adds Ni (and KEi with PFS) for CREATE_CHILD_SA.
 */
export function prepareChild(
  sa: IkeSa,
  req: ChildRequest,
  options: { readonly createChild: boolean; readonly replaces?: ChildSa },
): { pending: PendingChild; payloads: Payload[] } | undefined {
  const request = resolveChildRequest(sa, req);
  const inboundSpi = sa.ctx.config.spis.allocateSpi();
  if (inboundSpi === undefined) return undefined;
  const pfsGroup = options.createChild
    ? request.proposals.find((p) => p.dhGroups.length > 0)?.dhGroups[0]
    : undefined;
  const dh = pfsGroup === undefined ? undefined : createDh(pfsGroup);
  const offered = offerProposals(
    request.proposals,
    ProtocolId.ESP,
    spi4(inboundSpi),
    options.createChild,
    pfsGroup,
  );
  const nonce = options.createChild ? randomBytes(NONCE_LENGTH) : undefined;
  const payloads: Payload[] = [];
  if (options.replaces)
    payloads.push(notify(NotifyType.REKEY_SA, undefined, ProtocolId.ESP, spi4(options.replaces.inboundSpi)));
  if (request.mode === 'transport') payloads.push(notify(NotifyType.USE_TRANSPORT_MODE));
  payloads.push({ type: PayloadType.SA, proposals: offered });
  if (nonce) payloads.push({ type: PayloadType.NONCE, data: nonce });
  if (dh) payloads.push({ type: PayloadType.KE, group: dh.group, data: dh.publicValue });
  payloads.push({ type: PayloadType.TSi, selectors: request.localSelectors });
  payloads.push({ type: PayloadType.TSr, selectors: request.remoteSelectors });
  return { pending: { request, inboundSpi, offered, dh, nonce, replaces: options.replaces }, payloads };
}

function negotiated(
  sa: IkeSa,
  chosen: Chosen,
  inbound: { spi: number; keys: ChildKeys },
  outbound: { spi: number; keys: ChildKeys },
  localSelectors: readonly Ipv4Selector[],
  remoteSelectors: readonly Ipv4Selector[],
  mode: 'tunnel' | 'transport',
  replaces: ChildSa | undefined,
  role: 'initiator' | 'responder',
): NegotiatedChildSa {
  const t = sa.ctx.transport;
  return {
    id: sa.ctx.nextChildId(),
    protocol: 'esp',
    mode,
    encryption: chosen.encr.ipsecName,
    encryptionKeyBits: chosen.encr.keyBits,
    integrity: chosen.integ?.ipsecName,
    esn: chosen.esn === 1,
    inbound: {
      spi: inbound.spi,
      encryptionKey: inbound.keys.encryption,
      integrityKey: inbound.keys.integrity,
    },
    outbound: {
      spi: outbound.spi,
      encryptionKey: outbound.keys.encryption,
      integrityKey: outbound.keys.integrity,
    },
    localSelectors,
    remoteSelectors,
    local: t.local,
    remote: sa.remote,
    encap: sa.natt ? { localPort: t.nattPort, remotePort: sa.remote.port } : undefined,
    replaces: replaces?.id,
    role,
    lifetime: dataLimits(sa.ctx.config.childLifetime),
  };
}

function dataLimits(l: ChildLifetime): SaLifetime | undefined {
  if (Object.values(l).every((v) => v === undefined)) return undefined;
  return {
    softBytes: l.rekeyBytes,
    hardBytes: l.lifeBytes,
    softPackets: l.rekeyPackets,
    hardPackets: l.lifePackets,
  };
}

/** Hands a negotiated pair to the SA database; false when it refused. */
async function install(sa: IkeSa, n: NegotiatedChildSa): Promise<boolean> {
  try {
    await sa.ctx.config.sad?.install(n);
    return true;
  } catch (e) {
    sa.ctx.log('warn', `${sa.name}: SA database refused child ${n.id}: ${(e as Error).message}`);
    return false;
  }
}

/**
 * The initiator's side: checks the responder's answer and installs the
 * pair. Returns the child SA, or why there is none (the SPI is released).
 * `ni`/`nr` are the nonces the keys come from.
 */
export async function completeChild(
  sa: IkeSa,
  pending: PendingChild,
  payloads: readonly Payload[],
  ni: Buffer,
  nr: Buffer,
): Promise<ChildSa | string> {
  const release = (why: string): string => {
    sa.ctx.config.spis.releaseSpi(pending.inboundSpi);
    return why;
  };
  const error = errorNotifies(payloads)[0];
  if (error !== undefined) return release(nameOf(NotifyType, error.notifyType, 'notify'));
  const saPayload = firstPayload(payloads, PayloadType.SA);
  const tsi = firstPayload(payloads, PayloadType.TSi);
  const tsr = firstPayload(payloads, PayloadType.TSr);
  if (!saPayload || !tsi || !tsr) return release('answer without SA, TSi and TSr');
  const chosen = acceptChosen(saPayload.proposals, pending.offered, ProtocolId.ESP);
  if (chosen === undefined || chosen.spi.length !== 4) return release('answer is not one of our proposals');
  const outboundSpi = chosen.spi.readUInt32BE(0);
  if (outboundSpi < 256) return release(`peer chose reserved SPI ${outboundSpi}`);
  const local = ipv4Only(tsi.selectors);
  const remote = ipv4Only(tsr.selectors);
  if (
    !isNarrowing(local, pending.request.localSelectors) ||
    !isNarrowing(remote, pending.request.remoteSelectors)
  )
    return release('answered selectors are not a subset of ours');
  let secret: Buffer | undefined;
  if (chosen.dh !== 0) {
    const ke = firstPayload(payloads, PayloadType.KE);
    if (!pending.dh || !ke || ke.group !== chosen.dh || pending.dh.group !== chosen.dh)
      return release('answer chose another PFS group than the one we sent');
    secret = pending.dh.computeSecret(ke.data);
    if (!secret) return release('invalid KE from the peer');
  }
  const mode = findNotify(payloads, NotifyType.USE_TRANSPORT_MODE) ? 'transport' : 'tunnel';
  const keys = deriveChildKeys(sa.suite!.prf, sa.keys!.skD, chosen.encr, chosen.integ, ni, nr, secret);
  const n = negotiated(
    sa,
    chosen,
    { spi: pending.inboundSpi, keys: keys.responderToInitiator },
    { spi: outboundSpi, keys: keys.initiatorToResponder },
    local,
    remote,
    mode,
    pending.replaces,
    'initiator',
  );
  if (!(await install(sa, n))) return release('SA database refused the child SA');
  const child = new ChildSa(
    n,
    { ...pending.request, localSelectors: local, remoteSelectors: remote },
    sa.ctx.clock.now(),
    true,
  );
  if (pending.replaces) child.rekeyNonces = [ni, nr];
  sa.children.push(child);
  return child;
}

export interface ChildAnswer {
  readonly payloads: Payload[];
  readonly child: ChildSa | undefined;
  readonly failure: string | undefined;
}

const refuse = (notifyType: number, data?: Buffer): ChildAnswer => ({
  payloads: [notify(notifyType, data)],
  child: undefined,
  failure: nameOf(NotifyType, notifyType, 'notify'),
});

/**
 * The responder's side: picks a proposal, narrows the selectors through the
 * child policy, allocates our SPI, installs, and returns the answer.
 * `nonces` are the exchange's (initiator's, ours) or undefined in IKE_AUTH,
 * where the IKE_SA_INIT nonces are used and no KE is expected.
 */
export async function respondChild(
  sa: IkeSa,
  payloads: readonly Payload[],
  nonces: { readonly ni: Buffer; readonly nr: Buffer } | undefined,
  replaces: ChildSa | undefined,
): Promise<ChildAnswer> {
  const cfg = sa.ctx.config;
  const saPayload = firstPayload(payloads, PayloadType.SA);
  const tsi = firstPayload(payloads, PayloadType.TSi);
  const tsr = firstPayload(payloads, PayloadType.TSr);
  if (!saPayload || !tsi || !tsr) return refuse(NotifyType.INVALID_SYNTAX);
  const createChild = nonces !== undefined;
  const chosen = selectProposal(saPayload.proposals, cfg.espProposals, ProtocolId.ESP, createChild);
  if (chosen === undefined || chosen.spi.length !== 4 || chosen.spi.readUInt32BE(0) < 256)
    return refuse(NotifyType.NO_PROPOSAL_CHOSEN);
  const decision = cfg.childPolicy({
    remote: sa.remote,
    local: sa.ctx.transport.local,
    binding: sa.peer?.binding,
    peerSelectors: ipv4Only(tsi.selectors),
    ourSelectors: ipv4Only(tsr.selectors),
    transportRequested: findNotify(payloads, NotifyType.USE_TRANSPORT_MODE) !== undefined,
  });
  if (!decision.ok) return refuse(NotifyType.TS_UNACCEPTABLE);
  let secret: Buffer | undefined;
  let dh: DhExchange | undefined;
  if (createChild && chosen.dh !== 0) {
    const ke = firstPayload(payloads, PayloadType.KE);
    if (!ke || ke.group !== chosen.dh) {
      const g = Buffer.alloc(2);
      g.writeUInt16BE(chosen.dh);
      return refuse(NotifyType.INVALID_KE_PAYLOAD, g);
    }
    dh = createDh(chosen.dh);
    secret = dh?.computeSecret(ke.data);
    if (!dh || !secret) return refuse(NotifyType.NO_PROPOSAL_CHOSEN);
  }
  const inboundSpi = cfg.spis.allocateSpi();
  if (inboundSpi === undefined) return refuse(NotifyType.NO_ADDITIONAL_SAS);
  const ni = nonces?.ni ?? sa.ni;
  const nr = nonces?.nr ?? sa.nr;
  const keys = deriveChildKeys(sa.suite!.prf, sa.keys!.skD, chosen.encr, chosen.integ, ni, nr, secret);
  const n = negotiated(
    sa,
    chosen,
    { spi: inboundSpi, keys: keys.initiatorToResponder },
    { spi: chosen.spi.readUInt32BE(0), keys: keys.responderToInitiator },
    decision.ourSelectors,
    decision.peerSelectors,
    decision.mode,
    replaces,
    'responder',
  );
  if (!(await install(sa, n))) {
    cfg.spis.releaseSpi(inboundSpi);
    return refuse(NotifyType.NO_ADDITIONAL_SAS);
  }
  const child = new ChildSa(
    n,
    {
      mode: decision.mode,
      localSelectors: decision.ourSelectors,
      remoteSelectors: decision.peerSelectors,
    },
    sa.ctx.clock.now(),
    false,
  );
  if (replaces && nonces) child.rekeyNonces = [nonces.ni, nonces.nr];
  sa.children.push(child);
  const answer: Payload[] = [];
  if (decision.mode === 'transport') answer.push(notify(NotifyType.USE_TRANSPORT_MODE));
  answer.push({
    type: PayloadType.SA,
    proposals: [chosenProposal(chosen, ProtocolId.ESP, spi4(inboundSpi), createChild)],
  });
  if (nonces) answer.push({ type: PayloadType.NONCE, data: nonces.nr });
  if (dh) answer.push({ type: PayloadType.KE, group: dh.group, data: dh.publicValue });
  answer.push({ type: PayloadType.TSi, selectors: decision.peerSelectors });
  answer.push({ type: PayloadType.TSr, selectors: decision.ourSelectors });
  return { payloads: answer, child, failure: undefined };
}
