/**
 * ESP cipher suites: what sits between the cleartext ESP header and the
 * ICV, and how it is sealed and opened. Each works in place on the packet.
 *
 *   esp        ivEnd                              end (seal) / icvAt (open)
 *   | SPI | Seq | IV | payload | pad | len | nh | ICV |
 *               \___ encrypted (GCM: also authenticated, AAD = SPI, [Seq hi,] Seq)
 *   \______________________ authenticated by HMAC (CBC, NULL) _____/ + [Seq hi]
 *
 * | suite      | IV | block | ICV | RFC         |
 * |------------|----|-------|-----|-------------|
 * | aes-gcm-16 | 8  | 4 (*) | 16  | 4106        |
 * | aes-cbc    | 16 | 16    | HMAC| 3602 + 4868 |
 * | null       | 0  | 4 (*) | HMAC| 2410 + 4868 |
 *
 * (*) a stream-like suite: padding only reaches the 4-byte alignment of
 * RFC 4303 2.4.
 *
 * Cost notes (figures in docs/ipsec.md). Node offers no way to re-key or
 * re-IV an AES-GCM context, so each GCM packet creates one, and that set-up
 * is most of the cost; that is why createEspTransform prefers the addon's
 * AES-GCM (native-gcm.ts) and keeps this one as reference and fallback.
 * AES-CBC + HMAC here costs a Cipher.update and two hash calls per packet,
 * each allocating its output, so the addon's (native-cbc.ts) is preferred
 * for it too. CBC contexts are kept per SA: OpenSSL's CBC state after an update is the
 * last cipher block, so a packet with IV `iv` is encrypted by XORing its
 * first plaintext block with iv ^ lastBlock before the update (and
 * decrypted by the same XOR after it): same bytes as a fresh context with
 * that IV, without the set-up.
 */
import {
  createCipheriv,
  createDecipheriv,
  type Cipher,
  type CipherGCMTypes,
  type Decipher,
} from 'node:crypto';
import { gcmKeyBits, MaskedSequenceIv } from './gcm-iv.ts';
import { useNative, type CryptoImplementation } from './crypto-choice.ts';
import { checkIntegrityKey, Hmac, icvEqual } from './hmac.ts';
import { put32 } from '../wire/bytes.ts';
import { EspField } from '../wire/esp.ts';
import { fillRandom } from './iv-pool.ts';
import { NativeCbcHmacTransform, nativeCbcAvailable } from './native-cbc.ts';
import { NativeGcmTransform, nativeGcmAvailable } from './native-gcm.ts';
import type { EspEncryption, EspTransform, IntegrityAlgorithm, IvSource } from './types.ts';

export interface EspTransformParams {
  readonly encryption: EspEncryption;
  /** For aes-gcm-16 the AES key followed by the 4-byte salt (RFC 4106 8.1); none for null. */
  readonly encryptionKey?: Uint8Array;
  /** Required for aes-cbc and null; not allowed with aes-gcm-16 (it is its own integrity). */
  readonly integrity?: IntegrityAlgorithm;
  readonly integrityKey?: Uint8Array;
  readonly iv?: IvSource;
  /**
   * Where the cryptography runs: 'native' (the addon's reused OpenSSL
   * contexts; throws if the addon lacks them) or 'node' (node:crypto, the
   * reference). Default: native when available, unless the environment sets
   * DISTNAT_ESP_CRYPTO=node. AES-GCM and AES-CBC have native contexts; NULL
   * encryption's HMAC follows the same choice (hmac.ts).
   */
  readonly implementation?: CryptoImplementation;
}

class AesGcm16 implements EspTransform {
  readonly encryption = 'aes-gcm-16' as const;
  readonly integrity = null;
  readonly ivLength = 8;
  readonly icvLength = 16;
  readonly blockSize = 4;
  private readonly cipher: CipherGCMTypes;
  private readonly key: Buffer;
  /** Salt then the packet's explicit IV: the 12-byte GCM nonce (RFC 4106 4). */
  private readonly nonce: Buffer;
  private readonly aad = new Uint8Array(12);
  private readonly aad8 = this.aad.subarray(0, 8);
  private readonly iv: MaskedSequenceIv;

