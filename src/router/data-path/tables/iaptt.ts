import { addressIndexOfSlot, PORT_SPACE, portOfSlot } from '../../../util/block.ts';
import { ipv4ToString } from '../../../wire/ipv4.ts';

/**
 * The router's IP address translation table, IAPTT (FIG. 12, layout 160):
 *
 *   +------------------+-------------------------------+----------+-----------+
 *   | DESTINATION PORT | INTERNAL DESTINATION IP ADDR  | PROTOCOL | TIMESTAMP |
 *   |     2 bytes      |           4 bytes             |  1 byte  |  4 bytes  |
 *   +------------------+-------------------------------+----------+-----------+
 *   | 1032             | 10.0.0.1                      | 6 (TCP)  | 10048     |  (Table 9)
 *   +------------------+-------------------------------+----------+-----------+
 *
 * One row per (protocol, locally unique port) in use, stamped on every
 * forwarded packet. Forwarding itself is decided by the port table (FIG. 8):
 * a leased port reaches its owner whether or not it has a row here. The
 * IAPTT records what is actually in use, for `distnat status` and so that
 * idle rows disappear (the patent removes rows at the end of a connection).
 *
 * Storage is three typed arrays indexed by protocol plane * plane size +
 * port slot, so stamping a packet is two array writes. With several shared
 * addresses a plane holds every address's ports, by the port slots of
 * util/block.ts (address index x 65536 + port): the same port on two
 * addresses is two rows, each naming its address; with one address a slot
 * is the port. The protocol column holds
 * the IANA number (Table 9 shows "6 (TCP)"; FIG. 12's text says 0/1, which
 * cannot express ICMP). ICMP rows are keyed by the echo identifier, which
 * shares the port blocks (see PortTable).
 */

/** Slots of the per-protocol planes. */
const SLOT_TCP = 0;
const SLOT_UDP = 1;
const SLOT_ICMP = 2;
const PLANES = 3;
const PROTOCOL_OF_SLOT = [6, 17, 1] as const;

/** Plane of an IP protocol number, or -1 for protocols without ports. */
export function protocolSlot(protocol: number): number {
  return protocol === 6 ? SLOT_TCP : protocol === 17 ? SLOT_UDP : protocol === 1 ? SLOT_ICMP : -1;
}

/** Idle times after which a row is swept, in milliseconds. */
export interface IapttIdle {
  readonly tcpMs: number;
  readonly udpMs: number;
  readonly icmpMs: number;
}

/**
 * Defaults follow the NAT behaviour RFCs, since the IAPTT plays the part of
 * a NAT's session table: TCP 2 h 4 min (RFC 5382 REQ-5, established), UDP
 * 5 min (RFC 4787 REQ-5), ICMP 60 s (RFC 5508 REQ-1). The router does not
 * track TCP state: a row is informational, so a long TCP timeout only keeps
 * a row visible longer; it never keeps a port from a host.
 */
export const DEFAULT_IAPTT_IDLE: IapttIdle = { tcpMs: 7_440_000, udpMs: 300_000, icmpMs: 60_000 };

/** One FIG. 12 row for `distnat status`. */
export interface IapttRow {
  readonly port: number;
  /** Which shared address the port is on: its index, first 0. */
  readonly addressIndex: number;
  readonly host: number;
  readonly address: string;
  readonly protocol: number;
  /** Last use, in the clock's milliseconds (FIG. 12's timestamp). */
  readonly lastUse: number;
}

/** A worker's IAPTT arrays, which the main thread merges into its own for `distnat status`. */
export interface IapttMemory {
  readonly hosts: SharedArrayBuffer;
  readonly stamps: SharedArrayBuffer;
}

export class Iaptt {
  private readonly hosts: Uint32Array;
  private readonly stamps: Float64Array;
  private readonly idleBySlot: Float64Array;
  /** Slots of one protocol plane: PORT_SPACE per shared address. */
  private readonly plane: number;
  /** Rows per shared address. */
  private readonly liveOn: Int32Array;
  private cursor = 0;
  private live = 0;

  /**
   * `memory`: arrays in shared memory (Iaptt.shared in a worker, the same
   * memory to read it from the main thread); its size gives the number of
   * addresses. `addresses`: how many shared addresses' ports it holds.
   */
  constructor(idle: IapttIdle = DEFAULT_IAPTT_IDLE, memory?: IapttMemory, addresses = 1) {
    this.idleBySlot = Float64Array.of(idle.tcpMs, idle.udpMs, idle.icmpMs);
    const n = memory === undefined ? addresses : memory.hosts.byteLength / 4 / (PLANES * PORT_SPACE);
    if (!Number.isInteger(n) || n < 1) throw new RangeError('IAPTT memory of the wrong size');
    this.plane = n * PORT_SPACE;
    this.liveOn = new Int32Array(n);
    this.hosts = memory === undefined ? new Uint32Array(PLANES * this.plane) : new Uint32Array(memory.hosts);
    this.stamps =
      memory === undefined ? new Float64Array(PLANES * this.plane) : new Float64Array(memory.stamps);
    if (this.stamps.length !== PLANES * this.plane) throw new RangeError('IAPTT memory of the wrong size');
    if (memory !== undefined)
      this.hosts.forEach((h, i) => {
        if (h === 0) return;
        this.live++;
        this.liveOn[addressIndexOfSlot(i % this.plane)]!++;
      });
  }

  /** An IAPTT in shared memory, for a worker whose rows the main thread reads. */
  static shared(idle: IapttIdle = DEFAULT_IAPTT_IDLE, addresses = 1): Iaptt {
    return new Iaptt(idle, {
      hosts: new SharedArrayBuffer(PLANES * addresses * PORT_SPACE * 4),
      stamps: new SharedArrayBuffer(PLANES * addresses * PORT_SPACE * 8),
    });
  }

