/**
 * Loader and typings for the native binding in native-setup/addon: TUN
 * set-up, raw sockets, the uv_poll-driven batch reader and batched writes.
 * The numbers both sides share are checked against the binding's own at
 * load, and the binding's version guards against a stale build.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Batch reader in native-setup/addon/src/poller.cc. */
export interface NativePoller {
  start(): void;
  stop(): void;
  /** Stops polling and drops the buffer references; the caller closes the fd afterwards. */
  close(): void;
  ref(): void;
  unref(): void;
}

/**
 * ESP AES-GCM-16 context of one SA (native-setup/addon/src/aead.cc), built
 * from the AES key followed by the 4-byte salt. seal/open work in place on
 * buf (IV at ivEnd - 8, AAD from the ESP header at esp, seqHigh the ESN high
 * half or -1) and return 1 on success, 0 when open finds a bad ICV (buffer
 * unchanged), -1 for out-of-range offsets or a closed context, -2 when
 * OpenSSL fails. They never throw.
 */
export interface NativeAesGcmContext {
  seal(buf: Uint8Array, esp: number, ivEnd: number, end: number, seqHigh: number): number;
  open(buf: Uint8Array, esp: number, ivEnd: number, icvAt: number, seqHigh: number): number;
  close(): void;
}

/**
 * ESP AES-CBC + HMAC context of one SA (native-setup/addon/src/cbc-hmac.cc),
 * built from the AES key, the integrity algorithm's name and its key, and
 * whether seal draws the 16-byte IV itself (else the caller wrote it at
 * ivEnd - 16). seal encrypts buf[ivEnd, end) in place and writes the ICV of
 * buf[esp, end) (+ seqHigh when not -1) at end; open verifies the ICV at
 * icvAt, then decrypts. Status codes as NativeAesGcmContext's; never throw.
 */
export interface NativeAesCbcHmacContext {
  seal(buf: Uint8Array, esp: number, ivEnd: number, end: number, seqHigh: number): number;
  open(buf: Uint8Array, esp: number, ivEnd: number, icvAt: number, seqHigh: number): number;
  close(): void;
}

/**
 * A keyed IPsec HMAC (native-setup/addon/src/hmac.cc): mac writes the ICV of
 * buf[start, end), followed by the 32-bit `tail` unless it is -1, at
 * out[at]. Returns 1, or -1 for out-of-range offsets or a closed context,
 * -2 when OpenSSL fails; never throws.
 */
export interface NativeHmacContext {
  mac(buf: Uint8Array, start: number, end: number, tail: number, out: Uint8Array, at: number): number;
  close(): void;
}

export interface NativeBinding {
  version(): number;
  tunOpen(name: string, flags: number): { fd: number; name: string };
  tunSetOffload(fd: number, tunFlags: number): void;
  tunSetVnetHdrSize(fd: number, size: number): void;
  tunSetPersist(fd: number, persist: number): void;
  linkSetMtu(name: string, mtu: number): void;
  linkSetUp(name: string, up: boolean): void;
  linkSetTxQueueLen(name: string, length: number): void;
  closeFd(fd: number): void;
  rawOpen(protocol: number, rcvbuf: number, sndbuf: number, device: string): number;
  socketBuffers(fd: number): [number, number];
  socketDrops(fd: number): number;
  /** SO_ATTACH_FILTER: classic BPF, 8 bytes per instruction (struct sock_filter, host order). */
  socketAttachFilter(fd: number, program: Uint8Array): void;
  Poller: new (
    fd: number,
    mode: number,
    bytes: Uint8Array,
    slotSize: number,
    headroom: number,
    prefix: number,
    slotCount: number,
    lengths: Int32Array,
    counters: Float64Array,
    callback: (count: number) => void,
  ) => NativePoller;
  writeBatch(
    fd: number,
    mode: number,
    prefix: number,
    bytes: Uint8Array,
    pairs: Int32Array,
    count: number,
    counters: Float64Array,
  ): number;
  tcp4Segment(
    src: Uint8Array,
    offset: number,
    length: number,
    gsoSize: number,
    out: Uint8Array,
    slotSize: number,
    headroom: number,
    firstSlot: number,
    maxSlots: number,
    lengths: Int32Array,
  ): number;
  completeChecksum(
    bytes: Uint8Array,
    offset: number,
    length: number,
    csumStart: number,
    csumOffset: number,
  ): number;
  /** `flags`: CoalesceFlag bits. */
  ipv4Coalesce(
    src: Uint8Array,
    pairs: Int32Array,
    count: number,
    out: Uint8Array,
    slotSize: number,
    headroom: number,
    slotCount: number,
    outPairs: Int32Array,
    counters: Float64Array,
    flags: number,
  ): number;
  /** Absent in builds older than aead.cc. */
  AesGcmContext?: new (keyAndSalt: Uint8Array) => NativeAesGcmContext;
  /** Absent in builds older than cbc-hmac.cc. */
  AesCbcHmacContext?: new (
    key: Uint8Array,
    integrity: string,
    integrityKey: Uint8Array,
    randomIv: boolean,
  ) => NativeAesCbcHmacContext;
  /** Absent in builds older than hmac.cc. */
  HmacContext?: new (integrity: string, key: Uint8Array) => NativeHmacContext;
  /** The shared numbers as the binding was built with them (see NATIVE_LAYOUT). */
  layout(): unknown;
  /** One datagram to a service manager's notification socket (a path, or '@' + an abstract name). */
  sdNotify(socket: string, message: string): void;
}