  constructor(keyAndSalt: Uint8Array, iv: IvSource | undefined) {
    this.cipher = `aes-${gcmKeyBits(keyAndSalt)}-gcm` as CipherGCMTypes;
    this.key = Buffer.from(keyAndSalt.subarray(0, keyAndSalt.length - 4));
    this.nonce = Buffer.alloc(12);
    this.nonce.set(keyAndSalt.subarray(keyAndSalt.length - 4), 0);
    this.iv = new MaskedSequenceIv(iv);
  }

  payloadLengthOk(n: number): boolean {
    return n >= 2;
  }

  writeIv(buf: Uint8Array, at: number, seq: number): void {
    this.iv.write(buf, at, seq);
  }

  /** Loads nonce and AAD from the packet; returns the AAD to use. */
  private prepare(buf: Uint8Array, esp: number, ivEnd: number, seqHigh: number): Uint8Array {
    const nonce = this.nonce;
    const aad = this.aad;
    for (let i = 0; i < 8; i++) nonce[4 + i] = buf[ivEnd - 8 + i]!;
    // RFC 4106 5: the AAD is the SPI and the sequence number, with the ESN high half between them.
    const spi = esp + EspField.SPI;
    const seq = esp + EspField.SEQUENCE;
    for (let i = 0; i < 4; i++) aad[i] = buf[spi + i]!;
    if (seqHigh < 0) {
      for (let i = 0; i < 4; i++) aad[4 + i] = buf[seq + i]!;
      return this.aad8;
    }
    put32(aad, 4, seqHigh);
    for (let i = 0; i < 4; i++) aad[8 + i] = buf[seq + i]!;
    return aad;
  }

  seal(buf: Uint8Array, esp: number, ivEnd: number, end: number, seqHigh: number): void {
    const aad = this.prepare(buf, esp, ivEnd, seqHigh);
    const c = createCipheriv(this.cipher, this.key, this.nonce, { authTagLength: 16 });
    c.setAAD(aad);
    const out = c.update(buf.subarray(ivEnd, end));
    c.final();
    buf.set(out, ivEnd);
    buf.set(c.getAuthTag(), end);
  }

  open(buf: Uint8Array, esp: number, ivEnd: number, icvAt: number, seqHigh: number): boolean {
    const aad = this.prepare(buf, esp, ivEnd, seqHigh);
    const d = createDecipheriv(this.cipher, this.key, this.nonce, { authTagLength: 16 });
    d.setAAD(aad);
    d.setAuthTag(buf.subarray(icvAt, icvAt + 16));
    const out = d.update(buf.subarray(ivEnd, icvAt));
    try {
      d.final();
    } catch {
      // OpenSSL reports a tag mismatch only by failing final(); the
      // plaintext in `out` is unauthenticated and is never written back.
      return false;
    }
    buf.set(out, ivEnd);
    return true;
  }
}

class AesCbcHmac implements EspTransform {
  readonly encryption = 'aes-cbc' as const;
  readonly integrity: IntegrityAlgorithm;
  readonly ivLength = 16;
  readonly icvLength: number;
  readonly blockSize = 16;
  private readonly hmac: Hmac;
  private readonly enc: Cipher;
  private readonly dec: Decipher;
  /** Last cipher block each context produced or consumed: its CBC state. */
  private readonly encChain = new Uint8Array(16);
  private readonly decChain = new Uint8Array(16);
  private readonly icv = new Uint8Array(64);
  private readonly ivSource: IvSource | undefined;

  constructor(key: Uint8Array, hmac: Hmac, iv: IvSource | undefined) {
    if (key.length !== 16 && key.length !== 24 && key.length !== 32) {
      throw new RangeError(`aes-cbc needs a 16, 24 or 32-byte key, got ${key.length}`);
    }
    const name = `aes-${key.length * 8}-cbc`;
    const zero = Buffer.alloc(16);
    this.enc = createCipheriv(name, key, zero).setAutoPadding(false);
    this.dec = createDecipheriv(name, key, zero).setAutoPadding(false);
    this.hmac = hmac;
    this.integrity = hmac.algorithm;
    this.icvLength = hmac.icvLength;
    this.ivSource = iv;
  }

  payloadLengthOk(n: number): boolean {
    return n >= 16 && n % 16 === 0;
  }

  writeIv(buf: Uint8Array, at: number, seq: number): void {
    if (this.ivSource !== undefined) this.ivSource(buf, at, seq);
    else fillRandom(buf, at, 16);
  }

