/**
 * What each negotiated transform means in node:crypto terms: key and output
 * sizes, cipher names. One table, so that the key derivation, the SK
 * payload and the child SA keys agree on every length.
 */
import { DhGroup, EncrId, IntegId, PrfId } from './constants.ts';
import type { EspEncryption, IntegrityAlgorithm } from '../ipsec/types.ts';

export interface PrfAlgorithm {
  readonly id: number;
  /** node:crypto digest name. */
  readonly hash: 'sha1' | 'sha256' | 'sha384' | 'sha512';
  /** Output size and preferred key size (RFC 7296 2.13: the same for HMAC). */
  readonly length: number;
}

export const PRF_ALGORITHMS: ReadonlyMap<number, PrfAlgorithm> = new Map([
  [PrfId.HMAC_SHA1, { id: PrfId.HMAC_SHA1, hash: 'sha1', length: 20 }],
  [PrfId.HMAC_SHA2_256, { id: PrfId.HMAC_SHA2_256, hash: 'sha256', length: 32 }],
  [PrfId.HMAC_SHA2_384, { id: PrfId.HMAC_SHA2_384, hash: 'sha384', length: 48 }],
  [PrfId.HMAC_SHA2_512, { id: PrfId.HMAC_SHA2_512, hash: 'sha512', length: 64 }],
]);

export interface IntegAlgorithm {
  readonly id: number;
  readonly hash: 'sha1' | 'sha256' | 'sha384' | 'sha512';
  readonly keyLength: number;
  /** The truncated ICV's length. */
  readonly icvLength: number;
  /** The name src/ipsec uses for this algorithm on a child SA. */
  readonly ipsecName: IntegrityAlgorithm;
}

export const INTEG_ALGORITHMS: ReadonlyMap<number, IntegAlgorithm> = new Map([
  [
    IntegId.HMAC_SHA1_96,
    { id: IntegId.HMAC_SHA1_96, hash: 'sha1', keyLength: 20, icvLength: 12, ipsecName: 'hmac-sha1-96' },
  ],
  [
    IntegId.HMAC_SHA2_256_128,
    {
      id: IntegId.HMAC_SHA2_256_128,
      hash: 'sha256',
      keyLength: 32,
      icvLength: 16,
      ipsecName: 'hmac-sha256-128',
    },
  ],
  [
    IntegId.HMAC_SHA2_384_192,
    {
      id: IntegId.HMAC_SHA2_384_192,
      hash: 'sha384',
      keyLength: 48,
      icvLength: 24,
      ipsecName: 'hmac-sha384-192',
    },
  ],
  [
    IntegId.HMAC_SHA2_512_256,
    {
      id: IntegId.HMAC_SHA2_512_256,
      hash: 'sha512',
      keyLength: 64,
      icvLength: 32,
      ipsecName: 'hmac-sha512-256',
    },
  ],
]);

export interface EncrAlgorithm {
  readonly id: number;
  /** Key bits (the Key Length attribute). */
  readonly keyBits: number;
  /** Bytes of key material taken from prf+: the key, plus the 4-byte salt for GCM (RFC 5282 7.1, RFC 4106 8.1). */
  readonly keyMaterial: number;
  readonly ivLength: number;
  /** Combined mode: no separate integrity transform, the ICV is the GCM tag. */
  readonly aead: boolean;
  readonly icvLength: number;
  /** Cipher text is whole blocks of this size (1 for GCM). */
  readonly blockSize: number;
  readonly nodeCipher: string;
  readonly ipsecName: EspEncryption;
}

/** The encryption transform for an id and key length, or undefined when not supported. */
export function encrAlgorithm(id: number, keyBits: number | undefined): EncrAlgorithm | undefined {
  if (keyBits !== 128 && keyBits !== 192 && keyBits !== 256) return undefined;
  if (id === EncrId.AES_CBC)
    return {
      id,
      keyBits,
      keyMaterial: keyBits / 8,
      ivLength: 16,
      aead: false,
      icvLength: 0,
      blockSize: 16,
      nodeCipher: `aes-${keyBits}-cbc`,
      ipsecName: 'aes-cbc',
    };
  if (id === EncrId.AES_GCM_16)
    return {
      id,
      keyBits,
      keyMaterial: keyBits / 8 + 4,
      ivLength: 8,
      aead: true,
      icvLength: 16,
      blockSize: 1,
      nodeCipher: `aes-${keyBits}-gcm`,
      ipsecName: 'aes-gcm-16',
    };
  return undefined;
}

/** Groups this implementation computes, strongest-and-cheapest first: the default preference. */
export const SUPPORTED_DH_GROUPS: readonly number[] = [
  DhGroup.CURVE25519,
  DhGroup.ECP_256,
  DhGroup.ECP_384,
  DhGroup.MODP_2048,
];
