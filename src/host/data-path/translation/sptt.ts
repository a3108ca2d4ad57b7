import type { LeasedPortSource } from './leased-port-source.ts';
import { resolveTimeouts } from './timeouts.ts';
import type { TranslationTimeouts } from './timeouts.ts';

/**
 * The host's source port translation table, SPTT (FIG. 11, layout 150):
 *
 *   +--------------+-----------------+----------+-----------+
 *   | DEFAULT PORT | TRANSLATED PORT | PROTOCOL | TIMESTAMP |
 *   |   2 bytes    |     2 bytes     |  1 byte  |  4 bytes  |
 *   +--------------+-----------------+----------+-----------+
 *   | 1234         | 1032            | 6 (TCP)  | 10023     |  (Table 7)
 *   +--------------+-----------------+----------+-----------+
 *
 * Each row maps (protocol, local ephemeral port) to a locally unique port
 * leased with PAP, for TCP, UDP and ICMP query identifiers (which share the
 * port blocks, see the router's PortTable). Mappings are endpoint-independent
 * (RFC 4787 REQ-1, RFC 5382 REQ-1): one leased port per local port whatever
 * the destination, so a remote peer sees the same port on every flow.
 *
 * A leased port serves one row at a time, whatever the protocol. Sharing a
 * leased port between a TCP and a UDP row would double the capacity of a
 * block but needs per-protocol free lists in the lease source; a host short
 * of ports leases another block instead.
 *
 * Storage is indexed by the leased port, which is what makes the inbound
 * lookup (Table 11 -> Table 12: leased 1032 -> TCP 1234) a single array
 * read. The outbound lookup reads a second array indexed by protocol plane
 * and local port. A dense list of the live leased ports lets the expiry
 * sweep walk live rows only, a bounded number per call.
 *
 * Timers: each row is stamped on use (FIG. 11's timestamp, in the caller's
 * clock milliseconds) and expires after its protocol's idle time (see
 * timeouts.ts). TCP rows follow the flags they carry: a row is
 * "established" once packets have gone both ways without FIN or RST, and
 * "transitory" (shorter timer) while partially open or after a FIN or RST.
 * A bare SYN (no ACK) starts the row's TCP state afresh, since it opens a
 * new connection on the same ports. Expiry is checked when an inbound packet
 * looks a row up (an expired row does not let packets in) and by `sweep`,
 * which the agent calls periodically; an outbound packet on an expired but
 * not yet swept row simply keeps it (the RFC timers are lower bounds).
 *
 * All methods take `now` from the caller: the forwarding loop reads its
 * Clock once per batch of packets rather than once per lookup.
 *
 * Another data path may carry a row's packets once it is established (the
 * eBPF fast path, docs/ebpf.md): a TCP or UDP row seen both ways is handed
 * to `observer.established` once, its idle timer then counts the later of
 * the two paths' last use (`observer.lastUse`), and `observer.removed`
 * hears of it before the row goes and its leased port can serve another.
 */

const PLANE = 65536;
const NONE = -1;

// Row state bits: TCP's (and SEEN_* for UDP too, to know when it is used both ways).
const SEEN_OUT = 1;
const SEEN_IN = 2;
const ENDING = 4;
/** Handed to the observer. */
const HANDED = 8;

// TCP header flag bits (offset 13).
const FIN = 0x01;
const SYN = 0x02;
const RST = 0x04;
const ACK = 0x10;

/** Protocol plane of an IANA protocol number: TCP 0, UDP 1, ICMP 2; -1 for the rest. */
export function translatedProtocolPlane(protocol: number): number {
  return protocol === 6 ? 0 : protocol === 17 ? 1 : protocol === 1 ? 2 : -1;
}

export type SpttTimerClass = 'udp' | 'icmp' | 'tcp-established' | 'tcp-transitory';

