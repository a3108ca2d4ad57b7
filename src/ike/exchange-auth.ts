/**
 * IKE_AUTH with certificates (RFC 7296 1.2, 2.15, 3.5-3.8):
 *
 *   Initiator                         Responder
 *   HDR, SK {IDi, CERT+, CERTREQ, AUTH, [N(INITIAL_CONTACT)],
 *            [N(USE_TRANSPORT_MODE)], SA2i, TSi, TSr}  -->
 *                  <--  HDR, SK {IDr, CERT+, AUTH, [N(USE_TRANSPORT_MODE)], SA2r, TSi, TSr}
 *
 * Each side checks the other's certificate path to a trust anchor, that
 * the ID payload names the certificate, the AUTH signature over the signed
 * octets, and finally asks the authorization hook (which for a distnat host
 * certificate checks the port binding). Any failure: AUTHENTICATION_FAILED.
 * A child SA that fails does not fail the IKE SA (2.21.3).
 */
import { createAuth, signedOctets, verifyAuth } from './auth.ts';
import {
  certPayload,
  certReqPayload,
  describeId,
  idMatchesCertificate,
  idPayload,
  verifyPeerChain,
} from './certs.ts';
import { CertEncoding, ExchangeType, NotifyType, PayloadType } from './constants.ts';
import { completeChild, prepareChild, respondChild, type PendingChild } from './exchange-child.ts';
import type { ExchangeResult } from './exchange-result.ts';
import type { IkeSa } from './ike-sa.ts';
import { errorNotifies } from './nat.ts';
import {
  emitPayloadBody,
  findNotify,
  firstPayload,
  notify,
  payloadsOf,
  type IdPayload,
  type Payload,
} from './payloads.ts';
import { bindingOf } from './policy.ts';
import { ipv4Only } from './selectors.ts';
import { nameOf } from './constants.ts';

/** Our ID, certificates and AUTH for this SA. */
function ourAuthPayloads(sa: IkeSa, idType: typeof PayloadType.IDi | typeof PayloadType.IDr): Payload[] {
  const cfg = sa.ctx.config;
  const id = idPayload(idType, cfg.identity.id, cfg.identity.certificate);
  const initiator = idType === PayloadType.IDi;
  const octets = signedOctets(
    sa.suite!.prf,
    initiator ? sa.initRequest! : sa.initResponse!,
    initiator ? sa.nr : sa.ni,
    initiator ? sa.keys!.skPi : sa.keys!.skPr,
    emitPayloadBody(id),
  );
  const auth = createAuth(cfg.identity.privateKey, octets, sa.peerHashes, { rsaPss: cfg.rsaPss });
  sa.ownCertificate = cfg.identity.certificate;
  return [
    id,
    certPayload(cfg.identity.certificate),
    ...cfg.identity.chain.map(certPayload),
    ...(initiator ? [certReqPayload(cfg.trust.roots)] : []),
    { type: PayloadType.AUTH, method: auth.method, data: auth.data },
  ];
}

type PeerCheck =
  | {
      readonly ok: true;
      readonly id: IdPayload;
      readonly path: import('./certs.ts').ChainCheck & { ok: true };
      readonly scheme: string;
    }
  | { readonly ok: false; readonly reason: string };

/** Checks the peer's ID, certificates and AUTH. `peerIsInitiator` picks the signed octets. */
async function authenticatePeer(
  sa: IkeSa,
  payloads: readonly Payload[],
  peerIsInitiator: boolean,
): Promise<PeerCheck> {
  const id = firstPayload(payloads, peerIsInitiator ? PayloadType.IDi : PayloadType.IDr);
  const auth = firstPayload(payloads, PayloadType.AUTH);
  const certs = payloadsOf(payloads, PayloadType.CERT).filter(
    (c) => c.encoding === CertEncoding.X509_SIGNATURE,
  );
  if (!id || !auth) return { ok: false, reason: 'no ID or AUTH payload (EAP is not supported)' };
  if (certs.length === 0) return { ok: false, reason: 'no X.509 certificate sent' };
  const chain = await verifyPeerChain(
    certs.map((c) => c.data),
    sa.ctx.config.trust,
    new Date(sa.ctx.clock.now()),
  );
  if (!chain.ok) return { ok: false, reason: chain.problem };
  const leaf = chain.path[0]!;
  if (!idMatchesCertificate(id, leaf))
    return { ok: false, reason: `ID "${describeId(id)}" is not in the certificate` };
  const octets = signedOctets(
    sa.suite!.prf,
    peerIsInitiator ? sa.initRequest! : sa.initResponse!,
    peerIsInitiator ? sa.nr : sa.ni,
    peerIsInitiator ? sa.keys!.skPi : sa.keys!.skPr,
    emitPayloadBody(id),
  );
  const verified = verifyAuth(leaf.publicKey, auth.method, auth.data, octets);
  if (!verified.ok) return { ok: false, reason: verified.problem };
  return { ok: true, id, path: chain, scheme: verified.scheme };
}

