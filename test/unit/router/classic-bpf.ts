/**
 * A classic BPF interpreter (linux/filter.h semantics, as net/core/filter.c
 * runs a socket filter): the oracle for worker-share.test.ts. Loads past the
 * end make the program return 0, as in the kernel.
 */
import type { BpfInstruction } from '../../../src/router/data-path/worker-share.ts';

export function runBpf(prog: readonly BpfInstruction[], pkt: Uint8Array): number {
  let a = 0;
  let x = 0;
  const mem = new Uint32Array(16);
  const load = (at: number, size: number): number | undefined => {
    if (at < 0 || at + size > pkt.length) return undefined;
    let v = 0;
    for (let i = 0; i < size; i++) v = (v * 256 + pkt[at + i]!) >>> 0;
    return v;
  };
  for (let pc = 0; pc < prog.length; pc++) {
    const { code, jt, jf, k } = prog[pc]!;
    const cls = code & 0x07;
    const size = [4, 2, 1][(code >> 3) & 0x03] ?? 4;
    const mode = code & 0xe0;
    const src = code & 0x08 ? x : k;
    switch (cls) {
      case 0x00: {
        // LD
        let v: number | undefined;
        if (mode === 0x00) v = k;
        else if (mode === 0x20) v = load(k, size);
        else if (mode === 0x40) v = load(x + k, size);
        else if (mode === 0x60) v = mem[k]!;
        else if (mode === 0x80) v = pkt.length;
        if (v === undefined) return 0;
        a = v >>> 0;
        break;
      }
      case 0x01: {
        // LDX
        if (mode === 0x00) x = k;
        else if (mode === 0x60) x = mem[k]!;
        else if (mode === 0x80) x = pkt.length;
        else if (mode === 0xa0) {
          const b = load(k, 1);
          if (b === undefined) return 0;
          x = (b & 0xf) * 4;
        } else throw new Error(`ldx mode ${mode}`);
        break;
      }
      case 0x02:
        mem[k] = a;
        break;
      case 0x03:
        mem[k] = x;
        break;
      case 0x04: {
        const op = code & 0xf0;
        if (op === 0x00) a = (a + src) >>> 0;
        else if (op === 0x10) a = (a - src) >>> 0;
        else if (op === 0x20) a = Math.imul(a, src) >>> 0;
        else if (op === 0x30) a = src === 0 ? 0 : Math.floor(a / src) >>> 0;
        else if (op === 0x40) a = (a | src) >>> 0;
        else if (op === 0x50) a = (a & src) >>> 0;
        else if (op === 0x60) a = (a << src) >>> 0;
        else if (op === 0x70) a = a >>> src;
        else if (op === 0x90) a = src === 0 ? 0 : a % src;
        else if (op === 0xa0) a = (a ^ src) >>> 0;
        else throw new Error(`alu op ${op}`);
        break;
      }
      case 0x05: {
        const op = code & 0xf0;
        if (op === 0x00) {
          pc += k;
          break;
        }
        let taken: boolean;
        if (op === 0x10) taken = a === src >>> 0;
        else if (op === 0x20) taken = a > src >>> 0;
        else if (op === 0x30) taken = a >= src >>> 0;
        else if (op === 0x40) taken = (a & src) !== 0;
        else throw new Error(`jmp op ${op}`);
        pc += taken ? jt : jf;
        break;
      }
      case 0x06:
        return code & 0x10 ? a : k;
      case 0x07:
        if (code & 0x80) a = x;
        else x = a;
        break;
    }
  }
  return 0;
}