  /** How many shared addresses' ports it holds. */
  get addresses(): number {
    return this.liveOn.length;
  }

  get memory(): IapttMemory | undefined {
    if (!(this.hosts.buffer instanceof SharedArrayBuffer)) return undefined;
    return { hosts: this.hosts.buffer, stamps: this.stamps.buffer as SharedArrayBuffer };
  }

  /**
   * Takes the rows of another thread's IAPTT (a worker's, read through its
   * memory) that are newer than this one's, keeping only those whose host
   * `owns` the port slot now: a worker clears a withdrawn block's rows when its
   * message arrives, and until then they must not come back here. Walks all
   * slots: for status and the maintenance tick, not per packet.
   */
  mergeFrom(other: Iaptt, owns: (slot: number, host: number) => boolean): void {
    const oh = other.hosts;
    const os = other.stamps;
    const n = Math.min(oh.length, this.hosts.length);
    for (let i = 0; i < n; i++) {
      const host = oh[i]!;
      if (host === 0) continue;
      const stamp = os[i]!;
      if (this.hosts[i] === host && this.stamps[i]! >= stamp) continue;
      if (!owns(i % this.plane, host)) continue;
      if (this.hosts[i] === 0) this.#added(i);
      this.hosts[i] = host;
      this.stamps[i] = stamp;
    }
  }

  /**
   * Stamps the row for a forwarded packet: the destination port of an inbound
   * packet or the source port of an outbound one (as a port slot: on the
   * first address, the port), and the host it went to or came from.
   * Protocols without ports and slots past the addresses are ignored.
   */
  touch(protocol: number, port: number, host: number, now: number): void {
    const i = this.#index(protocol, port);
    if (i < 0 || host === 0) return;
    if (this.hosts[i] === 0) this.#added(i);
    this.hosts[i] = host;
    this.stamps[i] = now;
  }

  /** Host of the row, or 0. */
  hostOf(protocol: number, port: number): number {
    const i = this.#index(protocol, port);
    return i < 0 ? 0 : this.hosts[i]!;
  }

  /** Timestamp of the row, or -1 when there is none. */
  lastUse(protocol: number, port: number): number {
    const i = this.#index(protocol, port);
    if (i < 0) return -1;
    return this.hosts[i] === 0 ? -1 : this.stamps[i]!;
  }

  /** Removes one row (a connection ended). */
  remove(protocol: number, port: number): boolean {
    const i = this.#index(protocol, port);
    return i < 0 ? false : this.clearSlot(i);
  }

  /** The array index of a protocol's port slot, -1 when it has none. */
  #index(protocol: number, port: number): number {
    const plane = protocolSlot(protocol);
    if (plane < 0 || port >>> 0 >= this.plane) return -1;
    return plane * this.plane + port;
  }

  #added(i: number): void {
    this.live++;
    this.liveOn[addressIndexOfSlot(i % this.plane)]!++;
  }

  /**
   * Removes the rows of port slots [first, first + count) in every protocol,
   * as a lease is withdrawn. With `host` non-zero only that host's rows go.
   */
  clearPorts(first: number, count: number, host = 0): number {
    let removed = 0;
    const end = Math.min(first + count, this.plane);
    for (let s = 0; s < PLANES; s++) {
      for (let p = Math.max(first, 0); p < end; p++) {
        const i = s * this.plane + p;
        if (host !== 0 && this.hosts[i] !== host) continue;
        if (this.clearSlot(i)) removed++;
      }
    }
    return removed;
  }

  /**
   * Examines at most `budget` slots from where the last sweep stopped and
   * removes rows idle for longer than their protocol's idle time. Called
   * from a periodic timer, it bounds the work per call; a full pass over the
   * 3 x 65536 slots (per address) takes 196608 / budget calls.
   */
  sweep(now: number, budget = 4096): number {
    let removed = 0;
    const total = PLANES * this.plane;
    let i = this.cursor;
    for (let n = 0; n < budget && n < total; n++) {
      if (this.hosts[i] !== 0 && now - this.stamps[i]! > this.idleBySlot[(i / this.plane) | 0]!) {
        this.clearSlot(i);
        removed++;
      }
      i = i + 1 === total ? 0 : i + 1;
    }
    this.cursor = i;
    return removed;
  }

  /** Number of rows. */
  get size(): number {
    return this.live;
  }

  /** Number of rows of ports on the shared address at `addressIndex`. */
  sizeOn(addressIndex: number): number {
    return this.liveOn[addressIndex] ?? 0;
  }

  /** FIG. 12 as rows, by protocol, then address, then port. Walks all slots: for status, not per packet. */
  rows(): IapttRow[] {
    const out: IapttRow[] = [];
    for (let s = 0; s < PLANES; s++) {
      for (let p = 0; p < this.plane; p++) {
        const i = s * this.plane + p;
        const host = this.hosts[i]!;
        if (host === 0) continue;
        out.push({
          port: portOfSlot(p),
          addressIndex: addressIndexOfSlot(p),
          host,
          address: ipv4ToString(host),
          protocol: PROTOCOL_OF_SLOT[s]!,
          lastUse: this.stamps[i]!,
        });
      }
    }
    return out;
  }

  clear(): void {
    this.hosts.fill(0);
    this.live = 0;
    this.liveOn.fill(0);
    this.cursor = 0;
  }

  private clearSlot(i: number): boolean {
    if (this.hosts[i] === 0) return false;
    this.hosts[i] = 0;
    this.live--;
    this.liveOn[addressIndexOfSlot(i % this.plane)]!--;
    return true;
  }
}
