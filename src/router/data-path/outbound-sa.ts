import { FragmentTable } from './tables/fragment-table.ts';

/** Another record of outbound SAs: the host that last sent on (remote, protocol, SPI), or 0. */
export interface OutboundSaSource {
  ownerOf(remote: number, protocol: number, spi: number): number;
}

/**
 * Which host sends on an outbound IPsec SA, learned from the packets
 * themselves, so that an ICMP error quoting one of them can be tunnelled to
 * its sender.
 *
 * FIG. 21 maps the SPIs a host leased, which are the SPIs of its *inbound*
 * SAs: the remote peer puts them in the packets it sends. The packets a host
 * sends carry the remote peer's SPI instead (patent: "for outgoing SAs, a SPI
 * is selected by the remote network device and a locally unique SPI is not
 * used by the router"). So an ICMP error from the path (fragmentation needed,
 * unreachable), which quotes an outbound ESP or AH packet, names a SPI the
 * SPI table does not know. The remote chose that SPI unique among its own
 * inbound SAs, so (remote address, protocol, SPI) names one outbound SA, and
 * the router records its sender as packets go out.
 *
 * Storage is a FragmentTable (a preallocated ring with a seeded hash index;
 * no allocation) keyed as (remote, SPI, protocol, 0). An entry lives
 * `timeoutMs` from when it was learned and is learned again by the first
 * packet after that; an ICMP error answers a packet that has just gone out,
 * so it finds a fresh entry. A full ring evicts the oldest SA.
 *
 * What another data path forwarded (the eBPF fast path, which keeps its own
 * record of outbound SAs) this table never sees: `fallback` is asked when
 * it has no answer.
 */
export class OutboundSaTable {
  readonly #table: FragmentTable;
  readonly #fallback: OutboundSaSource | undefined;

  constructor(
    options: { capacity?: number; timeoutMs?: number; seed?: number; fallback?: OutboundSaSource } = {},
  ) {
    this.#fallback = options.fallback;
    this.#table = new FragmentTable({
      capacity: options.capacity ?? 4096,
      timeoutMs: options.timeoutMs ?? 600_000,
      ...(options.seed === undefined ? {} : { seed: options.seed }),
    });
  }

  /** Notes that `host` sent an ESP/AH packet to `remote` with `spi`. */
  learn(remote: number, protocol: number, spi: number, host: number, now: number): void {
    if (this.#table.lookup(remote, spi, protocol, 0, now) !== host)
      this.#table.record(remote, spi, protocol, 0, host, now);
  }

  /** The host that last sent on the SA, or 0. */
  ownerOf(remote: number, protocol: number, spi: number, now: number): number {
    const host = this.#table.lookup(remote, spi, protocol, 0, now);
    return host !== 0 || this.#fallback === undefined ? host : this.#fallback.ownerOf(remote, protocol, spi);
  }

  expire(now: number): void {
    this.#table.expireHead(now);
  }

  get size(): number {
    return this.#table.size;
  }

  /** SAs learned (or learned again) since start. */
  get learned(): number {
    return this.#table.counters.recorded;
  }
}
