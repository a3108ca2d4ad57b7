/**
 * In-memory doubles of BPF maps and objects (src/io/bpf.ts) with the
 * kernel's semantics where the control plane depends on them: arrays have
 * every key from 0 to maxEntries - 1 and cannot delete; hashes refuse a new
 * key when full (E2BIG); per-CPU values come once per CPU; a
 * BPF_F_MMAPABLE array's mmap() is its live storage. Lets the control plane
 * be tested without root or a kernel, and tests can play the programs' part
 * by writing into the maps.
 */
import type { BpfMap, BpfMapInfo, BpfObject, BpfProgram } from './bpf.ts';
import { BPF_F_MMAPABLE, BpfError, BpfMapType, BpfUpdate } from './bpf.ts';

export interface MemoryMapSpec {
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags?: number;
}

/** A hash key as a Map key: small keys as a number (fast), larger ones as hex. */
function keyOf(b: Uint8Array): number | string {
  if (b.length <= 6) {
    let n = 0;
    for (let i = 0; i < b.length; i++) n = n * 256 + b[i]!;
    return n;
  }
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

export class MemoryBpfMap implements BpfMap {
  readonly info: BpfMapInfo;
  readonly valueBytes: number;
  /** System calls a real map would have cost: one per call, batches included. */
  calls = 0;
  /** Called after each element changes, as a batch changes them one at a time in the kernel. */
  onElementChange: (() => void) | undefined;
  readonly #array: Uint8Array | undefined;
  readonly #hash = new Map<number | string, { key: Uint8Array; value: Uint8Array }>();

  constructor(name: string, spec: MemoryMapSpec, cpus = 2) {
    this.info = { ...spec, flags: spec.flags ?? 0, id: 0, name };
    const percpu = spec.type === BpfMapType.PercpuArray;
    this.valueBytes = percpu ? Math.ceil(spec.valueSize / 8) * 8 * cpus : spec.valueSize;
    const isArray = spec.type === BpfMapType.Array || percpu;
    this.#array = isArray ? new Uint8Array(spec.maxEntries * this.valueBytes) : undefined;
  }

  lookup(key: Uint8Array, value: Uint8Array): boolean {
    this.calls++;
    const v = this.#get(key);
    if (v === undefined) return false;
    value.set(v);
    return true;
  }

  update(key: Uint8Array, value: Uint8Array, flags: number = BpfUpdate.Any): void {
    this.calls++;
    this.#put(key, value, flags);
  }

  delete(key: Uint8Array): boolean {
    this.calls++;
    return this.#delete(key);
  }

  updateBatch(keys: Uint8Array, values: Uint8Array, count: number, flags: number = BpfUpdate.Any): number {
    this.calls++;
    const k = this.info.keySize;
    const v = this.valueBytes;
    for (let i = 0; i < count; i++)
      this.#put(keys.subarray(i * k, (i + 1) * k), values.subarray(i * v, (i + 1) * v), flags);
    return count;
  }

  deleteKeys(keys: Uint8Array, count: number): number {
    this.calls++;
    const k = this.info.keySize;
    let n = 0;
    for (let i = 0; i < count; i++) if (this.#delete(keys.subarray(i * k, (i + 1) * k))) n++;
    return n;
  }

  dump(max: number): { keys: Uint8Array; values: Uint8Array; count: number } {
    this.calls++;
    const keys = new Uint8Array(Math.max(1, max) * this.info.keySize);
    const values = new Uint8Array(Math.max(1, max) * this.valueBytes);
    let n = 0;
    if (this.#array !== undefined) {
      for (let i = 0; i < this.info.maxEntries && n < max; i++, n++) {
        new DataView(keys.buffer).setUint32(n * 4, i, true);
        values.set(this.#array.subarray(i * this.valueBytes, (i + 1) * this.valueBytes), n * this.valueBytes);
      }
    } else {
      for (const e of this.#hash.values()) {
        if (n >= max) break;
        keys.set(e.key, n * this.info.keySize);
        values.set(e.value, n * this.valueBytes);
        n++;
      }
    }
    return { keys, values, count: n };
  }

  mmap(): ArrayBuffer {
    if (this.#array === undefined || (this.info.flags & BPF_F_MMAPABLE) === 0)
      throw new BpfError(`${this.info.name} is not a BPF_F_MMAPABLE array`, 'EINVAL');
    return this.#array.buffer as ArrayBuffer;
  }

  memoryBytes(): number | undefined {
    return this.#array?.byteLength ?? this.#hash.size * (this.info.keySize + this.valueBytes);
  }

  /** Entries present (a hash's count; an array's size). */
  get size(): number {
    return this.#array !== undefined ? this.info.maxEntries : this.#hash.size;
  }

  #index(key: Uint8Array): number {
    if (key.length !== this.info.keySize) throw new RangeError(`${this.info.name}: bad key size`);
    const i = new DataView(key.buffer, key.byteOffset, 4).getUint32(0, true);
    return i < this.info.maxEntries ? i : -1;
  }

  #get(key: Uint8Array): Uint8Array | undefined {
    if (this.#array !== undefined) {
      const i = this.#index(key);
      return i < 0 ? undefined : this.#array.subarray(i * this.valueBytes, (i + 1) * this.valueBytes);
    }
    return this.#hash.get(keyOf(key))?.value;
  }

  #put(key: Uint8Array, value: Uint8Array, flags: number): void {
    if (value.length !== this.valueBytes) throw new RangeError(`${this.info.name}: bad value size`);
    if (this.#array !== undefined) {
      const i = this.#index(key);
      if (i < 0) throw new BpfError(`${this.info.name}: index out of range`, 'E2BIG');
      if (flags === BpfUpdate.NoExist) throw new BpfError(`${this.info.name}: exists`, 'EEXIST');
      this.#array.set(value, i * this.valueBytes);
      this.onElementChange?.();
      return;
    }
    const h = keyOf(key);
    const present = this.#hash.has(h);
    if (flags === BpfUpdate.NoExist && present) throw new BpfError(`${this.info.name}: exists`, 'EEXIST');
    if (flags === BpfUpdate.Exist && !present) throw new BpfError(`${this.info.name}: absent`, 'ENOENT');
    if (!present && this.#hash.size >= this.info.maxEntries && this.info.type !== BpfMapType.LruHash)
      throw new BpfError(`${this.info.name}: full`, 'E2BIG');
    this.#hash.set(h, { key: Uint8Array.from(key), value: Uint8Array.from(value) });
    this.onElementChange?.();
  }

  #delete(key: Uint8Array): boolean {
    if (this.#array !== undefined) throw new BpfError(`${this.info.name}: arrays cannot delete`, 'EINVAL');
    const deleted = this.#hash.delete(keyOf(key));
    if (deleted) this.onElementChange?.();
    return deleted;
  }
}

/** An object of named maps (and programs that do nothing), for code written against BpfObject. */
export class MemoryBpfObject implements BpfObject {
  readonly path = '(memory)';
  readonly maps = new Map<string, MemoryBpfMap>();
  closed = false;

  constructor(specs: Record<string, MemoryMapSpec>, cpus = 2) {
    for (const [name, spec] of Object.entries(specs)) this.maps.set(name, new MemoryBpfMap(name, spec, cpus));
  }

  map(name: string): MemoryBpfMap {
    const m = this.maps.get(name);
    if (m === undefined) throw new BpfError(`no map ${name}`, 'ENOENT');
    return m;
  }

  program(name: string): BpfProgram {
    return { name, fd: -1, info: () => ({ id: 0, name, runTimeNs: 0, runCount: 0, jited: false }) };
  }

  close(): void {
    this.closed = true;
  }
}