  seal(buf: Uint8Array, esp: number, ivEnd: number, end: number, seqHigh: number): void {
    const chain = this.encChain;
    for (let i = 0; i < 16; i++) buf[ivEnd + i]! ^= buf[ivEnd - 16 + i]! ^ chain[i]!;
    // With padding off, update returns every whole block it is given.
    const out = this.enc.update(buf.subarray(ivEnd, end));
    buf.set(out, ivEnd);
    for (let i = 0; i < 16; i++) chain[i] = buf[end - 16 + i]!;
    // Encrypt-then-MAC (RFC 4303 3.3.2): the ICV covers the cipher text.
    this.hmac.macOf(buf, esp, end, seqHigh, buf, end);
  }

  open(buf: Uint8Array, esp: number, ivEnd: number, icvAt: number, seqHigh: number): boolean {
    // The ICV first: nothing is decrypted for a forged packet, so there is no padding oracle.
    this.hmac.macOf(buf, esp, icvAt, seqHigh, this.icv, 0);
    if (!icvEqual(this.icv, 0, buf, icvAt, this.icvLength)) return false;
    const out = this.dec.update(buf.subarray(ivEnd, icvAt));
    const chain = this.decChain;
    for (let i = 0; i < 16; i++) out[i]! ^= chain[i]! ^ buf[ivEnd - 16 + i]!;
    for (let i = 0; i < 16; i++) chain[i] = buf[icvAt - 16 + i]!;
    buf.set(out, ivEnd);
    return true;
  }
}

class NullHmac implements EspTransform {
  readonly encryption = 'null' as const;
  readonly integrity: IntegrityAlgorithm;
  readonly ivLength = 0;
  readonly icvLength: number;
  readonly blockSize = 4;
  private readonly hmac: Hmac;
  private readonly icv = new Uint8Array(64);

  constructor(hmac: Hmac) {
    this.hmac = hmac;
    this.integrity = hmac.algorithm;
    this.icvLength = hmac.icvLength;
  }

  payloadLengthOk(n: number): boolean {
    return n >= 2;
  }

  writeIv(): void {}

  seal(buf: Uint8Array, esp: number, _ivEnd: number, end: number, seqHigh: number): void {
    this.hmac.macOf(buf, esp, end, seqHigh, buf, end);
  }

  open(buf: Uint8Array, esp: number, _ivEnd: number, icvAt: number, seqHigh: number): boolean {
    this.hmac.macOf(buf, esp, icvAt, seqHigh, this.icv, 0);
    return icvEqual(this.icv, 0, buf, icvAt, this.icvLength);
  }
}

/** Builds a suite; throws RangeError for a combination or key length that cannot work (configuration errors). */
export function createEspTransform(p: EspTransformParams): EspTransform {
  if (p.encryption === 'aes-gcm-16') {
    if (p.integrity !== undefined) {
      throw new RangeError('aes-gcm-16 authenticates by itself: give no integrity algorithm');
    }
    if (p.encryptionKey === undefined) throw new RangeError('aes-gcm-16 needs a key');
    if (useNative(p.implementation, nativeGcmAvailable)) return new NativeGcmTransform(p.encryptionKey, p.iv);
    return new AesGcm16(p.encryptionKey, p.iv);
  }
  if (p.integrity === undefined || p.integrityKey === undefined) {
    // RFC 4303 3.2: confidentiality without integrity invites cut-and-paste attacks.
    throw new RangeError(`${p.encryption} needs an integrity algorithm and key`);
  }
  if (p.encryption === 'aes-cbc') {
    if (p.encryptionKey === undefined) throw new RangeError('aes-cbc needs a key');
    if (useNative(p.implementation, nativeCbcAvailable)) {
      // Checked here so that both paths refuse a bad key with the same words.
      checkIntegrityKey(p.integrity, p.integrityKey);
      return new NativeCbcHmacTransform(p.encryptionKey, p.integrity, p.integrityKey, p.iv);
    }
    return new AesCbcHmac(p.encryptionKey, new Hmac(p.integrity, p.integrityKey, 'node'), p.iv);
  }
  const hmac = new Hmac(p.integrity, p.integrityKey, p.implementation);
  if (p.encryption === 'null') {
    if (p.encryptionKey !== undefined && p.encryptionKey.length > 0) {
      throw new RangeError('null encryption takes no key');
    }
    return new NullHmac(hmac);
  }
  throw new RangeError(`unknown ESP encryption ${String(p.encryption)}`);
}