export const BINDING_VERSION = 11;

/**
 * The numbers this code shares with the addon: tunOpen flags, poller and
 * writeBatch modes, counter slots and result codes. The addon defines them
 * once (native-setup/addon/src/layout.h) and reports them through
 * `layout()`; loadNative refuses a binding whose layout differs from this
 * typed copy, so the two cannot drift apart unnoticed.
 */
export const NATIVE_LAYOUT = {
  OpenFlag: { MultiQueue: 1, VnetHdr: 2 },
  PollMode: { Read: 0, Recvmmsg: 1 },
  RxCounter: { Wakeups: 0, Batches: 1, Packets: 2, Bytes: 3, Errors: 4, Truncated: 5, LastErrno: 6 },
  WriteMode: { Write: 0, WriteZeroHdr: 1, Sendmmsg: 2, WriteHdrInBuf: 3 },
  TxCounter: { Calls: 0, Packets: 1, Bytes: 2, Dropped: 3, Errors: 4, LastErrno: 5, Invalid: 6 },
  CoalesceCounter: { SegmentsIn: 0, SuperPackets: 1, SegmentsMerged: 2, BadChecksum: 3 },
  CoalesceFlag: { Udp: 1 },
  GsoError: { NotIpv4: -1, NotTcp: -2, BadLength: -3, BadSize: -4, NoRoom: -5, BadCsumOffset: -6 },
  AeadResult: { Done: 1, AuthFailed: 0, BadArgs: -1, CryptoFailed: -2 },
} as const;

export const {
  OpenFlag,
  PollMode,
  RxCounter,
  WriteMode,
  TxCounter,
  CoalesceCounter,
  CoalesceFlag,
  GsoError,
  AeadResult,
} = NATIVE_LAYOUT;
export const RX_COUNTERS = Object.keys(RxCounter).length;
export const TX_COUNTERS = Object.keys(TxCounter).length;
export const COALESCE_COUNTERS = Object.keys(CoalesceCounter).length;

/** Where the binding's layout differs from NATIVE_LAYOUT, as `group.name: binding value`; empty when it agrees. */
export function layoutDifferences(reported: unknown): string[] {
  const out: string[] = [];
  const got = (reported ?? {}) as Record<string, Record<string, unknown> | undefined>;
  const groups = new Set([...Object.keys(NATIVE_LAYOUT), ...Object.keys(got)]);
  for (const g of groups) {
    const mine = (NATIVE_LAYOUT as Record<string, Record<string, number>>)[g] ?? {};
    const theirs = got[g] ?? {};
    for (const n of new Set([...Object.keys(mine), ...Object.keys(theirs)]))
      if (mine[n] !== theirs[n]) out.push(`${g}.${n}: ${String(theirs[n])} (expected ${String(mine[n])})`);
  }
  return out;
}

/**
 * The addon is built inside the package, beside src/ and dist/: found by
 * walking up from this module, which may be src/io/native.ts (tests, tsx) or
 * a chunk of dist/ (the built command).
 */
export function addonDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'native-setup', 'addon', 'binding.gyp')))
      return join(dir, 'native-setup', 'addon') + '/';
    const up = dirname(dir);
    if (up === dir) return fileURLToPath(new URL('../../native-setup/addon/', import.meta.url));
    dir = up;
  }
}

/** Thrown when the binding is missing or out of date; says how to build it. */
export class NativeAddonError extends Error {
  override name = 'NativeAddonError';
}

let cached: NativeBinding | undefined;

/** The native binding; throws NativeAddonError with build instructions if it is not built. */
export function loadNative(): NativeBinding {
  if (cached) return cached;
  const path = process.env.DISTNAT_NATIVE_ADDON ?? `${addonDir()}build/Release/distnat_native.node`;
  let binding: NativeBinding;
  try {
    binding = createRequire(import.meta.url)(path) as NativeBinding;
  } catch (err) {
    throw new NativeAddonError(
      `distnat's native addon is not built (${path}): run \`npx node-gyp rebuild --directory native-setup/addon\` ` +
        `(needs make, g++ and python3) or \`npm install\`. Cause: ${(err as Error).message}`,
      { cause: err },
    );
  }
  const version = typeof binding.version === 'function' ? binding.version() : 0;
  if (version !== BINDING_VERSION) {
    throw new NativeAddonError(
      `distnat's native addon at ${path} is version ${version}, this code needs ${BINDING_VERSION}: ` +
        'rebuild it with `npx node-gyp rebuild --directory native-setup/addon`',
    );
  }
  const drift = layoutDifferences(binding.layout());
  if (drift.length > 0) {
    throw new NativeAddonError(
      `distnat's native addon at ${path} disagrees with this code on ${drift.join(', ')}: ` +
        'rebuild it with `npx node-gyp rebuild --directory native-setup/addon`',
    );
  }
  cached = binding;
  return binding;
}

/** True when the binding loads (for skipping tests that need it). */
export function nativeAvailable(): boolean {
  try {
    loadNative();
    return true;
  } catch {
    return false;
  }
}
