import { createPrivateKey, createPublicKey, generateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import {
  subtle,
  type CryptoKey,
  type EcdsaParams,
  type EcKeyImportParams,
  type RsaHashedImportParams,
} from './x509.ts';

/**
 * Key pairs for the root CA, the router's local CA and the hosts. Only the two
 * families every IKEv2 implementation verifies (RFC 7427 and RFC 4945 profiles):
 * ECDSA on P-256 and RSA, both signing with SHA-256.
 */
export type KeyType = 'ec-p256' | 'rsa-2048' | 'rsa-3072';
export const KEY_TYPES: readonly KeyType[] = ['ec-p256', 'rsa-2048', 'rsa-3072'];

/** What the profile admits, as read from a key: P-256, or RSA of 2048 to 4096 bits. */
export interface KeyDescription {
  readonly family: 'ec' | 'rsa';
  readonly bits: number;
  /** For people: "ECDSA P-256" or "RSA 3072". */
  readonly text: string;
}

/** WebCrypto parameters for signing with a key of this family. */
export type SigningAlgorithm = EcdsaParams | RsaHashedImportParams;

/** A private key ready to sign certificates and CRLs, with its public half. */
export interface SigningKey {
  readonly description: KeyDescription;
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  readonly algorithm: SigningAlgorithm;
}

const ECDSA_SHA256: EcdsaParams & EcKeyImportParams = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
const RSA_SHA256: RsaHashedImportParams = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };

/** A key outside the profile, or one that cannot be read. */
export class KeyPolicyError extends Error {
  override readonly name = 'KeyPolicyError';
}

/** Describes a key, throwing KeyPolicyError for anything outside the profile. */
export function describeKey(key: KeyObject): KeyDescription {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'ec') {
    if (d?.namedCurve !== 'prime256v1')
      throw new KeyPolicyError(`EC curve ${d?.namedCurve ?? '?'} is not allowed: use P-256`);
    return { family: 'ec', bits: 256, text: 'ECDSA P-256' };
  }
  if (key.asymmetricKeyType === 'rsa') {
    const bits = d?.modulusLength ?? 0;
    if (bits < 2048 || bits > 4096)
      throw new KeyPolicyError(`an RSA key of ${bits} bits is not allowed: use 2048 to 4096 bits`);
    return { family: 'rsa', bits, text: `RSA ${bits}` };
  }
  throw new KeyPolicyError(
    `${key.asymmetricKeyType ?? 'unknown'} keys are not allowed: use ECDSA P-256 or RSA`,
  );
}

/** Describes a DER SubjectPublicKeyInfo (from a CSR or certificate), checking it against the profile. */
export function describePublicKey(spki: ArrayBuffer | Uint8Array): KeyDescription {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(spki as ArrayBuffer), format: 'der', type: 'spki' });
  } catch (e) {
    throw new KeyPolicyError(`unreadable public key: ${(e as Error).message}`);
  }
  return describeKey(key);
}

const generate = promisify(generateKeyPair);

/** Makes a fresh key pair and returns it with its PKCS #8 PEM for the key file. */
export async function generateSigningKey(type: KeyType): Promise<{ key: SigningKey; pem: string }> {
  const pair =
    type === 'ec-p256'
      ? await generate('ec', { namedCurve: 'P-256' })
      : await generate('rsa', { modulusLength: type === 'rsa-2048' ? 2048 : 3072 });
  const pem = pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  return { key: await signingKeyOf(pair.privateKey), pem };
}

/** Reads a PEM private key (PKCS #8, or the SEC1 and PKCS #1 forms openssl also writes). */
export async function loadSigningKey(pem: string): Promise<SigningKey> {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (e) {
    throw new KeyPolicyError(`unreadable private key: ${(e as Error).message}`);
  }
  return signingKeyOf(key);
}

async function signingKeyOf(key: KeyObject): Promise<SigningKey> {
  const description = describeKey(key);
  const algorithm = description.family === 'ec' ? ECDSA_SHA256 : RSA_SHA256;
  const pkcs8 = key.export({ type: 'pkcs8', format: 'der' });
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const [privateKey, publicKey] = await Promise.all([
    subtle.importKey('pkcs8', pkcs8, algorithm, false, ['sign']),
    subtle.importKey('spki', spki, algorithm, true, ['verify']),
  ]);
  return { description, privateKey, publicKey, algorithm };
}
