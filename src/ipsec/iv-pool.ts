import { randomFillSync } from 'node:crypto';

/**
 * Random bytes for CBC initialisation vectors (RFC 3602 2.1 wants them
 * unpredictable). One `randomFillSync` costs about as much for 4 KiB as for
 * 16 bytes (~2 us), so the pool is refilled in bulk and each IV costs a
 * copy.
 */
const POOL = new Uint8Array(4096);
let used = POOL.length;

/** Writes `length` (at most 4096) random bytes to out[at]. */
export function fillRandom(out: Uint8Array, at: number, length: number): void {
  if (used + length > POOL.length) {
    randomFillSync(POOL);
    used = 0;
  }
  for (let i = 0; i < length; i++) out[at + i] = POOL[used + i]!;
  // Bytes handed out once are not handed out again.
  used += length;
}
