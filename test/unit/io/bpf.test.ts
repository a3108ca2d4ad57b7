/**
 * src/io/bpf.ts's refusals, which a daemon turns into "staying on the TUN
 * path", and the in-memory map doubles' kernel semantics the control plane
 * relies on.
 */
import { describe, expect, it } from 'vitest';
import { BpfError, BpfMapType, BpfUnavailableError, BpfUpdate, openBpfObject } from '../../../src/io/bpf.ts';
import { MemoryBpfMap } from '../../../src/io/bpf-memory.ts';
import { nativeAvailable } from '../../../src/io/native.ts';

const key = (n: number): Uint8Array => {
  const k = new Uint8Array(4);
  new DataView(k.buffer).setUint32(0, n, true);
  return k;
};

describe('openBpfObject', () => {
  it.skipIf(!nativeAvailable())(
    'says an object that was not built is not built, as BpfUnavailableError',
    () => {
      let error: unknown;
      try {
        openBpfObject('/nonexistent/router.bpf.o');
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(BpfUnavailableError);
      expect((error as BpfUnavailableError).reason).toBe('not-built');
      expect((error as Error).message).toMatch(/clang/);
    },
  );
});

describe('MemoryBpfMap', () => {
  it('arrays hold every index and cannot delete; hashes refuse a new key when full', () => {
    const array = new MemoryBpfMap('a', { type: BpfMapType.Array, keySize: 4, valueSize: 4, maxEntries: 2 });
    const v = new Uint8Array(4);
    expect(array.lookup(key(1), v)).toBe(true);
    expect(array.lookup(key(2), v)).toBe(false);
    expect(() => array.delete(key(0))).toThrow(BpfError);
    const hash = new MemoryBpfMap('h', { type: BpfMapType.Hash, keySize: 4, valueSize: 4, maxEntries: 1 });
    hash.update(key(7), v);
    expect(() => hash.update(key(8), v)).toThrow(/full/);
    expect(() => hash.update(key(7), v, BpfUpdate.NoExist)).toThrow(/exists/);
    expect(hash.delete(key(7))).toBe(true);
    expect(hash.delete(key(7))).toBe(false);
  });

  it('per-CPU values come once per CPU', () => {
    const m = new MemoryBpfMap(
      'c',
      { type: BpfMapType.PercpuArray, keySize: 4, valueSize: 12, maxEntries: 1 },
      3,
    );
    expect(m.valueBytes).toBe(3 * 16);
  });
});
