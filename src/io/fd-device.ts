/**
 * What TUN devices and raw sockets share: an fd, a native batch reader over a
 * SlotBuffer, batched writes, counters in shared Float64Arrays, close.
 */
import { constants } from 'node:os';
import { loadNative, PollMode, RX_COUNTERS, RxCounter, TX_COUNTERS, TxCounter, WriteMode } from './native.ts';
import type { NativeBinding, NativePoller } from './native.ts';
import { SlotBuffer } from './slots.ts';
import { emptyStats } from './types.ts';
import type { BatchHandler, IoStats, PacketDevice } from './types.ts';

function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(constants.errno)) if (value === errno) return name;
  return `errno ${errno}`;
}

export interface FdDeviceConfig {
  name: string;
  fd: number;
  /** How to read: one read() per packet (TUN) or recvmmsg (sockets). */
  pollMode: (typeof PollMode)[keyof typeof PollMode];
  /** How sendBatch writes. */
  writeMode: (typeof WriteMode)[keyof typeof WriteMode];
  /** Bytes the kernel puts before each packet (virtio_net_hdr) or expects there. */
  prefix: number;
  slots: SlotBuffer;
  /** Called if the fd fails after set-up (the poller has stopped); default: throw from the event loop. */
  onError?: ((err: Error) => void) | undefined;
}

export class FdDevice implements PacketDevice {
  readonly name: string;
  readonly fd: number;
  readonly slots: SlotBuffer;
  protected readonly native: NativeBinding;
  protected readonly prefix: number;
  private readonly writeMode: number;
  private readonly rx = new Float64Array(RX_COUNTERS);
  protected readonly tx = new Float64Array(TX_COUNTERS);
  private readonly one = new Int32Array(2);
  private poller: NativePoller | undefined;
  private handler: BatchHandler | null = null;
  private referenced = true;
  private closed = false;

  constructor(config: FdDeviceConfig) {
    this.native = loadNative();
    this.name = config.name;
    this.fd = config.fd;
    this.slots = config.slots;
    this.prefix = config.prefix;
    this.writeMode = config.writeMode;
    const onError = config.onError;
    const slots = config.slots;
    this.poller = new this.native.Poller(
      config.fd,
      config.pollMode,
      slots.bytes,
      slots.slotSize,
      slots.headroom,
      config.prefix,
      slots.slotCount,
      slots.lengths,
      this.rx,
      (count: number) => {
        if (count > 0) {
          this.handler?.(count);
          return;
        }
        const code = errnoName(-count);
        const err = Object.assign(
          new Error(`${this.name}: reading stopped: ${code} (device removed or fd closed?)`),
          {
            code,
            errno: count,
          },
        );
        if (onError) onError(err);
        else throw err;
      },
    );
  }

  onBatch(handler: BatchHandler | null): void {
    if (this.closed) throw new Error(`${this.name} is closed`);
    this.handler = handler;
    if (handler) this.poller?.start();
    else this.poller?.stop();
  }

  sendBatch(bytes: Uint8Array, pairs: Int32Array, count: number): number {
    if (this.closed) return 0;
    return this.native.writeBatch(this.fd, this.writeMode, this.prefix, bytes, pairs, count, this.tx);
  }

  send(bytes: Uint8Array, offset = 0, length = bytes.length - offset): boolean {
    this.one[0] = offset;
    this.one[1] = length;
    return this.sendBatch(bytes, this.one, 1) === 1;
  }

  stats(): IoStats {
    const s = emptyStats();
    const rx = this.rx;
    const tx = this.tx;
    s.rxWakeups = rx[RxCounter.Wakeups]!;
    s.rxBatches = rx[RxCounter.Batches]!;
    s.rxPackets = rx[RxCounter.Packets]!;
    s.rxBytes = rx[RxCounter.Bytes]!;
    s.rxErrors = rx[RxCounter.Errors]!;
    s.rxTruncated = rx[RxCounter.Truncated]!;
    s.txBatches = tx[TxCounter.Calls]!;
    s.txPackets = tx[TxCounter.Packets]!;
    s.txBytes = tx[TxCounter.Bytes]!;
    s.txDropped = tx[TxCounter.Dropped]!;
    s.txErrors = tx[TxCounter.Errors]!;
    s.txInvalid = tx[TxCounter.Invalid]!;
    s.lastErrno = tx[TxCounter.LastErrno]! || rx[RxCounter.LastErrno]!;
    return s;
  }

  /** Lets the process exit while this device waits for packets (default: it keeps the process alive). */
  unref(): void {
    this.referenced = false;
    this.poller?.unref();
  }

  ref(): void {
    this.referenced = true;
    this.poller?.ref();
  }

  get isReferenced(): boolean {
    return this.referenced;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.handler = null;
    // epoll must forget the fd before it is closed and its number reused.
    this.poller?.close();
    this.poller = undefined;
    this.native.closeFd(this.fd);
  }
}
