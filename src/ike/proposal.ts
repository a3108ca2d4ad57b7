/**
 * Proposals: what we offer, how a responder picks one (RFC 7296 2.7, 3.3.6)
 * and how an initiator checks the pick, for IKE SAs and ESP child SAs.
 *
 * Proposals are written as strongSwan writes them, so that configurations
 * read the same on both sides: `aes128gcm16-prfsha256-x25519`,
 * `aes256-sha256-modp2048`, `aes256gcm16-esn`. Tokens:
 *
 * | token                         | transform                                     |
 * |-------------------------------|-----------------------------------------------|
 * | aes128 aes192 aes256          | ENCR_AES_CBC with that key length             |
 * | aes128gcm16 aes256gcm16 ...   | ENCR_AES_GCM_16 (also aes128gcm, aes256gcm)   |
 * | sha1 sha256 sha384 sha512     | integrity HMAC (and for IKE the PRF, unless a |
 * |                               | prf token is given)                           |
 * | prfsha1 prfsha256 ...         | PRF HMAC                                      |
 * | modp2048 ecp256 ecp384        | DH group 14, 19, 20                           |
 * | x25519 curve25519             | DH group 31                                   |
 * | esn noesn                     | ESP extended sequence numbers (default noesn) |
 *
 * A responder goes through its own proposals in order and takes the first
 * one that a peer proposal can match (strongSwan's default,
 * prefer_configured_proposals), so the responder's preference wins.
 */
import {
  encrAlgorithm,
  INTEG_ALGORITHMS,
  PRF_ALGORITHMS,
  type EncrAlgorithm,
  type IntegAlgorithm,
} from './algorithms.ts';
import { DhGroup, EncrId, EsnId, IntegId, PrfId, ProtocolId, TransformType } from './constants.ts';
import type { ChildSuite, IkeSuite } from './keys.ts';
import { keyLengthOf, transform, type Proposal, type Transform } from './sa-payload.ts';

export interface EncrChoice {
  readonly id: number;
  readonly keyBits: number;
}

/** One proposal of our configuration: every transform type lists its acceptable values in preference order. */
export interface ProposalConfig {
  readonly encryption: readonly EncrChoice[];
  /** Empty for combined-mode (GCM) proposals. */
  readonly integrity: readonly number[];
  /** IKE only. */
  readonly prf: readonly number[];
  /** IKE: at least one. ESP: empty for no PFS; used only on CREATE_CHILD_SA. */
  readonly dhGroups: readonly number[];
  /** ESP only; default [NO]. */
  readonly esn?: readonly number[];
}

const ENCR_TOKENS: Record<string, EncrChoice> = {};
for (const bits of [128, 192, 256]) {
  ENCR_TOKENS[`aes${bits}`] = { id: EncrId.AES_CBC, keyBits: bits };
  ENCR_TOKENS[`aes${bits}gcm16`] = { id: EncrId.AES_GCM_16, keyBits: bits };
  ENCR_TOKENS[`aes${bits}gcm`] = { id: EncrId.AES_GCM_16, keyBits: bits };
}
const INTEG_TOKENS: Record<string, [number, number]> = {
  sha1: [IntegId.HMAC_SHA1_96, PrfId.HMAC_SHA1],
  sha256: [IntegId.HMAC_SHA2_256_128, PrfId.HMAC_SHA2_256],
  sha384: [IntegId.HMAC_SHA2_384_192, PrfId.HMAC_SHA2_384],
  sha512: [IntegId.HMAC_SHA2_512_256, PrfId.HMAC_SHA2_512],
};
const PRF_TOKENS: Record<string, number> = {
  prfsha1: PrfId.HMAC_SHA1,
  prfsha256: PrfId.HMAC_SHA2_256,
  prfsha384: PrfId.HMAC_SHA2_384,
  prfsha512: PrfId.HMAC_SHA2_512,
};
const DH_TOKENS: Record<string, number> = {
  modp2048: DhGroup.MODP_2048,
  ecp256: DhGroup.ECP_256,
  ecp384: DhGroup.ECP_384,
  x25519: DhGroup.CURVE25519,
  curve25519: DhGroup.CURVE25519,
};