/** One FIG. 11 row for `distnat status`. */
export interface SpttRow {
  /** FIG. 11 "default port": the local ephemeral port (or ICMP identifier). */
  readonly localPort: number;
  /** FIG. 11 "translated port": the leased, locally unique port. */
  readonly leasedPort: number;
  /** IANA protocol number (Table 7 shows "1 (TCP)"; the number used here is 6). */
  readonly protocol: number;
  /** FIG. 11 "timestamp": last use, ms. */
  readonly lastUse: number;
  readonly timer: SpttTimerClass;
  /** When the row will expire if unused, ms. */
  readonly expiresAt: number;
}

export interface SpttCounters {
  /** Rows created. */
  created: number;
  /** New flows refused because no leased port was free (the packet is dropped). */
  allocationFailed: number;
  /** Rows removed because they were idle too long. */
  expired: number;
  /** Rows removed by `remove` or because their lease went away. */
  removed: number;
}

/** Told of the rows another data path may carry (see above); each call is once per row, never per packet. */
export interface SpttObserver {
  /** A TCP or UDP row now used both ways: (protocol, local port) <-> leased port. */
  established(protocol: number, localPort: number, leasedPort: number): void;
  /** A row handed over goes (expiry, removal, lease lost): called before its port is freed. */
  removed(protocol: number, localPort: number, leasedPort: number): void;
  /** Last use of a handed-over row on the other path, in the table's clock, or -Infinity. */
  lastUse(protocol: number, leasedPort: number): number;
}

export interface SpttOptions {
  readonly timeouts?: Partial<TranslationTimeouts>;
  /** Let `timeouts` go below the RFC floors (tests only). */
  readonly allowTimeoutsBelowRfc?: boolean;
  /** Start in native mode (patent Method 130): no translation. */
  readonly native?: boolean;
  readonly observer?: SpttObserver;
}

export class SourcePortTranslationTable {
  /**
   * Native mode (patent Method 130): the host's kernel already uses leased
   * ports as its ephemeral range, so packets pass untranslated and this
   * table is bypassed (PortTranslator checks this flag first).
   */
  native: boolean;
  readonly timeouts: TranslationTimeouts;
  readonly counters: SpttCounters = { created: 0, allocationFailed: 0, expired: 0, removed: 0 };

  // By leased port.
  private readonly protocolOf = new Uint8Array(PLANE); // 0 = no row
  private readonly localOf = new Uint16Array(PLANE);
  private readonly lastUseOf = new Float64Array(PLANE);
  private readonly tcpStateOf = new Uint8Array(PLANE);
  private readonly activeIndexOf = new Int32Array(PLANE).fill(NONE);
  // By plane * 65536 + local port.
  private readonly leasedOf = new Int32Array(3 * PLANE).fill(NONE);
  // Dense list of live leased ports, for the sweep and for status.
  private readonly active = new Uint16Array(PLANE);
  private live = 0;
  private cursor = 0;
  /** Set by the agent once it knows whether another data path runs. */
  observer: SpttObserver | undefined;

  constructor(
    private readonly source: LeasedPortSource,
    options: SpttOptions = {},
  ) {
    this.native = options.native ?? false;
    this.observer = options.observer;
    this.timeouts = resolveTimeouts(options.timeouts, options.allowTimeoutsBelowRfc ?? false);
  }

  /** Number of rows. */
  get size(): number {
    return this.live;
  }

