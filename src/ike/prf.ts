/**
 * The pseudo-random function and prf+ of RFC 7296 2.13, with the HMAC
 * PRFs of RFC 2104/4868. Everything IKE derives passes through here.
 *
 *   prf+ (K,S) = T1 | T2 | T3 | T4 | ...
 *   T1 = prf (K, S | 0x01)
 *   Tn = prf (K, T(n-1) | S | n)     for n = 2 .. 255
 */
import { createHmac } from 'node:crypto';
import type { PrfAlgorithm } from './algorithms.ts';

/** prf+ stops after 255 blocks (the counter is one octet). */
export const PRF_PLUS_MAX_BLOCKS = 255;

export function prf(alg: PrfAlgorithm, key: Uint8Array, ...data: Uint8Array[]): Buffer {
  const h = createHmac(alg.hash, key);
  for (const d of data) h.update(d);
  return h.digest();
}

/** `length` bytes of prf+ output. Throws RangeError past 255 blocks: a caller's bug, not input. */
export function prfPlus(alg: PrfAlgorithm, key: Uint8Array, seed: Uint8Array, length: number): Buffer {
  const blocks = Math.ceil(length / alg.length);
  if (blocks > PRF_PLUS_MAX_BLOCKS) throw new RangeError(`prf+ cannot make ${length} bytes with ${alg.hash}`);
  const out = Buffer.alloc(blocks * alg.length);
  let previous: Buffer = Buffer.alloc(0);
  for (let n = 1; n <= blocks; n++) {
    previous = prf(alg, key, previous, seed, Buffer.from([n]));
    previous.copy(out, (n - 1) * alg.length);
  }
  return out.subarray(0, length);
}
