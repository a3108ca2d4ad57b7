/**
 * The Encrypted and Authenticated payload's protection (RFC 7296 3.14,
 * RFC 5282 for AES-GCM).
 *
 *                      1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * | Next Payload  |C|  RESERVED   |         Payload Length        |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                     Initialization Vector                     |
 * |         (length is block size for encryption algorithm)       |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * ~                    Encrypted IKE Payloads                     ~
 * +               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |               |             Padding (0-255 octets)            |
 * +-+-+-+-+-+-+-+-+                               +-+-+-+-+-+-+-+-+
 * |                                               |  Pad Length   |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * ~                    Integrity Checksum Data                    ~
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * | suite                    | IV | ICV | integrity covers / AAD                    |
 * |--------------------------|----|-----|-------------------------------------------|
 * | AES-CBC + HMAC-SHA-256-128| 16 | 16  | HMAC over the message from the IKE header |
 * |                          |    |     | to the end of the cipher text             |
 * | AES-GCM-16 (RFC 5282)    | 8  | 16  | AAD: IKE header to the end of the SK      |
 * |                          |    |     | generic header; nonce = salt(4) | IV(8)   |
 *
 * The salt is the last 4 bytes of SK_e (RFC 5282 7.1). CBC's IV is random
 * (it must be unpredictable); GCM's is a counter from a random start (it
 * must only never repeat under one key).
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { EncrAlgorithm, IntegAlgorithm } from './algorithms.ts';

/** One direction's keys for SK payloads. */
export interface SkKeys {
  readonly encr: EncrAlgorithm;
  readonly integ: IntegAlgorithm | undefined;
  /** SK_e: the key, with the 4-byte salt at its end for GCM. */
  readonly encryptionKey: Buffer;
  /** SK_a; empty for GCM. */
  readonly integrityKey: Buffer;
}

export type SkOpenFailure = 'malformed' | 'icv-mismatch' | 'bad-padding';
export type SkOpened =
  { readonly ok: true; readonly plain: Buffer } | { readonly ok: false; readonly reason: SkOpenFailure };

export const icvLengthOf = (k: SkKeys): number =>
  k.encr.aead ? k.encr.icvLength : (k.integ?.icvLength ?? 0);

/** Seals and opens SK payloads for one direction of an IKE SA. */
export class SkCipher {
  readonly keys: SkKeys;
  #counter: bigint;

  constructor(keys: SkKeys) {
    if (!keys.encr.aead && keys.integ === undefined)
      throw new RangeError('a non-AEAD cipher needs integrity');
    this.keys = keys;
    this.#counter = randomBytes(8).readBigUInt64BE();
  }

  get ivLength(): number {
    return this.keys.encr.ivLength;
  }

  get icvLength(): number {
    return icvLengthOf(this.keys);
  }

  /** Bytes of padding plus the Pad Length octet for `plainLength` bytes of payloads. */
  paddedLength(plainLength: number): number {
    const bs = this.keys.encr.blockSize;
    return plainLength + 1 + ((bs - ((plainLength + 1) % bs)) % bs);
  }

  nextIv(): Buffer {
    if (!this.keys.encr.aead) return randomBytes(this.keys.encr.ivLength);
    const iv = Buffer.alloc(8);
    iv.writeBigUInt64BE(this.#counter);
    this.#counter = (this.#counter + 1n) & 0xffff_ffff_ffff_ffffn;
    return iv;
  }

  /**
   * Fills in an SK payload in `msg`: the bytes before `ivOffset` (IKE header
   * and SK generic header) are final, the IV goes at `ivOffset`, followed by
   * `plain` (payloads, padding, Pad Length), then the ICV to the end of msg.
   */
  seal(msg: Buffer, ivOffset: number, plain: Buffer): void {
    const { encr, integ } = this.keys;
    const iv = this.nextIv();
    iv.copy(msg, ivOffset);
    const ctOffset = ivOffset + iv.length;
    if (encr.aead) {
      const key = this.keys.encryptionKey.subarray(0, encr.keyBits / 8);
      const salt = this.keys.encryptionKey.subarray(encr.keyBits / 8);
      const c = createCipheriv(encr.nodeCipher as 'aes-128-gcm', key, Buffer.concat([salt, iv]), {
        authTagLength: encr.icvLength,
      });
      c.setAAD(msg.subarray(0, ivOffset));
      const ct = Buffer.concat([c.update(plain), c.final()]);
      ct.copy(msg, ctOffset);
      c.getAuthTag().copy(msg, ctOffset + ct.length);
      return;
    }
    const c = createCipheriv(encr.nodeCipher, this.keys.encryptionKey, iv);
    c.setAutoPadding(false);
    const ct = Buffer.concat([c.update(plain), c.final()]);
    ct.copy(msg, ctOffset);
    const end = ctOffset + ct.length;
    createHmac(integ!.hash, this.keys.integrityKey)
      .update(msg.subarray(0, end))
      .digest()
      .subarray(0, integ!.icvLength)
      .copy(msg, end);
  }

  /**
   * Checks and decrypts the SK payload whose IV starts at `ivOffset` and
   * which runs to the end of `msg`; returns the inner payload chain's bytes
   * (padding removed). Never throws.
   */
  open(msg: Buffer, ivOffset: number): SkOpened {
    const { encr, integ } = this.keys;
    const icv = this.icvLength;
    const ctOffset = ivOffset + encr.ivLength;
    const ctEnd = msg.length - icv;
    if (ctEnd - ctOffset < 1) return { ok: false, reason: 'malformed' };
    if ((ctEnd - ctOffset) % encr.blockSize !== 0) return { ok: false, reason: 'malformed' };
    const iv = msg.subarray(ivOffset, ctOffset);
    let plain: Buffer;
    if (encr.aead) {
      const key = this.keys.encryptionKey.subarray(0, encr.keyBits / 8);
      const salt = this.keys.encryptionKey.subarray(encr.keyBits / 8);
      try {
        const d = createDecipheriv(encr.nodeCipher as 'aes-128-gcm', key, Buffer.concat([salt, iv]), {
          authTagLength: encr.icvLength,
        });
        d.setAAD(msg.subarray(0, ivOffset));
        d.setAuthTag(msg.subarray(ctEnd));
        plain = Buffer.concat([d.update(msg.subarray(ctOffset, ctEnd)), d.final()]);
      } catch {
        return { ok: false, reason: 'icv-mismatch' };
      }
    } else {
      const want = createHmac(integ!.hash, this.keys.integrityKey)
        .update(msg.subarray(0, ctEnd))
        .digest()
        .subarray(0, icv);
      if (!timingSafeEqual(want, msg.subarray(ctEnd))) return { ok: false, reason: 'icv-mismatch' };
      try {
        const d = createDecipheriv(encr.nodeCipher, this.keys.encryptionKey, iv);
        d.setAutoPadding(false);
        plain = Buffer.concat([d.update(msg.subarray(ctOffset, ctEnd)), d.final()]);
      } catch {
        return { ok: false, reason: 'malformed' };
      }
    }
    const padLength = plain[plain.length - 1]!;
    if (padLength + 1 > plain.length) return { ok: false, reason: 'bad-padding' };
    return { ok: true, plain: plain.subarray(0, plain.length - 1 - padLength) };
  }
}
