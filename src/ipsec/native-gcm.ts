/**
 * ESP AES-GCM-16 (RFC 4106) through the native addon's AesGcmContext
 * (native-setup/addon/src/aead.cc): one OpenSSL context per SA with the key
 * schedule kept, only the nonce loaded per packet, the packet sealed and
 * opened where it lies. Same bytes as the Node suite in esp-transform.ts,
 * which stays the reference and the fallback when the addon is not built.
 *
 *   esp        ivEnd                              end (seal) / icvAt (open)
 *   | SPI | Seq | IV | payload | pad | len | nh | ICV |
 *               \___ encrypted and authenticated, AAD = SPI, [Seq hi,] Seq
 */
import { AeadResult, loadNative, nativeAvailable, type NativeAesGcmContext } from '../io/native.ts';
import type { EspTransform, IvSource } from './types.ts';
import { gcmKeyBits, MaskedSequenceIv } from './gcm-iv.ts';

/** Status codes of AesGcmContext.seal / .open. */

let available: boolean | undefined;

/** Whether the loaded addon has AesGcmContext (an older build does not). */
export function nativeGcmAvailable(): boolean {
  available ??= nativeAvailable() && typeof loadNative().AesGcmContext === 'function';
  return available;
}

export class NativeGcmTransform implements EspTransform {
  readonly encryption = 'aes-gcm-16' as const;
  readonly integrity = null;
  readonly ivLength = 8;
  readonly icvLength = 16;
  readonly blockSize = 4;
  private readonly ctx: NativeAesGcmContext;
  private readonly iv: MaskedSequenceIv;

  /** Throws RangeError for a bad key length, NativeAddonError when the addon lacks AesGcmContext. */
  constructor(keyAndSalt: Uint8Array, iv: IvSource | undefined) {
    gcmKeyBits(keyAndSalt);
    const Context = loadNative().AesGcmContext;
    if (Context === undefined) throw new RangeError('the native addon has no AesGcmContext: rebuild it');
    this.ctx = new Context(keyAndSalt);
    this.iv = new MaskedSequenceIv(iv);
  }

  payloadLengthOk(n: number): boolean {
    return n >= 2;
  }

  writeIv(buf: Uint8Array, at: number, seq: number): void {
    this.iv.write(buf, at, seq);
  }

  seal(buf: Uint8Array, esp: number, ivEnd: number, end: number, seqHigh: number): void {
    const status = this.ctx.seal(buf, esp, ivEnd, end, seqHigh);
    // The engine has checked the room before it gets here, so a failure is a
    // broken invariant (or a closed SA), not a bad packet: sending the
    // packet half-sealed would be worse than stopping.
    if (status !== AeadResult.Done) throw new Error(`native AES-GCM seal failed with status ${status}`);
  }

  open(buf: Uint8Array, esp: number, ivEnd: number, icvAt: number, seqHigh: number): boolean {
    return this.ctx.open(buf, esp, ivEnd, icvAt, seqHigh) === AeadResult.Done;
  }

  /** Frees the OpenSSL context now rather than at garbage collection; the transform is unusable after. */
  close(): void {
    this.ctx.close();
  }
}
