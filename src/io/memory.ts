/**
 * In-memory doubles of the packet devices, for testing router and host logic
 * without root or a kernel:
 *
 * - `MemoryDevice`: a PacketDevice whose "kernel side" is the test: inject()
 *   queues packets for the reader, sent packets go to a peer or are recorded.
 * - `createDevicePair()`: two devices wired back to back (a TUN and the stack
 *   behind it, or the two ends of a link).
 * - `MemoryRawNetwork`: raw IPv4 sockets on a shared segment; a packet goes to
 *   every socket bound to its destination address and protocol, with the
 *   header fix-ups a kernel does for IP_HDRINCL senders.
 *
 * Delivery is batched like the real reader (up to slotCount per handler call,
 * packets copied into slots) and asynchronous by default (setImmediate), so
 * a handler that sends never re-enters another handler. Tests that want to
 * step deterministically pass `autoDeliver: false` and call runUntilIdle().
 */
import { internetChecksum } from '../wire/checksum.ts';
import { DEFAULT_HEADROOM, DEFAULT_SLOT_COUNT, DEFAULT_SLOT_SIZE, SlotBuffer } from './slots.ts';
import { emptyStats } from './types.ts';
import type { BatchHandler, IoStats, PacketDevice } from './types.ts';

/** Runs queued deliveries for a set of devices that talk to each other. */
export class MemoryScheduler {
  private readonly ready = new Set<MemoryDevice>();
  private scheduled = false;
  private waiters: (() => void)[] = [];

  constructor(readonly autoDeliver = true) {}