/** Parses "aes128gcm16-prfsha256-x25519"; throws RangeError naming the bad token. */
export function parseProposal(text: string, kind: 'ike' | 'esp'): ProposalConfig {
  const encryption: EncrChoice[] = [];
  const integrity: number[] = [];
  const prfFromInteg: number[] = [];
  const prf: number[] = [];
  const dhGroups: number[] = [];
  const esn: number[] = [];
  for (const token of text.trim().toLowerCase().split('-')) {
    if (ENCR_TOKENS[token]) encryption.push(ENCR_TOKENS[token]);
    else if (INTEG_TOKENS[token]) {
      integrity.push(INTEG_TOKENS[token][0]);
      prfFromInteg.push(INTEG_TOKENS[token][1]);
    } else if (PRF_TOKENS[token] !== undefined) prf.push(PRF_TOKENS[token]);
    else if (DH_TOKENS[token] !== undefined) dhGroups.push(DH_TOKENS[token]);
    else if (token === 'esn') esn.push(EsnId.YES);
    else if (token === 'noesn') esn.push(EsnId.NO);
    else throw new RangeError(`unknown ${kind.toUpperCase()} proposal token "${token}" in "${text}"`);
  }
  if (encryption.length === 0) throw new RangeError(`proposal "${text}" names no encryption algorithm`);
  const aead = encryption.filter((e) => e.id === EncrId.AES_GCM_16).length;
  if (aead !== 0 && aead !== encryption.length)
    throw new RangeError(`proposal "${text}" mixes combined-mode and plain ciphers: make two proposals`);
  if (aead === 0 && integrity.length === 0)
    throw new RangeError(`proposal "${text}" needs an integrity algorithm`);
  if (aead !== 0 && integrity.length !== 0)
    throw new RangeError(`proposal "${text}": GCM provides integrity itself, drop the integrity token`);
  if (kind === 'ike') {
    if (esn.length) throw new RangeError(`proposal "${text}": esn applies to ESP only`);
    if (dhGroups.length === 0) throw new RangeError(`IKE proposal "${text}" needs a DH group`);
    const prfs = prf.length ? prf : prfFromInteg;
    if (prfs.length === 0) throw new RangeError(`IKE proposal "${text}" needs a PRF (e.g. prfsha256)`);
    return { encryption, integrity, prf: prfs, dhGroups };
  }
  if (prf.length) throw new RangeError(`proposal "${text}": a PRF applies to IKE only`);
  return { encryption, integrity, prf: [], dhGroups, esn: esn.length ? esn : [EsnId.NO] };
}

export const DEFAULT_IKE_PROPOSALS: readonly ProposalConfig[] = [
  parseProposal('aes128gcm16-aes256gcm16-prfsha256-prfsha384-prfsha512-x25519-ecp256-modp2048', 'ike'),
  parseProposal('aes128-aes256-sha256-sha384-sha512-x25519-ecp256-modp2048', 'ike'),
];
export const DEFAULT_ESP_PROPOSALS: readonly ProposalConfig[] = [
  parseProposal('aes128gcm16-aes256gcm16', 'esp'),
  parseProposal('aes128-aes256-sha256', 'esp'),
];

/**
 * The SA payload proposals for our configuration. `spi` is empty in
 * IKE_SA_INIT, the new IKE SPI when rekeying IKE, our inbound SPI for ESP;
 * `withDh` false leaves out DH transforms (ESP in IKE_AUTH).
 */
export function offerProposals(
  configs: readonly ProposalConfig[],
  protocol: number,
  spi: Buffer,
  withDh: boolean,
  firstDh?: number,
): Proposal[] {
  return configs.map((c, i) => {
    const ts: Transform[] = [];
    for (const e of c.encryption) ts.push(transform(TransformType.ENCR, e.id, e.keyBits));
    if (protocol === ProtocolId.IKE) for (const p of c.prf) ts.push(transform(TransformType.PRF, p));
    for (const a of c.integrity) ts.push(transform(TransformType.INTEG, a));
    if (withDh) {
      // The group we send a KE for goes first, as the peer must pick it if it can (2.7).
      const groups =
        firstDh !== undefined && c.dhGroups.includes(firstDh)
          ? [firstDh, ...c.dhGroups.filter((g) => g !== firstDh)]
          : c.dhGroups;
      for (const g of groups) ts.push(transform(TransformType.DH, g));
    }
    if (protocol !== ProtocolId.IKE)
      for (const e of c.esn ?? [EsnId.NO]) ts.push(transform(TransformType.ESN, e));
    return { number: i + 1, protocol, spi, transforms: ts };
  });
}