  /**
   * The leased port for an outbound packet from `localPort`, creating the row
   * (taking a leased port) if there is none. `tcpFlags` is the TCP header's
   * flags byte (0 for UDP and ICMP). Returns -1 when no leased port is free,
   * or for a protocol without ports.
   */
  outbound(protocol: number, localPort: number, tcpFlags: number, now: number): number {
    const plane = translatedProtocolPlane(protocol);
    if (plane < 0) return NONE;
    const key = plane * PLANE + (localPort & 0xffff);
    let leased = this.leasedOf[key]!;
    if (leased === NONE) {
      leased = this.source.takePort();
      if (!(leased > 0 && leased < PLANE && this.protocolOf[leased] === 0)) {
        this.counters.allocationFailed++;
        return NONE;
      }
      this.protocolOf[leased] = protocol;
      this.localOf[leased] = localPort;
      this.tcpStateOf[leased] = 0;
      this.leasedOf[key] = leased;
      this.activeIndexOf[leased] = this.live;
      this.active[this.live++] = leased;
      this.counters.created++;
    }
    this.lastUseOf[leased] = now;
    if (plane === 0) {
      let s = this.tcpStateOf[leased]!;
      s = (tcpFlags & (SYN | ACK)) === SYN ? SEEN_OUT | (s & HANDED) : s | SEEN_OUT;
      if ((tcpFlags & (FIN | RST)) !== 0) s |= ENDING;
      this.tcpStateOf[leased] = s;
    } else {
      this.tcpStateOf[leased] = this.tcpStateOf[leased]! | SEEN_OUT;
    }
    return leased;
  }

  /**
   * The local port for an inbound packet to `leasedPort`, refreshing the row;
   * -1 when there is no row for this protocol or it has expired (then it is
   * removed and its port returned).
   */
  inbound(protocol: number, leasedPort: number, tcpFlags: number, now: number): number {
    leasedPort &= 0xffff;
    if (this.protocolOf[leasedPort] !== protocol || protocol === 0) return NONE;
    if (this.isExpired(leasedPort, now)) {
      this.drop(leasedPort, true);
      this.counters.expired++;
      return NONE;
    }
    this.lastUseOf[leasedPort] = now;
    let s = this.tcpStateOf[leasedPort]!;
    if (protocol === 6) {
      s = (tcpFlags & (SYN | ACK)) === SYN ? SEEN_IN | (s & HANDED) : s | SEEN_IN;
      if ((tcpFlags & (FIN | RST)) !== 0) s |= ENDING;
    } else {
      s |= SEEN_IN;
    }
    if (
      (s & (SEEN_OUT | SEEN_IN | ENDING | HANDED)) === (SEEN_OUT | SEEN_IN) &&
      protocol !== 1 &&
      this.observer !== undefined
    ) {
      s |= HANDED;
      this.tcpStateOf[leasedPort] = s;
      this.observer.established(protocol, this.localOf[leasedPort]!, leasedPort);
    }
    this.tcpStateOf[leasedPort] = s;
    return this.localOf[leasedPort]!;
  }

  /** The leased port of a live row, without creating or refreshing anything; -1 if none. */
  peekLeased(protocol: number, localPort: number, now: number): number {
    const plane = translatedProtocolPlane(protocol);
    if (plane < 0) return NONE;
    const leased = this.leasedOf[plane * PLANE + (localPort & 0xffff)]!;
    return leased === NONE || this.isExpired(leased, now) ? NONE : leased;
  }

  /** The local port of a live row, without refreshing it (ICMP errors must not keep rows alive); -1 if none. */
  peekLocal(protocol: number, leasedPort: number, now: number): number {
    leasedPort &= 0xffff;
    if (protocol === 0 || this.protocolOf[leasedPort] !== protocol || this.isExpired(leasedPort, now))
      return NONE;
    return this.localOf[leasedPort]!;
  }

  /** Removes the row of a leased port and returns the port to the lease source. */
  remove(leasedPort: number): boolean {
    leasedPort &= 0xffff;
    if (this.protocolOf[leasedPort] === 0) return false;
    this.drop(leasedPort, true);
    this.counters.removed++;
    return true;
  }

  /**
   * Removes the rows whose leased ports lie in [first, first + count): the
   * lease was withdrawn or expired, so the ports are not returned to it.
   */
  dropLease(first: number, count: number): number {
    let n = 0;
    const end = Math.min(first + count, PLANE);
    for (let p = Math.max(first, 0); p < end; p++) {
      if (this.protocolOf[p] === 0) continue;
      this.drop(p, false);
      n++;
    }
    this.counters.removed += n;
    return n;
  }