  /** Marks a device as having packets queued. */
  wake(device: MemoryDevice): void {
    this.ready.add(device);
    if (this.autoDeliver && !this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.step();
      });
    }
  }

  /** One batch to every device with packets queued; returns packets delivered. */
  step(): number {
    const devices = [...this.ready];
    this.ready.clear();
    let delivered = 0;
    for (const d of devices) {
      delivered += d.deliver();
      if (d.pending > 0 && d.reading) this.wake(d);
    }
    if (this.ready.size === 0) this.notifyIdle();
    return delivered;
  }

  /**
   * Delivers until nothing is queued; returns packets delivered. Throws after
   * `maxSteps` batches: two devices that bounce a packet forever are a bug.
   */
  runUntilIdle(maxSteps = 10_000): number {
    let delivered = 0;
    for (let i = 0; this.ready.size > 0; i++) {
      if (i >= maxSteps) throw new Error(`memory devices still busy after ${maxSteps} steps`);
      delivered += this.step();
    }
    return delivered;
  }

  /** Resolves once automatic delivery has emptied every queue. */
  idle(): Promise<void> {
    if (this.ready.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private notifyIdle(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

export interface MemoryDeviceOptions {
  name?: string;
  slotCount?: number;
  slotSize?: number;
  headroom?: number;
  /** Packets queued for the reader before inject() drops (like a txqueuelen or rcvbuf); default 1024. */
  queueLimit?: number;
  /** Keep a copy of every packet sent, in `sent`. */
  record?: boolean;
  /** Shared with the devices this one talks to; default a new automatic one. */
  scheduler?: MemoryScheduler;
}

export class MemoryDevice implements PacketDevice {
  readonly name: string;
  readonly slots: SlotBuffer;
  readonly scheduler: MemoryScheduler;
  /** Copies of the packets sent, oldest first (with `record`). */
  readonly sent: Uint8Array[] = [];
  /** Where sent packets go; returns false when the receiver dropped it. */
  deliverTo: ((packet: Uint8Array) => boolean) | undefined;
  private readonly queue: Uint8Array[] = [];
  private readonly queueLimit: number;
  private readonly record: boolean;
  private readonly counters: IoStats = emptyStats();
  private readonly one = new Int32Array(2);
  private handler: BatchHandler | null = null;
  private closed = false;

  constructor(options: MemoryDeviceOptions = {}) {
    this.name = options.name ?? 'mem';
    this.slots = new SlotBuffer(
      options.slotCount ?? DEFAULT_SLOT_COUNT,
      options.slotSize ?? DEFAULT_SLOT_SIZE,
      options.headroom ?? DEFAULT_HEADROOM,
    );
    this.queueLimit = options.queueLimit ?? 1024;
    this.record = options.record ?? false;
    this.scheduler = options.scheduler ?? new MemoryScheduler();
  }

  get pending(): number {
    return this.queue.length;
  }

  /** True while a handler is set. */
  get reading(): boolean {
    return this.handler !== null;
  }

  onBatch(handler: BatchHandler | null): void {
    if (this.closed) throw new Error(`${this.name} is closed`);
    this.handler = handler;
    if (handler && this.queue.length > 0) this.scheduler.wake(this);
  }

  /** Queues a copy of a packet for the reader, as the kernel would; false if dropped. */
  inject(bytes: Uint8Array, offset = 0, length = bytes.length - offset): boolean {
    if (this.closed || this.queue.length >= this.queueLimit || length > this.slots.capacity) {
      this.counters.rxDropped++;
      if (length > this.slots.capacity) this.counters.rxTruncated++;
      return false;
    }
    this.queue.push(bytes.slice(offset, offset + length));
    if (this.handler) this.scheduler.wake(this);
    return true;
  }

  /** Hands one batch of queued packets to the handler; returns how many. */
  deliver(): number {
    if (!this.handler || this.queue.length === 0) return 0;
    const n = Math.min(this.queue.length, this.slots.slotCount);
    for (let i = 0; i < n; i++) {
      const p = this.queue.shift()!;
      this.slots.put(i, p);
      this.counters.rxBytes += p.length;
    }
    this.counters.rxWakeups++;
    this.counters.rxBatches++;
    this.counters.rxPackets += n;
    this.handler(n);
    return n;
  }

  sendBatch(bytes: Uint8Array, pairs: Int32Array, count: number): number {
    if (this.closed) return 0;
    if (count < 0 || count * 2 > pairs.length) throw new RangeError('count exceeds pairs');
    const c = this.counters;
    c.txBatches++;
    let accepted = 0;
    for (let i = 0; i < count; i++) {
      const off = pairs[2 * i]!;
      const len = pairs[2 * i + 1]!;
      if (len <= 0 || off < 0 || off + len > bytes.length) {
        c.txInvalid++;
        continue;
      }
      const packet = bytes.slice(off, off + len);
      const reason = this.transmit(packet);
      if (reason === 'invalid') {
        c.txInvalid++;
        continue;
      }
      if (reason === 'dropped') {
        c.txDropped++;
        continue;
      }
      if (this.record) this.sent.push(packet);
      accepted++;
      c.txPackets++;
      c.txBytes += len;
    }
    return accepted;
  }

  send(bytes: Uint8Array, offset = 0, length = bytes.length - offset): boolean {
    this.one[0] = offset;
    this.one[1] = length;
    return this.sendBatch(bytes, this.one, 1) === 1;
  }

  /** What happens to one sent packet; subclasses model the medium. */
  protected transmit(packet: Uint8Array): 'ok' | 'dropped' | 'invalid' {
    if (!this.deliverTo) return 'ok';
    return this.deliverTo(packet) ? 'ok' : 'dropped';
  }

  stats(): IoStats {
    return { ...this.counters };
  }

  close(): void {
    this.closed = true;
    this.handler = null;
    this.queue.length = 0;
  }
}

/** Two devices back to back: what one sends, the other reads. */
export function createDevicePair(
  options: MemoryDeviceOptions & { names?: [string, string] } = {},
): [MemoryDevice, MemoryDevice] {
  const scheduler = options.scheduler ?? new MemoryScheduler();
  const a = new MemoryDevice({ ...options, scheduler, name: options.names?.[0] ?? 'mem-a' });
  const b = new MemoryDevice({ ...options, scheduler, name: options.names?.[1] ?? 'mem-b' });
  a.deliverTo = (p) => b.inject(p);
  b.deliverTo = (p) => a.inject(p);
  return [a, b];
}

const readU32 = (b: Uint8Array, o: number): number =>
  ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;

function parseAddress(text: string): number {
  const parts = text.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`not an IPv4 address: ${text}`);
  }
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

/** A raw IPv4 socket on a MemoryRawNetwork. */
export class MemoryRawSocket extends MemoryDevice {
  constructor(
    private readonly network: MemoryRawNetwork,
    readonly address: number,
    readonly protocol: number,
    options: MemoryDeviceOptions,
  ) {
    super(options);
  }

  protected override transmit(packet: Uint8Array): 'ok' | 'dropped' | 'invalid' {
    if (packet.length < 20 || packet[0]! >> 4 !== 4 || (packet[0]! & 0x0f) < 5) return 'invalid';
    // What the kernel does for an IP_HDRINCL sender (raw_send_hdrinc).
    if (readU32(packet, 12) === 0) {
      packet[12] = this.address >>> 24;
      packet[13] = (this.address >>> 16) & 0xff;
      packet[14] = (this.address >>> 8) & 0xff;
      packet[15] = this.address & 0xff;
    }
    packet[2] = packet.length >>> 8;
    packet[3] = packet.length & 0xff;
    packet[10] = 0;
    packet[11] = 0;
    const sum = internetChecksum(packet, 0, (packet[0]! & 0x0f) * 4);
    packet[10] = sum >>> 8;
    packet[11] = sum & 0xff;
    this.network.route(packet);
    return 'ok';
  }
}

/**
 * A LAN of raw sockets. Like the kernel, every socket bound to a packet's
 * destination and protocol gets its own copy; packets nobody takes are
 * counted in `unclaimed` and shown to `tap`, as is every packet.
 */
export class MemoryRawNetwork {
  readonly scheduler: MemoryScheduler;
  /** Sees every routed packet (a copy the caller may keep). */
  tap: ((packet: Uint8Array) => void) | undefined;
  unclaimed = 0;
  private readonly sockets: MemoryRawSocket[] = [];

  constructor(options: { autoDeliver?: boolean; scheduler?: MemoryScheduler } = {}) {
    this.scheduler = options.scheduler ?? new MemoryScheduler(options.autoDeliver ?? true);
  }

  /** A socket at `address` receiving `protocol` (255, IPPROTO_RAW, receives nothing). */
  socket(address: string, protocol: number, options: MemoryDeviceOptions = {}): MemoryRawSocket {
    const s = new MemoryRawSocket(this, parseAddress(address), protocol, {
      name: `raw:${protocol}@${address}`,
      ...options,
      scheduler: this.scheduler,
    });
    this.sockets.push(s);
    return s;
  }

  /** Delivers a (fixed-up) packet to its receivers. */
  route(packet: Uint8Array): void {
    this.tap?.(packet);
    const dst = readU32(packet, 16);
    const protocol = packet[9]!;
    let claimed = false;
    for (const s of this.sockets) {
      if (s.address === dst && s.protocol === protocol && s.protocol !== 255) {
        s.inject(packet);
        claimed = true;
      }
    }
    if (!claimed) this.unclaimed++;
  }

  runUntilIdle(maxSteps?: number): number {
    return this.scheduler.runUntilIdle(maxSteps);
  }
}