/** One transform of each type: what a chosen proposal contains. */
export interface Chosen {
  readonly number: number;
  readonly encr: EncrAlgorithm;
  readonly integ: IntegAlgorithm | undefined;
  readonly prf: number;
  readonly dh: number;
  readonly esn: number;
  /** The peer's SPI from its proposal. */
  readonly spi: Buffer;
}

const sameEncr = (t: Transform, e: EncrChoice): boolean =>
  t.type === TransformType.ENCR && t.id === e.id && keyLengthOf(t) === e.keyBits;

/**
 * Matches one peer proposal against one of ours; returns the pick or
 * undefined. `useDh` false ignores DH transforms on both sides (IKE_AUTH).
 */
function match(peer: Proposal, ours: ProposalConfig, protocol: number, useDh: boolean): Chosen | undefined {
  if (peer.protocol !== protocol) return undefined;
  const of = (type: number): Transform[] => peer.transforms.filter((t) => t.type === type);
  // A transform type we do not know in the peer's proposal cannot be satisfied.
  if (peer.transforms.some((t) => t.type < TransformType.ENCR || t.type > TransformType.ESN))
    return undefined;
  let encr: EncrAlgorithm | undefined;
  for (const e of ours.encryption)
    if (of(TransformType.ENCR).some((t) => sameEncr(t, e))) {
      encr = encrAlgorithm(e.id, e.keyBits);
      break;
    }
  if (encr === undefined) return undefined;
  let integ: IntegAlgorithm | undefined;
  const peerInteg = of(TransformType.INTEG).filter((t) => t.id !== IntegId.NONE);
  if (encr.aead) {
    if (peerInteg.length > 0 && !of(TransformType.INTEG).some((t) => t.id === IntegId.NONE)) return undefined;
  } else {
    const id = ours.integrity.find((a) => peerInteg.some((t) => t.id === a));
    if (id === undefined) return undefined;
    integ = INTEG_ALGORITHMS.get(id);
    if (integ === undefined) return undefined;
  }
  let prf = 0;
  if (protocol === ProtocolId.IKE) {
    const p = ours.prf.find((x) => of(TransformType.PRF).some((t) => t.id === x) && PRF_ALGORITHMS.has(x));
    if (p === undefined) return undefined;
    prf = p;
  }
  let dh = 0;
  const peerDh = of(TransformType.DH).filter((t) => t.id !== DhGroup.NONE);
  if (useDh) {
    if (protocol === ProtocolId.IKE || ours.dhGroups.length > 0 || peerDh.length > 0) {
      // The peer's order decides among groups we both accept: its first is the one its KE carries.
      const g = peerDh.find((t) => ours.dhGroups.includes(t.id));
      if (g === undefined) return undefined;
      dh = g.id;
    }
  }
  let esn: number = EsnId.NO;
  if (protocol !== ProtocolId.IKE) {
    const peerEsn = of(TransformType.ESN);
    const oursEsn = ours.esn ?? [EsnId.NO];
    const e =
      peerEsn.length === 0
        ? oursEsn.includes(EsnId.NO)
          ? EsnId.NO
          : undefined
        : oursEsn.find((x) => peerEsn.some((t) => t.id === x));
    if (e === undefined) return undefined;
    esn = e;
  }
  return { number: peer.number, encr, integ, prf, dh, esn, spi: peer.spi };
}

/** The responder's pick among the peer's proposals, our order first. */
export function selectProposal(
  peer: readonly Proposal[],
  ours: readonly ProposalConfig[],
  protocol: number,
  useDh: boolean,
): Chosen | undefined {
  for (const o of ours)
    for (const p of peer) {
      const c = match(p, o, protocol, useDh);
      if (c !== undefined) return c;
    }
  return undefined;
}

