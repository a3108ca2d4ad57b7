/**
 * The AUTH payload (RFC 7296 2.15, 3.8) for certificate authentication.
 *
 *   InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI
 *   MACedIDForI           = prf(SK_pi, RestOfInitIDPayload)
 *   ResponderSignedOctets = RealMessage2 | NonceIData | MACedIDForR
 *   MACedIDForR           = prf(SK_pr, RestOfRespIDPayload)
 *
 * RealMessage1/2 are the IKE_SA_INIT request and response exactly as sent
 * (the request that got the answer: after a COOKIE or INVALID_KE_PAYLOAD
 * retry, the retried one); RestOfIDPayload is the ID payload's body.
 *
 * | method | what is signed how                         | signature bytes               |
 * |--------|--------------------------------------------|-------------------------------|
 * | 1      | RSASSA-PKCS1-v1_5 with SHA-1 (as deployed) | the RSA signature             |
 * | 9      | ECDSA P-256 with SHA-256 (RFC 4754)        | r | s, 32 bytes each          |
 * | 14     | RFC 7427: the AlgorithmIdentifier says     | length (1), AlgorithmIdentifier|
 * |        |                                            | DER, signature (ECDSA: DER)   |
 *
 * Method 14 is used when the peer announced SIGNATURE_HASH_ALGORITHMS with
 * a SHA-2 hash; its AlgorithmIdentifiers are the fixed DER strings of
 * RFC 7427 appendix A, compared byte for byte, never parsed, except
 * RSASSA-PSS, whose parameters vary and are read by rsa-pss.ts. We sign
 * with PSS when asked to (`rsaPss`) and take it from any peer.
 */
import { constants, sign, verify, type KeyObject } from 'node:crypto';
import type { PrfAlgorithm } from './algorithms.ts';
import { AuthMethod, HashAlgorithmId } from './constants.ts';
import { prf } from './prf.ts';
import {
  isPssAlgorithmIdentifier,
  parsePssAlgorithmIdentifier,
  pssAlgorithmIdentifier,
  pssSaltLength,
} from './rsa-pss.ts';

type Hash = 'sha256' | 'sha384' | 'sha512';

interface SignatureScheme {
  readonly family: 'rsa' | 'ec';
  readonly hash: Hash;
  readonly hashId: number;
  /** DER of the AlgorithmIdentifier (RFC 7427 A.1, A.3). */
  readonly algorithmIdentifier: Buffer;
}

const hex = (s: string): Buffer => Buffer.from(s, 'hex');

/** RFC 7427 appendix A: sha*WithRSAEncryption carry NULL parameters, ecdsa-with-SHA* none. */
export const SIGNATURE_SCHEMES: readonly SignatureScheme[] = [
  {
    family: 'rsa',
    hash: 'sha256',
    hashId: HashAlgorithmId.SHA2_256,
    algorithmIdentifier: hex('300d06092a864886f70d01010b0500'),
  },
  {
    family: 'rsa',
    hash: 'sha384',
    hashId: HashAlgorithmId.SHA2_384,
    algorithmIdentifier: hex('300d06092a864886f70d01010c0500'),
  },
  {
    family: 'rsa',
    hash: 'sha512',
    hashId: HashAlgorithmId.SHA2_512,
    algorithmIdentifier: hex('300d06092a864886f70d01010d0500'),
  },
  {
    family: 'ec',
    hash: 'sha256',
    hashId: HashAlgorithmId.SHA2_256,
    algorithmIdentifier: hex('300a06082a8648ce3d040302'),
  },
  {
    family: 'ec',
    hash: 'sha384',
    hashId: HashAlgorithmId.SHA2_384,
    algorithmIdentifier: hex('300a06082a8648ce3d040303'),
  },
  {
    family: 'ec',
    hash: 'sha512',
    hashId: HashAlgorithmId.SHA2_512,
    algorithmIdentifier: hex('300a06082a8648ce3d040304'),
  },
];

