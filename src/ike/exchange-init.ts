/**
 * IKE_SA_INIT (RFC 7296 1.2, 2.6, 2.7, 2.23):
 *
 *   Initiator                         Responder
 *   HDR, SA, KEi, Ni, N(NAT_D)x2, N(SIG_HASH)  -->
 *                     <--  HDR, SA, KEr, Nr, N(NAT_D)x2, CERTREQ, N(SIG_HASH)
 *
 * and the two stateless detours the responder may take first:
 *
 *                     <--  HDR, N(COOKIE)                 (too many half-open SAs)
 *   HDR, N(COOKIE), SA, KEi, Ni, ...  -->
 *
 *                     <--  HDR, N(INVALID_KE_PAYLOAD, group)
 *   HDR, SA, KEi(group), Ni, ...  -->
 *
 * The responder keeps nothing until a request has a valid cookie (when
 * cookies are on) and a KE in the group it picked; then it makes the
 * half-open SA, derives the keys and answers.
 */
import { randomBytes } from 'node:crypto';
import { SUPPORTED_DH_GROUPS } from './algorithms.ts';
import { emitSignatureHashes, OUR_SIGNATURE_HASHES, parseSignatureHashes } from './auth.ts';
import { certReqPayload } from './certs.ts';
import { ExchangeType, HeaderFlag, NotifyType, PayloadType, ProtocolId, nameOf } from './constants.ts';
import type { IkeContext } from './context.ts';
import { MAX_COOKIE_LENGTH, type CookieJar } from './cookie.ts';
import { createDh } from './dh.ts';
import { startAuth } from './exchange-auth.ts';
import { IkeSa } from './ike-sa.ts';
import { IKE_PORT, NATT_PORT } from './header.ts';
import { deriveIkeKeys, skeyseed } from './keys.ts';
import { emitIkeMessage, type IkeMessage } from './message.ts';
import { detectNat, errorNotifies, natDetectionPayloads, type Endpoint } from './nat.ts';
import { findNotify, firstPayload, notify, unsupportedCritical, type Payload } from './payloads.ts';
import { acceptChosen, chosenProposal, ikeSuiteOf, offerProposals, selectProposal } from './proposal.ts';
import type { Proposal } from './sa-payload.ts';
import { SkCipher } from './sk-cipher.ts';
import { NONCE_LENGTH } from './exchange-child.ts';

const MAX_COOKIE_ROUNDS = 3;
const MAX_GROUP_SWITCHES = 2;

function natPayloads(sa: IkeSa, spiR: bigint, local: Endpoint): Payload[] {
  const n = natDetectionPayloads(sa.spiI, spiR, local, sa.remote);
  // Insisting on UDP encapsulation: a source hash nobody can match (what strongSwan's encap=yes does).
  if (sa.ctx.config.forceEncap) return [notify(NotifyType.NAT_DETECTION_SOURCE_IP, randomBytes(20)), n[1]!];
  return n;
}

const sigHashNotify = (ctx: IkeContext<IkeSa>): Payload[] =>
  ctx.config.signatureHashes
    ? [notify(NotifyType.SIGNATURE_HASH_ALGORITHMS, emitSignatureHashes(OUR_SIGNATURE_HASHES))]
    : [];

const fragmentationNotify = (): Payload => notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED);

/** Where the peer's NAT-T path is: port 4500 if it listened on 500, otherwise the same (shared) port. */
export const nattEndpoint = (e: Endpoint): Endpoint =>
  e.port === IKE_PORT ? { address: e.address, port: NATT_PORT } : e;

/** Starts an IKE SA as initiator: sends IKE_SA_INIT and carries on through IKE_AUTH. */
export function startInitiator(sa: IkeSa): void {
  const groups = sa.ctx.config.ikeProposals.flatMap((p) => p.dhGroups);
  const first = groups.find((g) => SUPPORTED_DH_GROUPS.includes(g));
  if (first === undefined) {
    sa.fail('config', 'no supported DH group in the IKE proposals');
    return;
  }
  sa.dh = createDh(first);
  sa.ni = randomBytes(NONCE_LENGTH);
  sendInit(sa, { cookieRounds: 0, groupSwitches: 0 });
}

interface InitRounds {
  cookieRounds: number;
  groupSwitches: number;
}

