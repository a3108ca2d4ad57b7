/**
 * ESP AES-CBC (RFC 3602) with HMAC integrity (RFC 4868, RFC 2404) through
 * the native addon's AesCbcHmacContext (native-setup/addon/src/cbc-hmac.cc):
 * the AES key schedule and the keyed HMAC states built once per SA, the
 * packet sealed (encrypt-then-MAC) or opened (ICV checked in constant time,
 * then decrypted) where it lies, in one call. Same bytes as the Node suite
 * in esp-transform.ts, which stays the reference and the fallback when the
 * addon is not built.
 *
 *   esp        ivEnd                              end (seal) / icvAt (open)
 *   | SPI | Seq | IV | payload | pad | len | nh | ICV |
 *               \___ encrypted ________________/
 *   \___ authenticated, + [Seq hi] _______________/
 *
 * IVs: unless a fixed IvSource is given (known-answer tests), the context
 * draws each IV inside seal from its own pool of OpenSSL DRBG output, so
 * writeIv has nothing to do; why that is a safe CBC IV is in cbc-hmac.cc.
 */
import { AeadResult, loadNative, nativeAvailable, type NativeAesCbcHmacContext } from '../io/native.ts';
import type { EspTransform, IntegrityAlgorithm, IvSource } from './types.ts';
import { integrityIcvLength } from './hmac.ts';

let available: boolean | undefined;

/** Whether the loaded addon has AesCbcHmacContext (an older build does not). */
export function nativeCbcAvailable(): boolean {
  available ??= nativeAvailable() && typeof loadNative().AesCbcHmacContext === 'function';
  return available;
}

export class NativeCbcHmacTransform implements EspTransform {
  readonly encryption = 'aes-cbc' as const;
  readonly integrity: IntegrityAlgorithm;
  readonly ivLength = 16;
  readonly icvLength: number;
  readonly blockSize = 16;
  private readonly ctx: NativeAesCbcHmacContext;
  private readonly ivSource: IvSource | undefined;

  /** Throws RangeError for a bad key or algorithm, or when the addon lacks AesCbcHmacContext. */
  constructor(
    key: Uint8Array,
    integrity: IntegrityAlgorithm,
    integrityKey: Uint8Array,
    iv: IvSource | undefined,
  ) {
    if (key.length !== 16 && key.length !== 24 && key.length !== 32) {
      throw new RangeError(`aes-cbc needs a 16, 24 or 32-byte key, got ${key.length}`);
    }
    const Context = loadNative().AesCbcHmacContext;
    if (Context === undefined) throw new RangeError('the native addon has no AesCbcHmacContext: rebuild it');
    this.ctx = new Context(key, integrity, integrityKey, iv === undefined);
    this.integrity = integrity;
    this.icvLength = integrityIcvLength(integrity);
    this.ivSource = iv;
  }

  payloadLengthOk(n: number): boolean {
    return n >= 16 && n % 16 === 0;
  }

  writeIv(buf: Uint8Array, at: number, seq: number): void {
    if (this.ivSource !== undefined) this.ivSource(buf, at, seq);
  }

  seal(buf: Uint8Array, esp: number, ivEnd: number, end: number, seqHigh: number): void {
    const status = this.ctx.seal(buf, esp, ivEnd, end, seqHigh);
    // The engine has checked the room and the block alignment before it
    // gets here, so a failure is a broken invariant (or a closed SA), not a
    // bad packet: sending the packet half-sealed would be worse than stopping.
    if (status !== AeadResult.Done) throw new Error(`native AES-CBC seal failed with status ${status}`);
  }

  open(buf: Uint8Array, esp: number, ivEnd: number, icvAt: number, seqHigh: number): boolean {
    return this.ctx.open(buf, esp, ivEnd, icvAt, seqHigh) === AeadResult.Done;
  }

  /** Frees the OpenSSL state now rather than at garbage collection; the transform is unusable after. */
  close(): void {
    this.ctx.close();
  }
}