  /**
   * Examines at most `budget` rows, continuing where the last call stopped,
   * and removes those idle past their timer (returning their ports).
   */
  sweep(now: number, budget = 256): number {
    let removed = 0;
    const limit = Math.min(budget, this.live);
    for (let n = 0; n < limit && this.live > 0; n++) {
      if (this.cursor >= this.live) this.cursor = 0;
      const leased = this.active[this.cursor]!;
      if (this.isExpired(leased, now)) {
        // The last row moves into this place; look at it next.
        this.drop(leased, true);
        removed++;
      } else {
        this.cursor++;
      }
    }
    this.counters.expired += removed;
    return removed;
  }

  /** FIG. 11 as rows, by leased port. */
  rows(): SpttRow[] {
    const out: SpttRow[] = [];
    for (let i = 0; i < this.live; i++) {
      const p = this.active[i]!;
      const lastUse = this.lastUse(p);
      out.push({
        localPort: this.localOf[p]!,
        leasedPort: p,
        protocol: this.protocolOf[p]!,
        lastUse,
        timer: this.timerClass(p),
        expiresAt: lastUse + this.timeoutOf(p),
      });
    }
    return out.sort((a, b) => a.leasedPort - b.leasedPort);
  }

  /** Removes every row; ports go back to the source unless `returnPorts` is false. */
  clear(returnPorts = true): void {
    while (this.live > 0) this.drop(this.active[this.live - 1]!, returnPorts);
    this.cursor = 0;
  }

  private timerClass(leased: number): SpttTimerClass {
    const protocol = this.protocolOf[leased];
    if (protocol === 17) return 'udp';
    if (protocol === 1) return 'icmp';
    const s = this.tcpStateOf[leased]!;
    return (s & ENDING) === 0 && (s & (SEEN_OUT | SEEN_IN)) === (SEEN_OUT | SEEN_IN)
      ? 'tcp-established'
      : 'tcp-transitory';
  }

  private timeoutOf(leased: number): number {
    const protocol = this.protocolOf[leased];
    if (protocol === 17) return this.timeouts.udpMs;
    if (protocol === 1) return this.timeouts.icmpMs;
    const s = this.tcpStateOf[leased]!;
    return (s & ENDING) === 0 && (s & (SEEN_OUT | SEEN_IN)) === (SEEN_OUT | SEEN_IN)
      ? this.timeouts.tcpEstablishedMs
      : this.timeouts.tcpTransitoryMs;
  }

  private isExpired(leased: number, now: number): boolean {
    return now - this.lastUse(leased) > this.timeoutOf(leased);
  }

  /** The row's last use on either data path. */
  private lastUse(leased: number): number {
    const own = this.lastUseOf[leased]!;
    if ((this.tcpStateOf[leased]! & HANDED) === 0 || this.observer === undefined) return own;
    return Math.max(own, this.observer.lastUse(this.protocolOf[leased]!, leased));
  }

  private drop(leased: number, returnPort: boolean): void {
    // The other data path lets go first: the leased port may serve another row at once.
    if ((this.tcpStateOf[leased]! & HANDED) !== 0) {
      this.tcpStateOf[leased] = 0;
      this.observer?.removed(this.protocolOf[leased]!, this.localOf[leased]!, leased);
    }
    const plane = translatedProtocolPlane(this.protocolOf[leased]!);
    this.leasedOf[plane * PLANE + this.localOf[leased]!] = NONE;
    this.protocolOf[leased] = 0;
    const at = this.activeIndexOf[leased]!;
    const last = this.active[--this.live]!;
    this.active[at] = last;
    this.activeIndexOf[last] = at;
    this.activeIndexOf[leased] = NONE;
    if (returnPort) this.source.returnPort(leased);
  }
}