function sendInit(sa: IkeSa, rounds: InitRounds): void {
  const cfg = sa.ctx.config;
  const offered = offerProposals(cfg.ikeProposals, ProtocolId.IKE, Buffer.alloc(0), true, sa.dh!.group);
  const payloads: Payload[] = [];
  if (sa.cookie) payloads.push(notify(NotifyType.COOKIE, sa.cookie));
  payloads.push(
    { type: PayloadType.SA, proposals: offered },
    { type: PayloadType.KE, group: sa.dh!.group, data: sa.dh!.publicValue },
    { type: PayloadType.NONCE, data: sa.ni },
    ...natPayloads(sa, 0n, sa.ctx.transport.local),
    ...sigHashNotify(sa.ctx),
    ...(cfg.fragmentation ? [fragmentationNotify()] : []),
  );
  const bytes = emitIkeMessage(
    {
      spiI: sa.spiI,
      spiR: 0n,
      exchange: ExchangeType.IKE_SA_INIT,
      flags: HeaderFlag.INITIATOR,
      messageId: 0,
    },
    payloads,
  );
  sa.initRequest = bytes;
  sa.state = 'init-sent';
  sa.transmit(
    0,
    [bytes],
    (msg) => onInitResponse(sa, msg, offered, rounds),
    () => sa.fail('timeout', `no answer to IKE_SA_INIT from ${sa.remote.address}:${sa.remote.port}`),
  );
}

function onInitResponse(sa: IkeSa, msg: IkeMessage, offered: Proposal[], rounds: InitRounds): boolean {
  if (msg.header.exchange !== ExchangeType.IKE_SA_INIT || sa.state !== 'init-sent') return false;
  const p = msg.payloads;
  const cookie = findNotify(p, NotifyType.COOKIE);
  if (cookie !== undefined) {
    if (
      rounds.cookieRounds >= MAX_COOKIE_ROUNDS ||
      cookie.data.length === 0 ||
      cookie.data.length > MAX_COOKIE_LENGTH
    ) {
      sa.fail('cookie', 'responder keeps asking for cookies');
      return true;
    }
    sa.cookie = Buffer.from(cookie.data);
    sendInit(sa, { ...rounds, cookieRounds: rounds.cookieRounds + 1 });
    return false;
  }
  const invalidKe = findNotify(p, NotifyType.INVALID_KE_PAYLOAD);
  if (invalidKe !== undefined) {
    const group = invalidKe.data.length === 2 ? invalidKe.data.readUInt16BE(0) : -1;
    const ours = sa.ctx.config.ikeProposals.some((c) => c.dhGroups.includes(group));
    if (
      !ours ||
      group === sa.dh!.group ||
      rounds.groupSwitches >= MAX_GROUP_SWITCHES ||
      !SUPPORTED_DH_GROUPS.includes(group)
    ) {
      sa.fail('no-proposal', `responder wants DH group ${group}, which we do not offer`);
      return true;
    }
    sa.ctx.log('info', `${sa.name}: responder wants DH group ${group}, retrying`);
    sa.dh = createDh(group);
    sendInit(sa, { ...rounds, groupSwitches: rounds.groupSwitches + 1 });
    return false;
  }
  const error = errorNotifies(p)[0];
  if (error !== undefined) {
    sa.fail(
      error.notifyType === NotifyType.NO_PROPOSAL_CHOSEN ? 'no-proposal' : 'refused',
      `responder refused IKE_SA_INIT: ${nameOf(NotifyType, error.notifyType, 'notify')}`,
    );
    return true;
  }
  const saPayload = firstPayload(p, PayloadType.SA);
  const ke = firstPayload(p, PayloadType.KE);
  const nonce = firstPayload(p, PayloadType.NONCE);
  if (!saPayload || !ke || !nonce || msg.header.spiR === 0n) {
    sa.ctx.count('init-response-malformed');
    return false;
  }
  const chosen = acceptChosen(saPayload.proposals, offered, ProtocolId.IKE);
  if (chosen === undefined || chosen.dh !== sa.dh!.group || ke.group !== chosen.dh) {
    sa.fail('no-proposal', 'responder answered with a proposal we did not make');
    return true;
  }
  const secret = sa.dh!.computeSecret(ke.data);
  if (secret === undefined) {
    sa.fail('bad-ke', 'responder sent an invalid KE value');
    return true;
  }
  sa.spiR = msg.header.spiR;
  sa.nr = Buffer.from(nonce.data);
  sa.initResponse = Buffer.from(msg.raw);
  sa.dh = undefined;
  installIkeKeys(sa, ikeSuiteOf(chosen), skeyseed(ikeSuiteOf(chosen).prf, sa.ni, sa.nr, secret));
  const hashes = findNotify(p, NotifyType.SIGNATURE_HASH_ALGORITHMS);
  sa.peerHashes = hashes && sa.ctx.config.signatureHashes ? parseSignatureHashes(hashes.data) : undefined;
  sa.fragmentation =
    sa.ctx.config.fragmentation && findNotify(p, NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) !== undefined;
  sa.nat = detectNat(p, sa.spiI, sa.spiR, sa.ctx.transport.local, sa.remote);
  if (sa.nat.supported && (sa.nat.localBehindNat || sa.nat.peerBehindNat || sa.ctx.config.forceEncap)) {
    // RFC 7296 2.23: the initiator moves to the NAT-T port for IKE_AUTH.
    sa.remote = nattEndpoint(sa.remote);
    sa.natt = true;
    sa.ctx.log(
      'info',
      `${sa.name}: NAT ${describeNat(sa)}, moving to ${sa.remote.address}:${sa.remote.port} with ESP-in-UDP`,
    );
  }
  sa.setMessageIds(1, 0);
  sa.state = 'auth-sent';
  startAuth(sa);
  return true;
}

