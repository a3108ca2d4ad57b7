/**
 * Big-endian (network order) reads and writes on a Uint8Array. Written out
 * by hand rather than through DataView: V8 inlines these into the accessors,
 * and a DataView per packet would be an allocation.
 *
 * Field offsets. Each header module names the offsets of its fields as plain
 * module constants (`const PROTOCOL = 9`) and gathers them in one exported
 * object (`Ipv4Field`) for other modules. V8 compiles a module's own
 * unexported constants into the code as if they were literals; an exported
 * or imported binding is loaded from its module cell, with a check, at every
 * use, and an object's property takes more bytecode, which counts against
 * the budget V8 has for inlining a function into its callers. Per-packet
 * code elsewhere therefore copies the offsets it uses into constants of its
 * own (`const IP_SRC = Ipv4Field.SRC`) and reads `u32(buf, off + IP_SRC)`:
 * the same bytecode and machine code as a literal offset. (A reader
 * function such as `ipv4Src(buf, off)` is inlined too, but its own bytecode
 * counts against that budget once per call site, and the forwarders' loops
 * read a dozen fields.)
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
