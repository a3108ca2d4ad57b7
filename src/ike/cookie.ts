/**
 * Stateless cookies against IKE_SA_INIT floods (RFC 7296 2.6).
 *
 *   Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)
 *
 * The responder keeps no state for a request without a valid cookie while
 * too many SAs are half open; it answers N(COOKIE) and forgets. An initiator
 * that really owns its address repeats the request with the cookie first.
 * The secret changes every `rotateMs`; cookies made with the previous one
 * are still accepted, so an initiator caught by a rotation is not refused.
 * The version is one octet, kept in front of the 32-byte SHA-256 value.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../util/clock.ts';
import { spiBytes } from './keys.ts';
import { ipv4Bytes } from './nat.ts';

export const COOKIE_LENGTH = 33;
/** RFC 7296 3.10.1: a COOKIE notification carries 1 to 64 octets. */
export const MAX_COOKIE_LENGTH = 64;

export interface CookieJarOptions {
  /** Default 60 s. */
  readonly rotateMs?: number;
}

export class CookieJar {
  readonly #clock: Clock;
  readonly #rotateMs: number;
  #version = 0;
  #secret = randomBytes(32);
  #previous: Buffer | undefined;
  #rotatedAt: number;

  constructor(clock: Clock, options: CookieJarOptions = {}) {
    this.#clock = clock;
    this.#rotateMs = options.rotateMs ?? 60_000;
    this.#rotatedAt = clock.now();
  }

  #rotateIfDue(): void {
    const now = this.#clock.now();
    if (now - this.#rotatedAt < this.#rotateMs) return;
    // After a long idle time the previous secret is older than one period: drop it too.
    this.#previous = now - this.#rotatedAt < 2 * this.#rotateMs ? this.#secret : undefined;
    this.#secret = randomBytes(32);
    this.#version = (this.#version + 1) & 0xff;
    this.#rotatedAt = now;
  }

  #hash(secret: Buffer, ni: Uint8Array, address: string, spiI: bigint): Buffer {
    return createHash('sha256')
      .update(ni)
      .update(ipv4Bytes(address))
      .update(spiBytes(spiI))
      .update(secret)
      .digest();
  }

  make(ni: Uint8Array, address: string, spiI: bigint): Buffer {
    this.#rotateIfDue();
    return Buffer.concat([Buffer.from([this.#version]), this.#hash(this.#secret, ni, address, spiI)]);
  }

  check(cookie: Uint8Array, ni: Uint8Array, address: string, spiI: bigint): boolean {
    this.#rotateIfDue();
    if (cookie.length !== COOKIE_LENGTH) return false;
    const secret =
      cookie[0] === this.#version
        ? this.#secret
        : cookie[0] === ((this.#version - 1) & 0xff)
          ? this.#previous
          : undefined;
    if (secret === undefined) return false;
    return timingSafeEqual(this.#hash(secret, ni, address, spiI), Buffer.from(cookie.subarray(1)));
  }
}