function describeNat(sa: IkeSa): string {
  const n = sa.nat!;
  const parts = [];
  if (n.localBehindNat) parts.push('in front of us');
  if (n.peerBehindNat) parts.push('in front of the peer');
  if (parts.length === 0) parts.push('forced by us');
  return parts.join(' and ');
}

/** Derives and installs SK_* for this SA's role; `seed` is SKEYSEED. */
export function installIkeKeys(sa: IkeSa, suite: ReturnType<typeof ikeSuiteOf>, seed: Buffer): void {
  sa.suite = suite;
  sa.keys = deriveIkeKeys(suite, seed, sa.ni, sa.nr, sa.spiI, sa.spiR);
  const i = { encr: suite.encr, integ: suite.integ, encryptionKey: sa.keys.skEi, integrityKey: sa.keys.skAi };
  const r = { encr: suite.encr, integ: suite.integ, encryptionKey: sa.keys.skEr, integrityKey: sa.keys.skAr };
  sa.outCipher = new SkCipher(sa.role === 'initiator' ? i : r);
  sa.inCipher = new SkCipher(sa.role === 'initiator' ? r : i);
}

/** What the responder's IKE_SA_INIT handling needs from the daemon. */
export interface InitResponderEnv {
  readonly ctx: IkeContext<IkeSa>;
  readonly cookies: CookieJar;
  halfOpenCount(): number;
  /** A half-open SA already made for this request (a retransmission), if any. */
  findHalfOpen(remote: Endpoint, spiI: bigint): IkeSa | undefined;
}

function answerStateless(
  env: InitResponderEnv,
  msg: IkeMessage,
  remote: Endpoint,
  natt: boolean,
  payloads: Payload[],
): void {
  const bytes = emitIkeMessage(
    {
      spiI: msg.header.spiI,
      spiR: 0n,
      exchange: ExchangeType.IKE_SA_INIT,
      flags: HeaderFlag.RESPONSE,
      messageId: 0,
    },
    payloads,
  );
  env.ctx.transport.send(bytes, remote, natt);
}

