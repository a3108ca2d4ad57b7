/**
 * Big-endian (network order) reads and writes on a Uint8Array. Written out
 * by hand rather than through DataView: V8 inlines these into the accessors,
 * and a DataView per packet would be an allocation.
 */

export const u16 = (b: Uint8Array, i: number): number => (b[i]! << 8) | b[i + 1]!;

export const u32 = (b: Uint8Array, i: number): number =>
  ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;

export function put16(b: Uint8Array, i: number, v: number): void {
  b[i] = v >>> 8;
  b[i + 1] = v;
}

export function put32(b: Uint8Array, i: number, v: number): void {
  b[i] = v >>> 24;
  b[i + 1] = v >>> 16;
  b[i + 2] = v >>> 8;
  b[i + 3] = v;
}

/** Copies `data` to buf[at] unless it already is that very memory (a payload parsed in place). */
export function copyUnlessInPlace(data: Uint8Array, buf: Uint8Array, at: number): void {
  if (data.buffer === buf.buffer && data.byteOffset === buf.byteOffset + at) return;
  buf.set(data, at);
}