/** The hashes we announce in SIGNATURE_HASH_ALGORITHMS and accept in method 14. */
export const OUR_SIGNATURE_HASHES: readonly number[] = [
  HashAlgorithmId.SHA2_256,
  HashAlgorithmId.SHA2_384,
  HashAlgorithmId.SHA2_512,
];

export function signedOctets(
  alg: PrfAlgorithm,
  realMessage: Uint8Array,
  peerNonce: Uint8Array,
  skP: Uint8Array,
  idBody: Uint8Array,
): Buffer {
  return Buffer.concat([realMessage, peerNonce, prf(alg, skP, idBody)]);
}

const familyOf = (key: KeyObject): 'rsa' | 'ec' | undefined =>
  key.asymmetricKeyType === 'rsa' || key.asymmetricKeyType === 'rsa-pss'
    ? 'rsa'
    : key.asymmetricKeyType === 'ec'
      ? 'ec'
      : undefined;

const PSS_HASHES = [
  [HashAlgorithmId.SHA2_256, 'sha256'],
  [HashAlgorithmId.SHA2_384, 'sha384'],
  [HashAlgorithmId.SHA2_512, 'sha512'],
] as const;

/**
 * AUTH method and data for our private key. `peerHashes` are the hash ids
 * of the peer's SIGNATURE_HASH_ALGORITHMS (undefined when it sent none).
 * `rsaPss`: an RSA key signs with RSASSA-PSS (RFC 7427 method 14) rather
 * than PKCS #1 v1.5, when the peer takes RFC 7427 at all.
 */
