/**
 * Key derivation (RFC 7296 2.14, 2.17, 2.18).
 *
 *   SKEYSEED = prf(Ni | Nr, g^ir)
 *   {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
 *            = prf+ (SKEYSEED, Ni | Nr | SPIi | SPIr)
 *
 *   rekeyed IKE SA:  SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr),
 *                    with the old SA's PRF (2.18: the exchange belongs to it)
 *
 *   child SA:        KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr)
 *                    taken as: encryption key i->r, integrity key i->r,
 *                              encryption key r->i, integrity key r->i
 *
 * Ni and Nr are the nonces of the exchange that creates the SA, i and r its
 * initiator and responder (for a child made by CREATE_CHILD_SA, whoever
 * started that exchange). The HMAC PRFs take the whole Ni | Nr as key.
 */
import type { EncrAlgorithm, IntegAlgorithm, PrfAlgorithm } from './algorithms.ts';
import { prf, prfPlus } from './prf.ts';

export interface IkeKeys {
  readonly skD: Buffer;
  readonly skAi: Buffer;
  readonly skAr: Buffer;
  readonly skEi: Buffer;
  readonly skEr: Buffer;
  readonly skPi: Buffer;
  readonly skPr: Buffer;
}

/** The algorithms of an IKE SA. `integ` is undefined with a combined-mode cipher. */
export interface IkeSuite {
  readonly encr: EncrAlgorithm;
  readonly integ: IntegAlgorithm | undefined;
  readonly prf: PrfAlgorithm;
  readonly dhGroup: number;
}

export interface ChildSuite {
  readonly encr: EncrAlgorithm;
  readonly integ: IntegAlgorithm | undefined;
  readonly esn: boolean;
  /** DH group for perfect forward secrecy on CREATE_CHILD_SA; 0 for none. */
  readonly dhGroup: number;
}

export const spiBytes = (spi: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(spi);
  return b;
};

export function skeyseed(
  alg: PrfAlgorithm,
  ni: Uint8Array,
  nr: Uint8Array,
  sharedSecret: Uint8Array,
): Buffer {
  return prf(alg, Buffer.concat([ni, nr]), sharedSecret);
}

export function rekeySkeyseed(
  oldPrf: PrfAlgorithm,
  oldSkD: Uint8Array,
  sharedSecret: Uint8Array,
  ni: Uint8Array,
  nr: Uint8Array,
): Buffer {
  return prf(oldPrf, oldSkD, sharedSecret, ni, nr);
}

export function deriveIkeKeys(
  suite: IkeSuite,
  seed: Uint8Array,
  ni: Uint8Array,
  nr: Uint8Array,
  spiI: bigint,
  spiR: bigint,
): IkeKeys {
  const p = suite.prf.length;
  const a = suite.integ?.keyLength ?? 0;
  const e = suite.encr.keyMaterial;
  const stream = prfPlus(
    suite.prf,
    seed,
    Buffer.concat([ni, nr, spiBytes(spiI), spiBytes(spiR)]),
    3 * p + 2 * a + 2 * e,
  );
  let at = 0;
  const take = (n: number): Buffer => Buffer.from(stream.subarray(at, (at += n)));
  return {
    skD: take(p),
    skAi: take(a),
    skAr: take(a),
    skEi: take(e),
    skEr: take(e),
    skPi: take(p),
    skPr: take(p),
  };
}

/** One direction's keys of a child SA. */
export interface ChildKeys {
  readonly encryption: Buffer;
  readonly integrity: Buffer;
}

/** KEYMAT split into the two directions, named after the exchange's initiator (i) and responder (r). */
export function deriveChildKeys(
  alg: PrfAlgorithm,
  skD: Uint8Array,
  encr: EncrAlgorithm,
  integ: IntegAlgorithm | undefined,
  ni: Uint8Array,
  nr: Uint8Array,
  sharedSecret?: Uint8Array,
): { readonly initiatorToResponder: ChildKeys; readonly responderToInitiator: ChildKeys } {
  const e = encr.keyMaterial;
  const a = integ?.keyLength ?? 0;
  const seed = sharedSecret === undefined ? Buffer.concat([ni, nr]) : Buffer.concat([sharedSecret, ni, nr]);
  const stream = prfPlus(alg, skD, seed, 2 * (e + a));
  let at = 0;
  const take = (n: number): Buffer => Buffer.from(stream.subarray(at, (at += n)));
  const initiatorToResponder = { encryption: take(e), integrity: take(a) };
  const responderToInitiator = { encryption: take(e), integrity: take(a) };
  return { initiatorToResponder, responderToInitiator };
}
