/**
 * What both AES-GCM-16 suites (the Node one in esp-transform.ts and the
 * native one in native-gcm.ts) share before any cipher is touched: the key
 * length check and the explicit IV.
 *
 * The IV is the 64-bit sequence number XOR a per-SA random mask: unique per
 * key as RFC 4106 3.1 demands, and unlikely to repeat across restarts of a
 * manually keyed SA (whose counter starts again at 1) unlike the plain
 * counter.
 */
import { randomBytes } from 'node:crypto';
import { put32 } from '../wire/bytes.ts';
import type { IvSource } from './types.ts';

const TWO_32 = 0x1_0000_0000;

/** The AES key size of a key-and-salt (RFC 4106 8.1); throws RangeError for any other length. */
export function gcmKeyBits(keyAndSalt: Uint8Array): 128 | 192 | 256 {
  const bits = (keyAndSalt.length - 4) * 8;
  if (bits !== 128 && bits !== 192 && bits !== 256) {
    throw new RangeError(
      `aes-gcm-16 needs a 16, 24 or 32-byte key plus a 4-byte salt, got ${keyAndSalt.length} bytes`,
    );
  }
  return bits;
}

export class MaskedSequenceIv {
  private readonly maskHigh: number;
  private readonly maskLow: number;

  /** `fixed` overrides the IV (known-answer tests). */
  constructor(private readonly fixed: IvSource | undefined) {
    const mask = randomBytes(8);
    this.maskHigh = mask.readUInt32BE(0);
    this.maskLow = mask.readUInt32BE(4);
  }

  /** The 8-byte IV for sequence number `seq` (up to 2^53), written at buf[at]. */
  write(buf: Uint8Array, at: number, seq: number): void {
    if (this.fixed !== undefined) return this.fixed(buf, at, seq);
    const low = seq >>> 0;
    put32(buf, at, ((seq - low) / TWO_32) ^ this.maskHigh);
    put32(buf, at + 4, low ^ this.maskLow);
  }
}
