/**
 * Shared by the wire modules' hostile-input tests: a buffer that throws on
 * any read outside its allowed window (so an out-of-bounds accessor fails the
 * test), and a small seeded generator so every run mutates the same way.
 */

export function guarded(b: Uint8Array, lo: number, hi: number): Uint8Array {
  return new Proxy(b, {
    get(t, p) {
      if (typeof p === 'string' && /^\d+$/.test(p)) {
        const i = Number(p);
        if (i < lo || i >= hi) throw new Error(`read at ${i} outside [${lo}, ${hi})`);
        return t[i];
      }
      const v = Reflect.get(t, p, t) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
}

export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