/** The responder's side of IKE_SA_INIT; returns the new half-open SA, if one was made. */
export function answerInit(
  env: InitResponderEnv,
  msg: IkeMessage,
  remote: Endpoint,
  natt: boolean,
): IkeSa | undefined {
  const { ctx } = env;
  const cfg = ctx.config;
  const h = msg.header;
  if (h.messageId !== 0 || h.spiR !== 0n || h.spiI === 0n) {
    ctx.count('init-bad-header');
    return undefined;
  }
  const again = env.findHalfOpen(remote, h.spiI);
  if (again !== undefined) {
    ctx.count('init-retransmitted');
    if (again.initResponse) ctx.transport.send(again.initResponse, remote, natt);
    return undefined;
  }
  const p = msg.payloads;
  // RFC 7296 2.5: an unknown payload marked critical refuses the whole message, by name.
  const critical = unsupportedCritical(p);
  if (critical !== undefined) {
    ctx.count('init-unsupported-critical');
    answerStateless(env, msg, remote, natt, [
      notify(NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD, Buffer.from([critical])),
    ]);
    return undefined;
  }
  const saPayload = firstPayload(p, PayloadType.SA);
  const ke = firstPayload(p, PayloadType.KE);
  const nonce = firstPayload(p, PayloadType.NONCE);
  if (!saPayload || !ke || !nonce) {
    ctx.count('init-malformed');
    answerStateless(env, msg, remote, natt, [notify(NotifyType.INVALID_SYNTAX)]);
    return undefined;
  }
  const halfOpen = env.halfOpenCount();
  if (halfOpen >= cfg.halfOpenLimit) {
    ctx.count('init-half-open-limit');
    return undefined;
  }
  if (halfOpen >= cfg.cookieThreshold) {
    const first = p[0];
    const valid =
      first !== undefined &&
      first.type === PayloadType.NOTIFY &&
      'notifyType' in first &&
      first.notifyType === NotifyType.COOKIE &&
      env.cookies.check(first.data, nonce.data, remote.address, h.spiI);
    if (!valid) {
      ctx.count('init-cookie-sent');
      answerStateless(env, msg, remote, natt, [
        notify(NotifyType.COOKIE, env.cookies.make(nonce.data, remote.address, h.spiI)),
      ]);
      return undefined;
    }
  }
  const chosen = selectProposal(saPayload.proposals, cfg.ikeProposals, ProtocolId.IKE, true);
  if (chosen === undefined) {
    ctx.count('init-no-proposal');
    answerStateless(env, msg, remote, natt, [notify(NotifyType.NO_PROPOSAL_CHOSEN)]);
    return undefined;
  }
  if (ke.group !== chosen.dh) {
    ctx.count('init-invalid-ke');
    const g = Buffer.alloc(2);
    g.writeUInt16BE(chosen.dh);
    answerStateless(env, msg, remote, natt, [notify(NotifyType.INVALID_KE_PAYLOAD, g)]);
    return undefined;
  }
  const dh = createDh(chosen.dh)!;
  const secret = dh.computeSecret(ke.data);
  if (secret === undefined) {
    ctx.count('init-bad-ke');
    answerStateless(env, msg, remote, natt, [notify(NotifyType.NO_PROPOSAL_CHOSEN)]);
    return undefined;
  }
  const sa = new IkeSa(ctx, 'responder', h.spiI, ctx.newSpi(), remote, 'half-open');
  sa.natt = natt;
  sa.ni = Buffer.from(nonce.data);
  sa.nr = randomBytes(NONCE_LENGTH);
  sa.initRequest = Buffer.from(msg.raw);
  const suite = ikeSuiteOf(chosen);
  installIkeKeys(sa, suite, skeyseed(suite.prf, sa.ni, sa.nr, secret));
  const hashes = findNotify(p, NotifyType.SIGNATURE_HASH_ALGORITHMS);
  sa.peerHashes = hashes && cfg.signatureHashes ? parseSignatureHashes(hashes.data) : undefined;
  // RFC 7383 2.3: the responder announces support only in answer to the initiator's announcement.
  sa.fragmentation =
    cfg.fragmentation && findNotify(p, NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) !== undefined;
  sa.nat = detectNat(p, sa.spiI, 0n, ctx.transport.local, remote);
  const local = ctx.transport.local;
  const nat = natPayloads(
    sa,
    sa.spiR,
    natt ? { address: local.address, port: ctx.transport.nattPort } : local,
  );
  const response: Payload[] = [
    { type: PayloadType.SA, proposals: [chosenProposal(chosen, ProtocolId.IKE, Buffer.alloc(0), true)] },
    { type: PayloadType.KE, group: dh.group, data: dh.publicValue },
    { type: PayloadType.NONCE, data: sa.nr },
    ...nat,
    certReqPayload(cfg.trust.roots),
    ...sigHashNotify(ctx),
    ...(sa.fragmentation ? [fragmentationNotify()] : []),
  ];
  const bytes = emitIkeMessage(
    {
      spiI: sa.spiI,
      spiR: sa.spiR,
      exchange: ExchangeType.IKE_SA_INIT,
      flags: HeaderFlag.RESPONSE,
      messageId: 0,
    },
    response,
  );
  sa.initResponse = bytes;
  sa.setMessageIds(0, 1);
  ctx.register(sa);
  sa.schedule(() => {
    if (sa.state === 'half-open') {
      ctx.count('half-open-timeout');
      sa.die('not authenticated in time');
    }
  }, cfg.halfOpenTimeoutMs);
  ctx.transport.send(bytes, remote, natt);
  return sa;
}
