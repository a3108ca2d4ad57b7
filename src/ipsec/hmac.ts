/**
 * HMAC (RFC 2104) truncated for IPsec: HMAC-SHA-256-128, -384-192 and
 * -512-256 (RFC 4868) and HMAC-SHA-1-96 (RFC 2404, kept for interoperation).
 *
 * Per packet, `createHmac` pays for the key set-up every time (about 2 us
 * for 64 bytes on the reference box). The pads K ^ ipad and K ^ opad are
 * computed once per SA instead, and each packet costs two one-shot
 * `crypto.hash` calls:
 *
 *     ICV = trunc( H( K^opad || H( K^ipad || message ) ) )
 *
 * The inner hash needs K^ipad and the message side by side, so callers lay
 * the message out in `HMAC_SCRATCH` after the first `blockSize` bytes (AH
 * writes its ICV input straight there); `macOf` copies a region there for
 * callers whose message lies in the packet.
 *
 * When the addon has HmacContext (native-setup/addon/src/hmac.cc) both
 * entry points go to it instead: the two padded hash states are kept in
 * OpenSSL per SA, and a packet costs one call, its own bytes and two final
 * blocks, with nothing allocated and no copy into HMAC_SCRATCH for macOf.
 * AH and ESP with NULL encryption take that path; AES-CBC has its own
 * context that also holds the cipher (native-cbc.ts).
 */
import { hash } from 'node:crypto';
import { AeadResult, loadNative, nativeAvailable, type NativeHmacContext } from '../io/native.ts';
import { useNative, type CryptoImplementation } from './crypto-choice.ts';
import type { IntegrityAlgorithm } from './types.ts';

interface HmacShape {
  readonly hash: string;
  readonly blockSize: number;
  readonly digestLength: number;
  readonly icvLength: number;
}

const SHAPES: Record<IntegrityAlgorithm, HmacShape> = {
  'hmac-sha256-128': { hash: 'sha256', blockSize: 64, digestLength: 32, icvLength: 16 },
  'hmac-sha384-192': { hash: 'sha384', blockSize: 128, digestLength: 48, icvLength: 24 },
  'hmac-sha512-256': { hash: 'sha512', blockSize: 128, digestLength: 64, icvLength: 32 },
  'hmac-sha1-96': { hash: 'sha1', blockSize: 64, digestLength: 20, icvLength: 12 },
};

export const INTEGRITY_ALGORITHMS = Object.keys(SHAPES) as readonly IntegrityAlgorithm[];

/** Key length RFC 4868 2.1.1 / RFC 2404 3 require: the hash's output length. */
export function integrityKeyLength(algorithm: IntegrityAlgorithm): number {
  return SHAPES[algorithm].digestLength;
}

export function integrityIcvLength(algorithm: IntegrityAlgorithm): number {
  return SHAPES[algorithm].icvLength;
}

/** Throws RangeError unless `key` suits `algorithm` (a configuration error, not input). */
export function checkIntegrityKey(algorithm: IntegrityAlgorithm, key: Uint8Array): void {
  const shape = SHAPES[algorithm];
  if (shape === undefined) throw new RangeError(`unknown integrity algorithm ${String(algorithm)}`);
  if (key.length !== shape.digestLength) {
    throw new RangeError(`${algorithm} needs a ${shape.digestLength}-byte key, got ${key.length}`);
  }
}

let available: boolean | undefined;

/** Whether the loaded addon has HmacContext (an older build does not). */
export function nativeHmacAvailable(): boolean {
  available ??= nativeAvailable() && typeof loadNative().HmacContext === 'function';
  return available;
}

/** Largest block size of the supported hashes. */
export const MAX_HMAC_BLOCK = 128;

/**
 * One scratch area for every HMAC input: the largest IPv4 datagram, the
 * largest pad before it, and 4 bytes for the ESN high half after it.
 * Per-packet code is synchronous, so one module-wide area is never shared
 * by two computations at once.
 */
export const HMAC_SCRATCH = new Uint8Array(MAX_HMAC_BLOCK + 65535 + 4);

