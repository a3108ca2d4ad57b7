/**
 * Which host owns each leased port, ICMP query identifier and SPI: the one
 * index the router's data path reads (FIG. 8, FIG. 21), fed by one event
 * stream, the lease table's (onLeaseAdded / onLeaseRemoved).
 *
 *   LeaseTable (pap: grants, renewals, expiry, journal)
 *        | onLeaseAdded / onLeaseRemoved, after the change is durable
 *        v
 *   RouterTables --> LeaseOwnership (this) --> outbound check, inbound demultiplexing
 *                --> IAPTT, fragments (forget what a withdrawn block had)
 *
 * Why this shape:
 * - The lease table is the record (who, what, until when, quarantine); this
 *   is a lookup derived from it, one value per slot, so the packet path asks
 *   one question with one array read and never sees a lease object, a host
 *   address as text, or a lock. It is rebuilt from the events alone: a
 *   router that follows another lease table (a replica, a restart from the
 *   journal) gets the same index.
 * - Ports (and ICMP query identifiers, which share the port blocks) are a
 *   dense Uint32Array of 65,536 owners per shared address: 256 KiB each, no
 *   hashing. With several shared addresses an index is a slot, address index
 *   * 65536 + port (util/block.ts), which the data path makes from the
 *   datagram's shared address: the same port on two addresses is two owners. SPIs span 2^32
 *   values, so they are an open-addressing hash with one entry per leased
 *   SPI (U32Map): expected O(1), no allocation, 16 MiB at a million SPIs.
 * - Owners are IPv4 addresses as unsigned 32-bit numbers, 0 meaning "none":
 *   the outer destination of the tunnel to the host, ready to write.
 * - Whether a host holds anything at all (for packets without a port to
 *   check: ESP/AH sent out, later fragments) is a count of values per host,
 *   kept with the same events.
 * - With forwarding workers (docs/router.md, "Workers") the arrays live in
 *   SharedArrayBuffers: the main thread is the one writer (lease events
 *   come only there) and each worker reads through LeaseOwnership.reader,
 *   with no lock on the packet path. A port is one word, written with
 *   Atomics.store; the SPI and host maps are U32Maps whose readers retry
 *   across a delete (u32-map.ts). So a block is unreachable on every worker
 *   as soon as the removal returns, and a value that stays is never missed.
 * - Changes are all-or-nothing per block: a block that would overlap another
 *   host's values changes nothing and is counted as rejected, which the lease
 *   table's own checks make impossible unless the two disagree.
 */
import type { Block, ResourceKind } from '../../../util/block.ts';
import { PORT_SPACE } from '../../../util/block.ts';
import { ipv4FromString } from '../../../wire/ipv4.ts';
import { U32Map, type U32MapMemory } from './u32-map.ts';

/** The shared arrays of a LeaseOwnership, as posted to the workers that read it. */
export interface OwnershipMemory {
  readonly ports: SharedArrayBuffer;
  readonly spis: U32MapMemory;
  readonly held: U32MapMemory;
}

/** Most hosts a shared index holds (the host map cannot grow once shared). */
const SHARED_HOSTS = 1 << 16;

/** A leased block as the lease table reports it (pap's Lease has these fields). */
export interface LeasedBlock extends Block {
  readonly kind: ResourceKind;
  /** The host's LAN address, dotted quad. */
  readonly host: string;
}

/** What an add or remove did. The packet path never sees these; the daemon's log and tests do. */
export type OwnershipChange =
  | 'added' // the whole block is now owned by the host
  | 'exists' // the host already owned exactly these values: nothing changed
  | 'overlap' // some value of the block belongs to another host: nothing changed
  | 'out-of-range' // bad host, count or range: nothing changed
  | 'full' // the SPI index has no room for the block: nothing changed
  | 'removed' // at least one value of the range was the host's and is now free
  | 'not-owned'; // no value of the range was the host's: nothing changed

/** SPIs are never 0 ("no SA", RFC 4303 2.1), nor is port 0 of any address (no port). */
const SPI_LIMIT = 0x1_0000_0000;

export class LeaseOwnership {
  readonly counters = { added: 0, removed: 0, rejected: 0 };
  readonly #ports: Uint32Array;
  readonly #spis: U32Map;
  /** Values (ports + SPIs) each host owns; a host with none is absent. */
  readonly #held: U32Map;
  #portCount = 0;

