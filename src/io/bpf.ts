/**
 * BPF objects through distnat's libbpf binding, an addon of its own
 * (distnat_bpf.node: native-setup/addon/src/bpf.cc), loaded on first use so
 * that a machine without libbpf1 keeps the packet I/O addon and the TUN
 * path (docs/ebpf.md, "libbpf at run time"): load an object built by
 * native-setup/bpf/build.sh, attach its programs to an interface (tc clsact
 * or XDP), and work its maps (one element, batches, a dump, a shared
 * mapping). Only the control plane calls this; packets never pass here.
 *
 * Anything that keeps the object from loading (the addon or the object not
 * built, libbpf missing, no privilege, a kernel without BPF or without a helper the
 * programs use, the verifier saying no) is a BpfUnavailableError: a daemon
 * asked for the eBPF data path turns it into one log line and runs on the
 * TUN path instead. Failures of a loaded object are BpfError.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { addonDir } from './native.ts';

/** Why the eBPF data path cannot be had here. */
export type BpfUnavailableReason =
  'no-addon' | 'no-libbpf' | 'not-built' | 'no-privilege' | 'no-kernel-support' | 'rejected' | 'no-interface';

export class BpfUnavailableError extends Error {
  override name = 'BpfUnavailableError';
  constructor(
    readonly reason: BpfUnavailableReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A map or attach operation of a loaded object failed. `code` is the errno name. */
export class BpfError extends Error {
  override name = 'BpfError';
  constructor(
    message: string,
    readonly code: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Flags of update(): BPF_ANY, BPF_NOEXIST, BPF_EXIST. */
export const BpfUpdate = { Any: 0, NoExist: 1, Exist: 2 } as const;

export interface BpfMapInfo {
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  readonly id: number;
  readonly name: string;
}

/** BPF map types this code names (include/uapi/linux/bpf.h). */
export const BpfMapType = { Hash: 1, Array: 2, PercpuArray: 6, LruHash: 9 } as const;
export const BPF_F_MMAPABLE = 1 << 10;

/**
 * One map. Keys and values are the bytes the kernel sees (host byte order
 * for numbers unless the layout says otherwise); per-CPU values are
 * `valueSize` rounded up to 8, once per possible CPU, back to back.
 */
export interface BpfMap {
  readonly info: BpfMapInfo;
  /** Bytes of one value as lookup() fills it: per-CPU maps hold one per possible CPU. */
  readonly valueBytes: number;
  /** True and `value` filled, or false when the key is absent. */
  lookup(key: Uint8Array, value: Uint8Array): boolean;
  update(key: Uint8Array, value: Uint8Array, flags?: number): void;
  /** True when the key was there. */
  delete(key: Uint8Array): boolean;
  /** `count` keys and values packed back to back, in one system call. Returns the count. */
  updateBatch(keys: Uint8Array, values: Uint8Array, count: number, flags?: number): number;
  /** Deletes those of `count` packed keys that are there; returns how many were. */
  deleteKeys(keys: Uint8Array, count: number): number;
  /** Up to `max` entries, keys and values packed. */
  dump(max: number): { keys: Uint8Array; values: Uint8Array; count: number };
  /** The values of a BPF_F_MMAPABLE array, shared with the programs (no copy, no system call to read). */
  mmap(writable?: boolean): ArrayBuffer;
  /** Kernel memory charged to the map (fdinfo's memlock), in bytes, or undefined. */
  memoryBytes(): number | undefined;
}

export interface BpfProgramInfo {
  readonly id: number;
  readonly name: string;
  /** Summed over runs while BPF statistics are on (enableBpfStats). */
  readonly runTimeNs: number;
  readonly runCount: number;
  readonly jited: boolean;
}

export interface BpfProgram {
  readonly name: string;
  readonly fd: number;
  info(): BpfProgramInfo;
}

export interface BpfObject {
  readonly path: string;
  program(name: string): BpfProgram;
  map(name: string): BpfMap;
  /** Closes the object's fds. Programs still attached stay attached until detached. */
  close(): void;
}

interface BpfBinding {
  version(): number;
  bpfObjectOpen(path: string, maxEntries: Record<string, number>): object;
  bpfObjectClose(handle: object): void;
  bpfProgramFd(handle: object, name: string): number;
  bpfMapFd(handle: object, name: string): number;
  bpfMapInfo(fd: number): BpfMapInfo;
  bpfProgInfo(fd: number): BpfProgramInfo;
  bpfMapLookup(fd: number, key: Uint8Array, value: Uint8Array): boolean;
  bpfMapUpdate(fd: number, key: Uint8Array, value: Uint8Array, flags: number): void;
  bpfMapDelete(fd: number, key: Uint8Array): boolean;
  bpfMapUpdateBatch(fd: number, keys: Uint8Array, values: Uint8Array, count: number, flags: number): number;
  bpfMapDeleteKeys(fd: number, keys: Uint8Array, count: number): number;
  bpfMapDump(fd: number, keys: Uint8Array, values: Uint8Array, max: number): number;
  bpfMapMmap(fd: number, bytes: number, writable: boolean): ArrayBuffer;
  bpfNumPossibleCpus(): number;
  bpfEnableStats(): number;
  bpfTcAttach(ifindex: number, ingress: boolean, progFd: number, handle: number, priority: number): number;
  bpfTcDetach(ifindex: number, ingress: boolean, handle: number, priority: number): boolean;
  bpfTcQuery(ifindex: number, ingress: boolean, handle: number, priority: number): number;
  bpfXdpAttach(ifindex: number, progFd: number, flags: number): void;
  bpfXdpDetach(ifindex: number, flags: number): void;
  bpfXdpQuery(ifindex: number, flags: number): number;
  bpfCloseFd(fd: number): void;
}

/** native-setup/addon/src/bpf-addon.cc's kBpfBindingVersion. */
export const BPF_BINDING_VERSION = 1;

/** Where native-setup/bpf/build.sh put `<name>.bpf.o` (DISTNAT_BPF_DIR overrides). */
export function bpfObjectPath(name: string): string {
  const dir = process.env['DISTNAT_BPF_DIR'] ?? `${addonDir()}build/Release/bpf/`;
  return `${dir.endsWith('/') ? dir : `${dir}/`}${name}.bpf.o`;
}

/** The BPF addon's file (DISTNAT_BPF_ADDON overrides). */
export function bpfAddonPath(): string {
  return process.env['DISTNAT_BPF_ADDON'] ?? `${addonDir()}build/Release/distnat_bpf.node`;
}

let binding: BpfBinding | undefined;

function bpfBinding(): BpfBinding {
  if (binding !== undefined) return binding;
  const path = bpfAddonPath();
  let loaded: BpfBinding;
  try {
    loaded = createRequire(import.meta.url)(path) as BpfBinding;
  } catch (e) {
    const message = (e as Error).message;
    // The dynamic loader names the library it could not find.
    if (/libbpf\.so/.test(message))
      throw new BpfUnavailableError(
        'no-libbpf',
        `libbpf is not installed (apt-get install libbpf1): ${message}`,
        { cause: e },
      );
    throw new BpfUnavailableError(
      'no-addon',
      `the BPF addon is not built (${path}): \`npx node-gyp rebuild --directory native-setup/addon\` ` +
        `(needs libbpf-dev and clang). Cause: ${message}`,
      { cause: e },
    );
  }
  const version = typeof loaded.version === 'function' ? loaded.version() : 0;
  if (version !== BPF_BINDING_VERSION)
    throw new BpfUnavailableError(
      'no-addon',
      `the BPF addon at ${path} is version ${version}, this code needs ${BPF_BINDING_VERSION}: ` +
        'rebuild it with `npx node-gyp rebuild --directory native-setup/addon`',
    );
  binding = loaded;
  return binding;
}

function codeOf(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

function wrap(what: string, e: unknown): BpfError {
  return new BpfError(`${what}: ${(e as Error).message}`, codeOf(e), { cause: e });
}

/** What a failed load means for the person running the daemon. */
function unavailable(path: string, e: unknown): BpfUnavailableError {
  const code = codeOf(e);
  const message = (e as Error).message;
  if (code === 'EPERM' || code === 'EACCES')
    return new BpfUnavailableError(
      'no-privilege',
      `loading ${path} needs root or CAP_BPF and CAP_NET_ADMIN: ${message}`,
      { cause: e },
    );
  if (code === 'ENOSYS' || code === 'EOPNOTSUPP' || code === 'ENOTSUPP')
    return new BpfUnavailableError('no-kernel-support', `this kernel cannot run ${path}: ${message}`, {
      cause: e,
    });
  return new BpfUnavailableError('rejected', `the kernel refused ${path}: ${message}`, { cause: e });
}

/** Possible CPUs: per-CPU values come in this many copies. */
export function possibleCpus(): number {
  return bpfBinding().bpfNumPossibleCpus();
}

/**
 * Opens and loads an object file. `maxEntries` resizes maps before the load
 * (a map's size is fixed once loaded). Throws BpfUnavailableError.
 */
export function openBpfObject(
  path: string,
  options: { maxEntries?: Record<string, number> } = {},
): BpfObject {
  const b = bpfBinding();
  if (!existsSync(path))
    throw new BpfUnavailableError(
      'not-built',
      `${path} is not built: the addon's build makes it with clang (apt-get install clang llvm libbpf-dev, then \`npx node-gyp rebuild --directory native-setup/addon\`)`,
    );
  let handle: object;
  try {
    handle = b.bpfObjectOpen(path, options.maxEntries ?? {});
  } catch (e) {
    throw unavailable(path, e);
  }
  return new NativeObject(b, handle, path);
}

class NativeObject implements BpfObject {
  readonly #maps = new Map<string, BpfMap>();
  readonly #programs = new Map<string, BpfProgram>();
  #open = true;

  constructor(
    private readonly b: BpfBinding,
    private readonly handle: object,
    readonly path: string,
  ) {}

  program(name: string): BpfProgram {
    let p = this.#programs.get(name);
    if (p === undefined) {
      const fd = this.#call(`program ${name}`, () => this.b.bpfProgramFd(this.handle, name));
      const b = this.b;
      p = { name, fd, info: () => b.bpfProgInfo(fd) };
      this.#programs.set(name, p);
    }
    return p;
  }

  map(name: string): BpfMap {
    let m = this.#maps.get(name);
    if (m === undefined) {
      const fd = this.#call(`map ${name}`, () => this.b.bpfMapFd(this.handle, name));
      m = new NativeMap(this.b, fd, this.b.bpfMapInfo(fd));
      this.#maps.set(name, m);
    }
    return m;
  }

  close(): void {
    if (!this.#open) return;
    this.#open = false;
    this.b.bpfObjectClose(this.handle);
  }

  #call<T>(what: string, f: () => T): T {
    if (!this.#open) throw new BpfError(`${what}: the object ${this.path} is closed`, 'EBADF');
    try {
      return f();
    } catch (e) {
      throw wrap(`${what} in ${this.path}`, e);
    }
  }
}

const PERCPU_TYPES = new Set<number>([5, BpfMapType.PercpuArray, 10, 21]);

class NativeMap implements BpfMap {
  readonly valueBytes: number;

  constructor(
    private readonly b: BpfBinding,
    private readonly fd: number,
    readonly info: BpfMapInfo,
  ) {
    this.valueBytes = PERCPU_TYPES.has(info.type)
      ? Math.ceil(info.valueSize / 8) * 8 * b.bpfNumPossibleCpus()
      : info.valueSize;
  }

  lookup(key: Uint8Array, value: Uint8Array): boolean {
    this.#sized(key, value, 1);
    return this.#call('lookup', () => this.b.bpfMapLookup(this.fd, key, value));
  }

  update(key: Uint8Array, value: Uint8Array, flags: number = BpfUpdate.Any): void {
    this.#sized(key, value, 1);
    this.#call('update', () => this.b.bpfMapUpdate(this.fd, key, value, flags));
  }

  delete(key: Uint8Array): boolean {
    if (key.length !== this.info.keySize)
      throw new RangeError(`${this.info.name}: key is not ${this.info.keySize} bytes`);
    return this.#call('delete', () => this.b.bpfMapDelete(this.fd, key));
  }

  updateBatch(keys: Uint8Array, values: Uint8Array, count: number, flags: number = BpfUpdate.Any): number {
    if (count === 0) return 0;
    const k = keys.subarray(0, count * this.info.keySize);
    const v = values.subarray(0, count * this.valueBytes);
    this.#sized(k, v, count);
    return this.#call('batch update', () => this.b.bpfMapUpdateBatch(this.fd, k, v, count, flags));
  }

  deleteKeys(keys: Uint8Array, count: number): number {
    if (count === 0) return 0;
    const k = keys.subarray(0, count * this.info.keySize);
    if (k.length !== count * this.info.keySize) throw new RangeError(`${this.info.name}: too few key bytes`);
    return this.#call('delete', () => this.b.bpfMapDeleteKeys(this.fd, k, count));
  }

  dump(max: number): { keys: Uint8Array; values: Uint8Array; count: number } {
    const keys = new Uint8Array(Math.max(1, max) * this.info.keySize);
    const values = new Uint8Array(Math.max(1, max) * this.valueBytes);
    const count = max === 0 ? 0 : this.#call('dump', () => this.b.bpfMapDump(this.fd, keys, values, max));
    return { keys, values, count };
  }

  mmap(writable = false): ArrayBuffer {
    if ((this.info.flags & BPF_F_MMAPABLE) === 0)
      throw new BpfError(`${this.info.name} is not a BPF_F_MMAPABLE array`, 'EINVAL');
    return this.#call('mmap', () =>
      this.b.bpfMapMmap(this.fd, this.info.valueSize * this.info.maxEntries, writable),
    );
  }

  memoryBytes(): number | undefined {
    try {
      const text = readFileSync(`/proc/self/fdinfo/${this.fd}`, 'utf8');
      const m = /^memlock:\s+(\d+)/m.exec(text);
      return m ? Number(m[1]) : undefined;
    } catch {
      return undefined;
    }
  }

  #sized(keys: Uint8Array, values: Uint8Array, count: number): void {
    if (keys.length !== count * this.info.keySize)
      throw new RangeError(`${this.info.name}: keys must be ${count} x ${this.info.keySize} bytes`);
    if (values.length !== count * this.valueBytes)
      throw new RangeError(`${this.info.name}: values must be ${count} x ${this.valueBytes} bytes`);
  }

  #call<T>(what: string, f: () => T): T {
    try {
      return f();
    } catch (e) {
      throw wrap(`${this.info.name}: ${what}`, e);
    }
  }
}

/** An interface's index in this namespace, or undefined. */
export function interfaceIndex(name: string): number | undefined {
  try {
    const v = Number(readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8').trim());
    return Number.isInteger(v) && v > 0 ? v : undefined;
  } catch {
    return undefined;
  }
}

function requireIndex(name: string): number {
  const i = interfaceIndex(name);
  if (i === undefined) throw new BpfUnavailableError('no-interface', `no interface ${name} here`);
  return i;
}

/** Something attached to an interface; detach() is safe to call twice and after the interface went. */
export interface Attachment {
  readonly interfaceName: string;
  readonly programId: number;
  /** The program attached now, if it is still ours (0 when nothing is). */
  attachedId(): number;
  detach(): void;
}

/** tc filters of distnat: one handle, a priority that keeps them ahead of others by default. */
export const TC_HANDLE = 0xd157;
export const TC_PRIORITY = 1;

/**
 * Attaches `program` as a direct-action cls_bpf filter on the clsact qdisc of
 * an interface (made when missing), replacing distnat's filter of the same
 * handle and priority (a previous run's, left by a crash).
 */
export function attachTc(
  interfaceName: string,
  direction: 'ingress' | 'egress',
  program: BpfProgram,
  options: { handle?: number; priority?: number } = {},
): Attachment {
  const b = bpfBinding();
  const ifindex = requireIndex(interfaceName);
  const handle = options.handle ?? TC_HANDLE;
  const priority = options.priority ?? TC_PRIORITY;
  const ingress = direction === 'ingress';
  let programId: number;
  try {
    programId = b.bpfTcAttach(ifindex, ingress, program.fd, handle, priority);
  } catch (e) {
    throw wrap(`attaching ${program.name} to ${interfaceName} ${direction}`, e);
  }
  let attached = true;
  return {
    interfaceName,
    programId,
    attachedId: () => b.bpfTcQuery(ifindex, ingress, handle, priority),
    detach: () => {
      if (!attached) return;
      attached = false;
      // Only our own filter: a newer run may have replaced it already.
      if (b.bpfTcQuery(ifindex, ingress, handle, priority) === programId)
        b.bpfTcDetach(ifindex, ingress, handle, priority);
    },
  };
}

/** XDP attach modes (XDP_FLAGS_*). */
export const XdpMode = { Generic: 2, Native: 4 } as const;

export function attachXdp(
  interfaceName: string,
  program: BpfProgram,
  mode: number = XdpMode.Native,
): Attachment {
  const b = bpfBinding();
  const ifindex = requireIndex(interfaceName);
  try {
    b.bpfXdpAttach(ifindex, program.fd, mode);
  } catch (e) {
    throw wrap(`attaching ${program.name} (XDP) to ${interfaceName}`, e);
  }
  const programId = program.info().id;
  let attached = true;
  return {
    interfaceName,
    programId,
    attachedId: () => b.bpfXdpQuery(ifindex, mode),
    detach: () => {
      if (!attached) return;
      attached = false;
      if (b.bpfXdpQuery(ifindex, mode) === programId) b.bpfXdpDetach(ifindex, mode);
    },
  };
}

/**
 * Turns on the kernel's per-program run time and count (BPF_ENABLE_STATS)
 * until the returned function is called. For measurements: it costs two
 * clock reads per program run.
 */
export function enableBpfStats(): () => void {
  const b = bpfBinding();
  const fd = b.bpfEnableStats();
  let on = true;
  return () => {
    if (!on) return;
    on = false;
    b.bpfCloseFd(fd);
  };
}