/** The proposal the responder sends back: the pick's transforms, its number, and our SPI. */
export function chosenProposal(c: Chosen, protocol: number, spi: Buffer, withDh: boolean): Proposal {
  const ts: Transform[] = [transform(TransformType.ENCR, c.encr.id, c.encr.keyBits)];
  if (protocol === ProtocolId.IKE) ts.push(transform(TransformType.PRF, c.prf));
  if (c.integ !== undefined) ts.push(transform(TransformType.INTEG, c.integ.id));
  if (withDh && c.dh !== 0) ts.push(transform(TransformType.DH, c.dh));
  if (protocol !== ProtocolId.IKE) ts.push(transform(TransformType.ESN, c.esn));
  return { number: c.number, protocol, spi, transforms: ts };
}

/**
 * The initiator's check of the responder's answer: exactly one proposal
 * with one transform per type, all taken from the proposal we sent under
 * that number. Returns the pick or undefined.
 */
export function acceptChosen(
  answer: readonly Proposal[],
  offered: readonly Proposal[],
  protocol: number,
): Chosen | undefined {
  if (answer.length !== 1) return undefined;
  const a = answer[0]!;
  const o = offered.find((p) => p.number === a.number);
  if (o === undefined || a.protocol !== protocol) return undefined;
  const types = a.transforms.map((t) => t.type);
  if (new Set(types).size !== types.length) return undefined;
  const offeredHas = (t: Transform): boolean =>
    o.transforms.some((x) => x.type === t.type && x.id === t.id && keyLengthOf(x) === keyLengthOf(t));
  if (!a.transforms.every(offeredHas)) return undefined;
  // Every type we offered must be answered, DH excepted when the answer leaves PFS out
  // and ESN only if we offered it.
  for (const type of new Set(o.transforms.map((t) => t.type)))
    if (!types.includes(type) && type !== TransformType.DH) return undefined;
  const get = (type: number): Transform | undefined => a.transforms.find((t) => t.type === type);
  const e = get(TransformType.ENCR);
  const encr = e === undefined ? undefined : encrAlgorithm(e.id, keyLengthOf(e));
  if (encr === undefined) return undefined;
  const i = get(TransformType.INTEG);
  const integ = i === undefined || i.id === IntegId.NONE ? undefined : INTEG_ALGORITHMS.get(i.id);
  if (!encr.aead && integ === undefined) return undefined;
  if (encr.aead && integ !== undefined) return undefined;
  const prf = get(TransformType.PRF)?.id ?? 0;
  if (protocol === ProtocolId.IKE && !PRF_ALGORITHMS.has(prf)) return undefined;
  if (protocol === ProtocolId.IKE && get(TransformType.DH) === undefined) return undefined;
  return {
    number: a.number,
    encr,
    integ,
    prf,
    dh: get(TransformType.DH)?.id ?? 0,
    esn: get(TransformType.ESN)?.id ?? EsnId.NO,
    spi: a.spi,
  };
}

export function ikeSuiteOf(c: Chosen): IkeSuite {
  return { encr: c.encr, integ: c.integ, prf: PRF_ALGORITHMS.get(c.prf)!, dhGroup: c.dh };
}

export function childSuiteOf(c: Chosen): ChildSuite {
  return { encr: c.encr, integ: c.integ, esn: c.esn === EsnId.YES, dhGroup: c.dh };
}

/** "AES_GCM_16_128/PRF_HMAC_SHA2_256/CURVE_25519" in strongSwan's manner, for logs and status. */
export function describeChosen(c: Chosen, protocol: number): string {
  const parts = [`${c.encr.aead ? 'AES_GCM_16' : 'AES_CBC'}_${c.encr.keyBits}`];
  if (c.integ) parts.push(`HMAC_${c.integ.hash.toUpperCase()}_${c.integ.icvLength * 8}`);
  if (protocol === ProtocolId.IKE) parts.push(`PRF_HMAC_${PRF_ALGORITHMS.get(c.prf)?.hash.toUpperCase()}`);
  if (c.dh) parts.push(`DH${c.dh}`);
  if (protocol !== ProtocolId.IKE) parts.push(c.esn === EsnId.YES ? 'ESN' : 'NO_EXT_SEQ');
  return parts.join('/');
}