  /**
   * `maxSpis`: most SPIs the index will hold across all hosts. `memory`: a
   * shared index's arrays. `addresses`: how many shared addresses' ports it holds.
   */
  constructor(maxSpis = 1 << 21, memory?: OwnershipMemory, addresses = 1) {
    if (memory === undefined) {
      this.#ports = new Uint32Array(PORT_SPACE * addresses);
      this.#spis = new U32Map(256, maxSpis * 2);
      this.#held = new U32Map(64, SHARED_HOSTS * 2);
    } else {
      this.#ports = new Uint32Array(memory.ports);
      this.#spis = U32Map.reader(memory.spis);
      this.#held = U32Map.reader(memory.held);
      for (let p = 0; p < this.#ports.length; p++) if (this.#ports[p] !== 0) this.#portCount++;
    }
  }

  /**
   * An index whose arrays other threads read (LeaseOwnership.reader on
   * `memory`). Its SPI map takes its largest size at once; the pages the
   * kernel never had to touch cost no memory until SPIs are leased.
   */
  static shared(maxSpis = 1 << 21, addresses = 1): LeaseOwnership {
    const spis = U32Map.shared(maxSpis * 2).memory!;
    const held = U32Map.shared(SHARED_HOSTS * 2).memory!;
    return new LeaseOwnership(maxSpis, {
      ports: new SharedArrayBuffer(PORT_SPACE * addresses * 4),
      spis,
      held,
    });
  }

  /** A worker's view of a shared index: lookups only; it must never be changed (the main thread writes). */
  static reader(memory: OwnershipMemory): LeaseOwnership {
    return new LeaseOwnership(memory.spis.keys.byteLength / 8, memory);
  }

  /** The shared arrays, to post to the readers; undefined for an index of this thread alone. */
  get memory(): OwnershipMemory | undefined {
    const spis = this.#spis.memory;
    const held = this.#held.memory;
    if (spis === undefined || held === undefined) return undefined;
    return { ports: this.#ports.buffer as SharedArrayBuffer, spis, held };
  }

  /** Owner of a destination (inbound) or source (outbound) port slot, or 0 (also for a slot past the index). */
  portOwner(slot: number): number {
    return slot >= 0 && slot < this.#ports.length ? Atomics.load(this.#ports, slot) : 0;
  }

  /**
   * Owner of an ICMP query identifier, or 0. The port blocks double as
   * identifier blocks: a host translates its echo ids into its leased range
   * exactly as it translates source ports (as a NAPT maps a query id like a
   * port, RFC 5508 3), so one lease covers TCP, UDP and ICMP alike.
   */
  icmpIdOwner(slot: number): number {
    return this.portOwner(slot);
  }

  /** Whether `host` may use the port slot as a source: the router's outbound check (patent, after Table 8). */
  owns(host: number, slot: number): boolean {
    return host !== 0 && this.portOwner(slot) === host;
  }

  /** How many shared addresses' ports the index holds. */
  get addresses(): number {
    return this.#ports.length / PORT_SPACE;
  }

  /** Owner of a SPI taken from an inbound ESP/AH header, or 0. */
  spiOwner(spi: number): number {
    return this.#spis.get(spi);
  }

  /** True when `host` owns at least one port or SPI. */
  holds(host: number): boolean {
    return host !== 0 && this.#held.get(host) !== 0;
  }

  /** Hosts owning anything. */
  get hostCount(): number {
    return this.#held.size;
  }

  get portCount(): number {
    return this.#portCount;
  }

  get spiCount(): number {
    return this.#spis.size;
  }

  /**
   * What the index holds, as runs of consecutive values of one host (a run
   * may join two adjacent blocks of the host), lowest first within each
   * kind. For a mirror that starts late; not for the packet path.
   */
  blocks(): { host: number; kind: ResourceKind; first: number; count: number }[] {
    const out: { host: number; kind: ResourceKind; first: number; count: number }[] = [];
    const ports = this.#ports;
    for (let p = 1; p < ports.length; p++) {
      const host = ports[p]!;
      if (host === 0) continue;
      let end = p + 1;
      while (end < ports.length && ports[end] === host) end++;
      out.push({ host, kind: 'port', first: p, count: end - p });
      p = end - 1;
    }
    const spis = new Uint32Array(this.#spis.size);
    let n = 0;
    this.#spis.forEach((spi) => {
      spis[n++] = spi;
    });
    spis.sort();
    for (let i = 0; i < n;) {
      const host = this.#spis.get(spis[i]!);
      let j = i + 1;
      while (j < n && spis[j] === spis[j - 1]! + 1 && this.#spis.get(spis[j]!) === host) j++;
      out.push({ host, kind: 'spi', first: spis[i]!, count: j - i });
      i = j;
    }
    return out;
  }

  /** A lease event from the lease table. Hosts that are not IPv4 addresses cannot be tunnelled to. */
  onLeaseAdded(lease: LeasedBlock): OwnershipChange {
    return this.#count(this.add(ipv4FromString(lease.host) ?? 0, lease.kind, lease.lowest, lease.count));
  }

  onLeaseRemoved(lease: LeasedBlock): OwnershipChange {
    return this.#count(this.remove(ipv4FromString(lease.host) ?? 0, lease.kind, lease.lowest, lease.count));
  }

  /** Gives [first, first + count) of `kind` to `host`: all or nothing. */
  add(host: number, kind: ResourceKind, first: number, count: number): OwnershipChange {
    if (!this.#validRange(host, kind, first, count)) return 'out-of-range';
    const end = first + count;
    let own = 0;
    if (kind === 'port') {
      const ports = this.#ports;
      for (let p = first; p < end; p++) {
        const o = ports[p]!;
        if (o === host) own++;
        else if (o !== 0) return 'overlap';
      }
      if (own === count) return 'exists';
      for (let p = first; p < end; p++) Atomics.store(ports, p, host);
      this.#portCount += count - own;
    } else {
      const spis = this.#spis;
      for (let s = first; s < end; s++) {
        const o = spis.get(s);
        if (o === host) own++;
        else if (o !== 0) return 'overlap';
      }
      if (own === count) return 'exists';
      if (!spis.hasRoomFor(count - own)) return 'full';
      for (let s = first; s < end; s++) spis.set(s, host);
    }
    this.#held.set(host, this.#held.get(host) + count - own);
    return 'added';
  }

  /** Takes the values of [first, first + count) that `host` owns away from it; others' stay. */
  remove(host: number, kind: ResourceKind, first: number, count: number): OwnershipChange {
    if (!this.#validRange(host, kind, first, count)) return 'out-of-range';
    const had = this.#held.get(host);
    if (had === 0) return 'not-owned';
    let freed = 0;
    if (kind === 'port') {
      const ports = this.#ports;
      const end = first + count;
      for (let p = first; p < end; p++) {
        if (ports[p] === host) {
          Atomics.store(ports, p, 0);
          freed++;
        }
      }
      this.#portCount -= freed;
    } else {
      // A removal range may be huge (a whole pool) while the host owns few
      // SPIs: walk the smaller of the two.
      freed =
        count <= had ? this.#removeSpiRange(host, first, count) : this.#removeSpisIn(host, first, count);
    }
    if (freed === 0) return 'not-owned';
    if (had === freed) this.#held.delete(host);
    else this.#held.set(host, had - freed);
    return 'removed';
  }

  #removeSpiRange(host: number, first: number, count: number): number {
    let freed = 0;
    const end = first + count;
    for (let s = first; s < end; s++) {
      if (this.#spis.get(s) === host) {
        this.#spis.delete(s);
        freed++;
      }
    }
    return freed;
  }

  #removeSpisIn(host: number, first: number, count: number): number {
    const end = first + count;
    const mine: number[] = [];
    this.#spis.forEach((spi, owner) => {
      if (owner === host && spi >= first && spi < end) mine.push(spi);
    });
    for (const s of mine) this.#spis.delete(s);
    return mine.length;
  }

  #validRange(host: number, kind: ResourceKind, first: number, count: number): boolean {
    if (!validRange(host, first, count)) return false;
    if (kind === 'spi') return first + count <= SPI_LIMIT;
    // A block lies on one address, never on its port 0.
    return (
      first + count <= this.#ports.length &&
      first % PORT_SPACE !== 0 &&
      Math.floor(first / PORT_SPACE) === Math.floor((first + count - 1) / PORT_SPACE)
    );
  }

  #count(change: OwnershipChange): OwnershipChange {
    if (change === 'added') this.counters.added++;
    else if (change === 'removed') this.counters.removed++;
    else if (change !== 'exists') this.counters.rejected++;
    return change;
  }
}

function validRange(host: number, first: number, count: number): boolean {
  return (
    Number.isInteger(host) &&
    host > 0 &&
    host <= 0xffffffff &&
    Number.isInteger(first) &&
    Number.isInteger(count) &&
    count >= 1 &&
    first >= 1
  );
}
