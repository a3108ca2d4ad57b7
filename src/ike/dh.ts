/**
 * Diffie-Hellman for the KE payload, through node:crypto:
 *
 * | group | name          | KE data (RFC)                                     | g^ir              |
 * |-------|---------------|---------------------------------------------------|-------------------|
 * | 14    | MODP 2048     | g^x, big-endian, zero-padded to 256 (RFC 7296 3.4)| 256 bytes, padded |
 * | 19    | ECP P-256     | x | y, 32 bytes each, no 0x04 prefix (RFC 5903 7) | x of the product  |
 * | 20    | ECP P-384     | x | y, 48 bytes each                              | x of the product  |
 * | 31    | Curve25519    | the 32-byte u-coordinate (RFC 8031 3)             | X25519 output     |
 *
 * A peer's value that is not a valid public key of the group (wrong length,
 * off the curve, 0, 1 or p-1 for MODP, an all-zero X25519 result) yields
 * undefined, which the exchanges answer like a failed key exchange.
 */
import {
  createDiffieHellman,
  createDiffieHellmanGroup,
  createECDH,
  createPublicKey,
  diffieHellman,
  createPrivateKey,
  generateKeyPair,
  generateKeyPairSync,
  type DiffieHellman,
  type DiffieHellmanGroup,
  type KeyObject,
} from 'node:crypto';
import { DhGroup } from './constants.ts';

export interface DhExchange {
  readonly group: number;
  /** Our KE data. */
  readonly publicValue: Buffer;
  /** g^ir from the peer's KE data, or undefined when that is not a valid public value. */
  computeSecret(peer: Uint8Array): Buffer | undefined;
}

const MODP_BYTES = 256;

function padLeft(b: Buffer, length: number): Buffer {
  if (b.length >= length) return b;
  return Buffer.concat([Buffer.alloc(length - b.length), b]);
}

function modp2048(secret?: Buffer): DhExchange {
  const group = createDiffieHellmanGroup('modp14');
  let dh: DiffieHellmanGroup | DiffieHellman = group;
  if (secret !== undefined) {
    const fixed = createDiffieHellman(group.getPrime(), group.getGenerator());
    fixed.setPrivateKey(secret);
    dh = fixed;
  }
  dh.generateKeys();
  const prime = BigInt('0x' + dh.getPrime('hex'));
  return {
    group: DhGroup.MODP_2048,
    publicValue: padLeft(dh.getPublicKey(), MODP_BYTES),
    computeSecret(peer) {
      if (peer.length !== MODP_BYTES) return undefined;
      const y = BigInt('0x' + Buffer.from(peer).toString('hex'));
      // RFC 6989 2.1: refuse the values that force a known shared secret.
      if (y <= 1n || y >= prime - 1n) return undefined;
      try {
        return padLeft(dh.computeSecret(Buffer.from(peer)), MODP_BYTES);
      } catch {
        return undefined;
      }
    },
  };
}

function ecp(group: number, curve: string, coordinate: number, secret?: Buffer): DhExchange {
  const ecdh = createECDH(curve);
  if (secret === undefined) ecdh.generateKeys();
  else ecdh.setPrivateKey(secret);
  return {
    group,
    publicValue: ecdh.getPublicKey().subarray(1),
    computeSecret(peer) {
      if (peer.length !== 2 * coordinate) return undefined;
      try {
        // OpenSSL checks the point is on the curve.
        return ecdh.computeSecret(Buffer.concat([Buffer.from([4]), peer]));
      } catch {
        return undefined;
      }
    },
  };
}

interface X25519Pair {
  readonly privateKey: KeyObject;
  /** The u-coordinate: our KE data. */
  readonly publicValue: Buffer;
}

const rawX25519 = (publicKey: KeyObject): Buffer =>
  Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');

/**
 * X25519 key pairs made ahead of need in libuv's threadpool: a key pair
 * made synchronously costs the JavaScript thread about three times what
 * taking a ready one does, and both IKE_SA_INIT's request and its answer
 * need a fresh one. Each pair is handed out once and forgotten, so every
 * exchange still has its own ephemeral key (forward secrecy). When the pool
 * is empty (the first handshakes, a burst) a pair is made on the spot.
 */
class X25519Pool {
  readonly #ready: X25519Pair[] = [];
  #making = 0;
  readonly #size: number;
  /** Jobs in the threadpool at once: its other threads stay free for the rest of the process. */
  readonly #parallel: number;

  constructor(size: number, parallel: number) {
    this.#size = size;
    this.#parallel = parallel;
  }

  take(): X25519Pair {
    const pair = this.#ready.pop();
    this.#refill();
    if (pair !== undefined) return pair;
    const { privateKey, publicKey } = generateKeyPairSync('x25519');
    return { privateKey, publicValue: rawX25519(publicKey) };
  }

  #refill(): void {
    while (this.#making < this.#parallel && this.#ready.length + this.#making < this.#size) {
      this.#making++;
      generateKeyPair('x25519', {}, (error, publicKey, privateKey) => {
        this.#making--;
        // Nothing to recover: take() makes pairs itself while the pool is empty.
        if (error !== null) return;
        this.#ready.push({ privateKey, publicValue: rawX25519(publicKey) });
        this.#refill();
      });
    }
  }
}

const x25519Pairs = new X25519Pool(16, 2);

function x25519(secret?: Buffer): DhExchange {
  const { privateKey, publicValue } = secret === undefined ? x25519Pairs.take() : x25519FromSecret(secret);
  return {
    group: DhGroup.CURVE25519,
    publicValue,
    computeSecret(peer) {
      if (peer.length !== 32) return undefined;
      let key: KeyObject;
      try {
        key = createPublicKey({
          key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(peer).toString('base64url') },
          format: 'jwk',
        });
        const secret = diffieHellman({ privateKey, publicKey: key });
        // RFC 8031 2.2: an all-zero result means a low-order point.
        return secret.every((x) => x === 0) ? undefined : secret;
      } catch {
        return undefined;
      }
    },
  };
}

function x25519FromSecret(d: Buffer): X25519Pair {
  const privateKey = createPrivateKey({
    key: { kty: 'OKP', crv: 'X25519', d: d.toString('base64url'), x: '' },
    format: 'jwk',
  });
  return { privateKey, publicValue: rawX25519(createPublicKey(privateKey)) };
}

/**
 * A fresh key pair in `group`, or undefined for a group this implementation
 * does not compute. `secret` fixes the private key (known-answer tests only).
 */
export function createDh(group: number, secret?: Buffer): DhExchange | undefined {
  switch (group) {
    case DhGroup.MODP_2048:
      return modp2048(secret);
    case DhGroup.ECP_256:
      return ecp(group, 'prime256v1', 32, secret);
    case DhGroup.ECP_384:
      return ecp(group, 'secp384r1', 48, secret);
    case DhGroup.CURVE25519:
      return x25519(secret);
    default:
      return undefined;
  }
}