export class Hmac {
  readonly algorithm: IntegrityAlgorithm;
  readonly hash: string;
  readonly blockSize: number;
  readonly icvLength: number;
  private readonly ipad: Uint8Array;
  /** K^opad followed by room for the inner digest. */
  private readonly outer: Uint8Array;
  /** The addon's keyed states, when used; the pads above then stay unused. */
  private readonly native: NativeHmacContext | null = null;

  /**
   * Throws RangeError for a key of the wrong length (a configuration error,
   * not input), or for 'native' when the addon lacks HmacContext.
   */
  constructor(algorithm: IntegrityAlgorithm, key: Uint8Array, implementation?: CryptoImplementation) {
    checkIntegrityKey(algorithm, key);
    const shape = SHAPES[algorithm];
    if (useNative(implementation, nativeHmacAvailable)) {
      const Context = loadNative().HmacContext;
      if (Context === undefined) throw new RangeError('the native addon has no HmacContext: rebuild it');
      this.native = new Context(algorithm, key);
    }
    this.algorithm = algorithm;
    this.hash = shape.hash;
    this.blockSize = shape.blockSize;
    this.icvLength = shape.icvLength;
    this.ipad = new Uint8Array(shape.blockSize).fill(0x36);
    this.outer = new Uint8Array(shape.blockSize + shape.digestLength).fill(0x5c, 0, shape.blockSize);
    for (let i = 0; i < key.length; i++) {
      this.ipad[i]! ^= key[i]!;
      this.outer[i]! ^= key[i]!;
    }
  }

  /**
   * The ICV of HMAC_SCRATCH[blockSize, end), written to out[at]. The caller
   * has laid the message out there; this writes the pad in front of it.
   */
  macScratch(end: number, out: Uint8Array, at: number): void {
    if (this.native !== null) return this.nativeMac(HMAC_SCRATCH, this.blockSize, end, -1, out, at);
    HMAC_SCRATCH.set(this.ipad, 0);
    const inner = hash(this.hash, HMAC_SCRATCH.subarray(0, end), 'buffer');
    this.outer.set(inner, this.blockSize);
    const digest = hash(this.hash, this.outer, 'buffer');
    for (let i = 0; i < this.icvLength; i++) out[at + i] = digest[i]!;
  }

  /**
   * The ICV of buf[start, end), followed by the 32-bit `tail` when it is
   * not negative (the ESN high half, RFC 4303 2.2.1), written to out[at].
   */
  macOf(buf: Uint8Array, start: number, end: number, tail: number, out: Uint8Array, at: number): void {
    if (this.native !== null) return this.nativeMac(buf, start, end, tail, out, at);
    let n = this.blockSize + (end - start);
    HMAC_SCRATCH.set(buf.subarray(start, end), this.blockSize);
    if (tail >= 0) {
      HMAC_SCRATCH[n] = tail >>> 24;
      HMAC_SCRATCH[n + 1] = tail >>> 16;
      HMAC_SCRATCH[n + 2] = tail >>> 8;
      HMAC_SCRATCH[n + 3] = tail;
      n += 4;
    }
    this.macScratch(n, out, at);
  }

  /** Whether the addon computes this HMAC. */
  get isNative(): boolean {
    return this.native !== null;
  }

  private nativeMac(
    buf: Uint8Array,
    start: number,
    end: number,
    tail: number,
    out: Uint8Array,
    at: number,
  ): void {
    const status = this.native!.mac(buf, start, end, tail, out, at);
    // Callers hand in regions inside their own buffers, so a failure is a
    // broken invariant, not a bad packet: a wrong ICV must not go out.
    if (status !== AeadResult.Done) throw new Error(`native HMAC failed with status ${status}`);
  }
}

/** Compares two ICVs in time that depends only on their length. */
export function icvEqual(a: Uint8Array, aAt: number, b: Uint8Array, bAt: number, length: number): boolean {
  let diff = 0;
  for (let i = 0; i < length; i++) diff |= a[aAt + i]! ^ b[bAt + i]!;
  return diff === 0;
}