/** Authentication and then the authorization hook; sets sa.peer on success. */
async function admitPeer(
  sa: IkeSa,
  payloads: readonly Payload[],
  peerIsInitiator: boolean,
): Promise<string | undefined> {
  const check = await authenticatePeer(sa, payloads, peerIsInitiator);
  if (!check.ok) return check.reason;
  const leaf = check.path.path[0]!;
  const binding = bindingOf(leaf);
  const tsPeer = firstPayload(payloads, peerIsInitiator ? PayloadType.TSi : PayloadType.TSr);
  const tsOurs = firstPayload(payloads, peerIsInitiator ? PayloadType.TSr : PayloadType.TSi);
  let verdict;
  try {
    verdict = await sa.ctx.config.authorize({
      path: check.path.path,
      id: check.id,
      remote: sa.remote,
      binding,
      peerSelectors: tsPeer ? ipv4Only(tsPeer.selectors) : [],
      ourSelectors: tsOurs ? ipv4Only(tsOurs.selectors) : [],
      trust: sa.ctx.config.trust,
    });
  } catch (e) {
    verdict = { ok: false as const, reason: `authorization hook failed: ${(e as Error).message}` };
  }
  if (!verdict.ok) return `not authorized: ${verdict.reason}`;
  sa.peer = { id: check.id, path: check.path.path, binding, scheme: check.scheme };
  return undefined;
}

/** The initiator's IKE_AUTH request, and the handling of its answer. */
export function startAuth(sa: IkeSa): void {
  const payloads = ourAuthPayloads(sa, PayloadType.IDi);
  if (sa.ctx.firstContact(sa)) payloads.push(notify(NotifyType.INITIAL_CONTACT));
  let pending: PendingChild | undefined;
  if (sa.firstChild !== null) {
    const prepared = prepareChild(sa, sa.firstChild, { createChild: false });
    if (prepared === undefined)
      sa.ctx.log('warn', `${sa.name}: no inbound SPI left, IKE SA without child SA`);
    else {
      pending = prepared.pending;
      payloads.push(...prepared.payloads);
    }
  }
  sa.request(ExchangeType.IKE_AUTH, payloads).then(
    (answer) => void completeAuth(sa, pending, answer),
    () => {
      if (pending) sa.ctx.config.spis.releaseSpi(pending.inboundSpi);
    },
  );
}

async function completeAuth(sa: IkeSa, pending: PendingChild | undefined, answer: Payload[]): Promise<void> {
  const release = (): void => {
    if (pending) sa.ctx.config.spis.releaseSpi(pending.inboundSpi);
  };
  if (findNotify(answer, NotifyType.AUTHENTICATION_FAILED)) {
    release();
    sa.ctx.emit({ type: 'auth-failed', sa, reason: 'the responder refused our authentication' });
    sa.fail('auth-failed', 'the responder refused our authentication (AUTHENTICATION_FAILED)');
    return;
  }
  if (!firstPayload(answer, PayloadType.AUTH)) {
    release();
    const e = errorNotifies(answer)[0];
    sa.fail(
      'refused',
      `IKE_AUTH refused: ${e ? nameOf(NotifyType, e.notifyType, 'notify') : 'no AUTH payload'}`,
    );
    return;
  }
  const problem = await admitPeer(sa, answer, false);
  if (sa.gone) {
    release();
    return;
  }
  if (problem !== undefined) {
    release();
    sa.ctx.log('warn', `${sa.name}: responder failed authentication: ${problem}`);
    sa.ctx.emit({ type: 'auth-failed', sa, reason: problem });
    sa.notifyOnce(ExchangeType.INFORMATIONAL, [notify(NotifyType.AUTHENTICATION_FAILED)]);
    sa.fail('auth-failed', `responder failed authentication: ${problem}`);
    return;
  }
  // The child SA is settled before the SA counts as up, so that whoever awaits
  // initiate() finds it in sa.children.
  const child = pending === undefined ? undefined : await completeChild(sa, pending, answer, sa.ni, sa.nr);
  if (sa.gone) return;
  // debug: whoever runs the daemon reports SAs up (the service does, with the peer).
  sa.ctx.log(
    'debug',
    `${sa.name}: established with "${describeId(sa.peer!.id)}" (${sa.peer!.scheme}) at ${sa.remote.address}:${sa.remote.port}`,
  );
  sa.markEstablished();
  if (typeof child === 'string') {
    sa.ctx.log('warn', `${sa.name}: no child SA: ${child}`);
    sa.ctx.emit({ type: 'child-failed', sa, reason: child });
  } else if (child !== undefined) sa.ctx.emit({ type: 'child-up', sa, child });
}

/** The responder's side of IKE_AUTH. */
export async function respondAuth(sa: IkeSa, payloads: readonly Payload[]): Promise<ExchangeResult> {
  if (sa.state !== 'half-open') return { payloads: [notify(NotifyType.INVALID_SYNTAX)] };
  const problem = await admitPeer(sa, payloads, true);
  if (problem !== undefined) {
    sa.ctx.log('warn', `${sa.name}: initiator failed authentication: ${problem}`);
    sa.ctx.emit({ type: 'auth-failed', sa, reason: problem });
    return {
      payloads: [notify(NotifyType.AUTHENTICATION_FAILED)],
      after: () => sa.die(`authentication failed: ${problem}`),
    };
  }
  const response = ourAuthPayloads(sa, PayloadType.IDr);
  const wantsChild = firstPayload(payloads, PayloadType.SA) !== undefined;
  const child = wantsChild ? await respondChild(sa, payloads, undefined, undefined) : undefined;
  if (child) response.push(...child.payloads);
  const initialContact = findNotify(payloads, NotifyType.INITIAL_CONTACT) !== undefined;
  return {
    payloads: response,
    after: () => {
      sa.ctx.log(
        'debug',
        `${sa.name}: established with "${describeId(sa.peer!.id)}" (${sa.peer!.scheme}) at ${sa.remote.address}:${sa.remote.port}`,
      );
      sa.markEstablished();
      if (initialContact) sa.ctx.initialContact(sa);
      if (child?.child) sa.ctx.emit({ type: 'child-up', sa, child: child.child });
      else if (child?.failure) sa.ctx.emit({ type: 'child-failed', sa, reason: child.failure });
    },
  };
}