export function createAuth(
  key: KeyObject,
  octets: Buffer,
  peerHashes: readonly number[] | undefined,
  options: { readonly rsaPss?: boolean } = {},
): { method: number; data: Buffer } {
  const family = familyOf(key);
  if (family === undefined) throw new RangeError(`cannot sign IKE AUTH with a ${key.asymmetricKeyType} key`);
  if (peerHashes !== undefined && family === 'rsa' && options.rsaPss === true) {
    const hash = PSS_HASHES.find(([id]) => peerHashes.includes(id))?.[1];
    if (hash !== undefined) {
      const sig = sign(hash, octets, {
        key,
        padding: constants.RSA_PKCS1_PSS_PADDING,
        saltLength: pssSaltLength(hash),
      });
      const ai = pssAlgorithmIdentifier(hash);
      return {
        method: AuthMethod.DIGITAL_SIGNATURE,
        data: Buffer.concat([Buffer.from([ai.length]), ai, sig]),
      };
    }
  }
  if (peerHashes !== undefined) {
    const scheme = SIGNATURE_SCHEMES.find((s) => s.family === family && peerHashes.includes(s.hashId));
    if (scheme !== undefined) {
      const sig = sign(scheme.hash, octets, { key, dsaEncoding: 'der' });
      const ai = scheme.algorithmIdentifier;
      return {
        method: AuthMethod.DIGITAL_SIGNATURE,
        data: Buffer.concat([Buffer.from([ai.length]), ai, sig]),
      };
    }
  }
  if (family === 'rsa') return { method: AuthMethod.RSA_SIGNATURE, data: sign('sha1', octets, key) };
  if (key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    throw new RangeError('ECDSA AUTH without RFC 7427 needs a P-256 key');
  return {
    method: AuthMethod.ECDSA_SHA256_P256,
    data: sign('sha256', octets, { key, dsaEncoding: 'ieee-p1363' }),
  };
}

/** `scheme` names what verified, for logs and status: "RSA-PSS-SHA256", "ECDSA-SHA256", "RSA-SHA1", ... */
export type AuthCheck =
  { readonly ok: true; readonly scheme: string } | { readonly ok: false; readonly problem: string };

/** Verifies the peer's AUTH with the public key of its certificate. Never throws. */
export function verifyAuth(publicKey: KeyObject, method: number, data: Buffer, octets: Buffer): AuthCheck {
  const family = familyOf(publicKey);
  try {
    switch (method) {
      case AuthMethod.RSA_SIGNATURE:
        if (family !== 'rsa') return { ok: false, problem: 'RSA AUTH with a non-RSA certificate' };
        return verify('sha1', octets, publicKey, data)
          ? { ok: true, scheme: 'RSA-SHA1' }
          : { ok: false, problem: 'bad RSA signature' };
      case AuthMethod.ECDSA_SHA256_P256:
        if (family !== 'ec' || publicKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
          return { ok: false, problem: 'ECDSA P-256 AUTH with a certificate of another key' };
        if (data.length !== 64) return { ok: false, problem: 'ECDSA P-256 signature is not 64 bytes' };
        return verify('sha256', octets, { key: publicKey, dsaEncoding: 'ieee-p1363' }, data)
          ? { ok: true, scheme: 'ECDSA-P256-SHA256' }
          : { ok: false, problem: 'bad ECDSA signature' };
      case AuthMethod.DIGITAL_SIGNATURE: {
        const aiLength = data[0];
        if (aiLength === undefined || 1 + aiLength > data.length)
          return { ok: false, problem: 'RFC 7427 AUTH too short' };
        const ai = data.subarray(1, 1 + aiLength);
        if (isPssAlgorithmIdentifier(ai))
          return verifyPss(publicKey, family, ai, data.subarray(1 + aiLength), octets);
        const scheme = SIGNATURE_SCHEMES.find((s) => s.algorithmIdentifier.equals(ai));
        if (scheme === undefined)
          return { ok: false, problem: `unsupported signature algorithm ${ai.toString('hex')}` };
        if (scheme.family !== family)
          return { ok: false, problem: 'signature algorithm does not fit the certificate key' };
        return verify(
          scheme.hash,
          octets,
          { key: publicKey, dsaEncoding: 'der' },
          data.subarray(1 + aiLength),
        )
          ? { ok: true, scheme: `${scheme.family === 'ec' ? 'ECDSA' : 'RSA'}-${scheme.hash.toUpperCase()}` }
          : {
              ok: false,
              problem: `bad ${scheme.family === 'ec' ? 'ECDSA' : 'RSA'} ${scheme.hash} signature`,
            };
      }
      default:
        return { ok: false, problem: `authentication method ${method} not supported` };
    }
  } catch (e) {
    return { ok: false, problem: `signature check failed: ${(e as Error).message}` };
  }
}

function verifyPss(
  publicKey: KeyObject,
  family: 'rsa' | 'ec' | undefined,
  ai: Buffer,
  signature: Buffer,
  octets: Buffer,
): AuthCheck {
  if (family !== 'rsa') return { ok: false, problem: 'RSASSA-PSS signature with a non-RSA certificate' };
  const params = parsePssAlgorithmIdentifier(ai);
  if (typeof params === 'string') return { ok: false, problem: params };
  return verify(
    params.hash,
    octets,
    { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: params.saltLength },
    signature,
  )
    ? { ok: true, scheme: `RSA-PSS-${params.hash.toUpperCase()}` }
    : { ok: false, problem: `bad RSASSA-PSS ${params.hash} signature` };
}

/** The hash ids in a SIGNATURE_HASH_ALGORITHMS notification's data (2 bytes each). */
export function parseSignatureHashes(data: Buffer): number[] {
  const out: number[] = [];
  for (let i = 0; i + 2 <= data.length && out.length < 32; i += 2) out.push(data.readUInt16BE(i));
  return out;
}

export function emitSignatureHashes(ids: readonly number[]): Buffer {
  const b = Buffer.alloc(2 * ids.length);
  ids.forEach((id, i) => b.writeUInt16BE(id, 2 * i));
  return b;
}
