/**
 * The router's check of a datagram a host tunnelled to it (patent, after
 * Table 8: "the router checks that 10.0.0.1 owns source port 1032"): the
 * inner datagram must come from the shared address and from something the
 * tunnel's outer source leased. Nothing in the packet is changed.
 *
 * | inner datagram                     | the outer source must               |
 * |------------------------------------|-------------------------------------|
 * | TCP, UDP                           | own the source port (FIG. 8)        |
 * | ICMP echo / timestamp              | own the identifier (FIG. 8)         |
 * | ICMP error (host rejecting a       | own the quoted datagram's           |
 * | datagram it received)              | destination port / id / SPI         |
 * | ESP, AH                            | hold some lease                     |
 * | non-first fragment                 | hold some lease                     |
 * | UDP to 500, or to 4500 with the    | own the source port, or have held   |
 * | non-ESP marker (IKE)               | it until a withdrawal moments ago   |
 *
 * The last row is the drain (tables/withdrawn-ports.ts): when the router
 * withdraws the port block that holds a host's IKE port, the host's Delete
 * for the SAs resting on it (docs/ike.md, "Revocation reaches the SAs that
 * are up") leaves from that port just after the withdrawal. It goes out for
 * IKE_DRAIN_MS, from the former owner only, and only IKE: ESP in UDP (a
 * non-zero SPI after the UDP header), other UDP, TCP and ICMP from the
 * block are `spoofed-port` at once, and nothing is let in (the block has no
 * owner on the way in). The block is in quarantine meanwhile, so no other
 * host owns those ports. Passed packets are counted as
 * `withdrawn-ike-drain`; they stamp no IAPTT row (the ports are nobody's).
 *
 * ESP and AH going out carry the remote peer's SPI, not one the host leased,
 * so there is nothing of the host's to check beyond its lease; their
 * (remote, SPI) is learned so ICMP errors about them can come back.
 *
 * Non-first fragments carry no ports. The router keeps no per-datagram state
 * for outbound fragments (it would have to track every fragmented datagram
 * of every host, and hold fragments that overtake their first): a host that
 * holds a lease may send them. What that allows is narrow: a host could
 * already send arbitrary datagrams from its own ports, and a forged later
 * fragment only joins a datagram at the remote if it matches the remote's
 * (src, dst, protocol, id) reassembly key, all of which an attacker on the
 * LAN would have to guess for someone else's datagram in flight.
 */
import { AhField } from '../../wire/ah.ts';
import { u16, u32 } from '../../wire/bytes.ts';
import { EspField } from '../../wire/esp.ts';
import { IcmpField, IcmpView, isIcmpErrorType, isIcmpQueryType } from '../../wire/icmp.ts';
import { QuotedIpv4View } from '../../wire/icmp-quoted.ts';
import { checkIpv4, Ipv4Field, Ipv4FragmentWord } from '../../wire/ipv4.ts';
import { PortField } from '../../wire/ports.ts';
import { IpProtocol } from '../../wire/result.ts';
import { UDP_HEADER_LENGTH } from '../../wire/udp.ts';
import { IKE_PORT, NATT_PORT, NON_ESP_MARKER_LENGTH } from '../../ike/header.ts';
import type { CounterSet } from '../../metrics/counters.ts';
import type { DropReason, TrafficCounter } from './counters.ts';
import type { OutboundSaTable } from './outbound-sa.ts';
import type { LeaseOwnership } from './tables/lease-ownership.ts';
import type { SharedAddresses } from './shared-addresses.ts';
import type { RouterTables } from './tables/router-tables.ts';
import { transportMinimum } from './transport-rules.ts';

// The fields read, as module constants (see wire/bytes.ts).
const IP_VERSION_IHL = Ipv4Field.VERSION_IHL;
const IP_TOTAL_LENGTH = Ipv4Field.TOTAL_LENGTH;
const IP_FLAGS_FRAGMENT = Ipv4Field.FLAGS_FRAGMENT;
const IP_PROTOCOL = Ipv4Field.PROTOCOL;
const IP_SRC = Ipv4Field.SRC;
const IP_DST = Ipv4Field.DST;
const IP_FRAGMENT_OFFSET = Ipv4FragmentWord.OFFSET;
const IP_MF = Ipv4FragmentWord.MF;
const SRC_PORT = PortField.SRC_PORT;
const DST_PORT = PortField.DST_PORT;
// IKE's ports; on 4500 a non-ESP marker, four zero bytes, precedes the IKE header (RFC 3948 2.2).
const IKE = IKE_PORT;
const NATT = NATT_PORT;
const UDP_HEADER = UDP_HEADER_LENGTH;
const NON_ESP_MARKER_END = UDP_HEADER + NON_ESP_MARKER_LENGTH;
const ICMP_TYPE = IcmpField.TYPE;
const ICMP_IDENTIFIER = IcmpField.IDENTIFIER;
const ESP_SPI = EspField.SPI;
const AH_SPI = AhField.SPI;

export class OutboundCheck {
  readonly #shared: SharedAddresses;
  readonly #tables: RouterTables;
  readonly #owners: LeaseOwnership;
  readonly #sas: OutboundSaTable;
  readonly #traffic: CounterSet<TrafficCounter> | undefined;
  readonly #icmpView = new IcmpView();
  readonly #quoted = new QuotedIpv4View();

  /** `traffic`: where IKE let out by the drain is counted (`withdrawn-ike-drain`). */
  constructor(
    shared: SharedAddresses,
    tables: RouterTables,
    sas: OutboundSaTable,
    traffic?: CounterSet<TrafficCounter>,
  ) {
    this.#shared = shared;
    this.#tables = tables;
    this.#owners = tables.ownership;
    this.#sas = sas;
    this.#traffic = traffic;
  }

  /**
   * Null when `host` may send the inner datagram at buf[off, off + len) to
   * the WAN, else why not. Stamps the IAPTT row of a port or identifier in
   * use. Never throws for any bytes.
   */
  check(buf: Uint8Array, off: number, len: number, host: number, now: number): DropReason | null {
    if (checkIpv4(buf, off, len, true) !== null) return 'inner-malformed';
    const src = u32(buf, off + IP_SRC);
    // The host's ports are its ports on the address it sends from (util/block.ts).
    const base = this.#shared.baseOf(src);
    if (base < 0) return 'not-shared-source';
    const hl = (buf[off + IP_VERSION_IHL]! & 0x0f) << 2;
    const tlen = u16(buf, off + IP_TOTAL_LENGTH) - hl;
    const t = off + hl;
    const protocol = buf[off + IP_PROTOCOL]!;
    const frag = u16(buf, off + IP_FLAGS_FRAGMENT);
    const fragmentOffset = frag & IP_FRAGMENT_OFFSET;
    if (fragmentOffset !== 0) {
      if (fragmentOffset === 1 && protocol === IpProtocol.TCP) return 'overlapping-fragment';
      return this.#owners.holds(host) ? null : 'no-lease';
    }
    if (tlen < transportMinimum(protocol))
      return (frag & IP_MF) !== 0 ? 'tiny-fragment' : 'transport-truncated';
    const tables = this.#tables;
    switch (protocol) {
      case IpProtocol.TCP:
      case IpProtocol.UDP: {
        const port = u16(buf, t + SRC_PORT);
        if (!this.#owners.owns(host, base + port)) {
          if (protocol !== IpProtocol.UDP || !this.#drainsIke(buf, t, tlen, host, base + port, now))
            return 'spoofed-port';
          this.#traffic?.inc('withdrawn-ike-drain');
          return null;
        }
        tables.iaptt.touch(protocol, base + port, host, now);
        return null;
      }
      case IpProtocol.ICMP:
        return this.#icmpCheck(buf, t, tlen, host, src, base, now);
      case IpProtocol.ESP:
      case IpProtocol.AH: {
        if (!this.#owners.holds(host)) return 'no-lease';
        const spi = u32(buf, t + (protocol === IpProtocol.ESP ? ESP_SPI : AH_SPI));
        this.#sas.learn(u32(buf, off + IP_DST), protocol, spi, host, now);
        return null;
      }
      default:
        return 'unsupported-protocol';
    }
  }

  /** The UDP datagram at t is IKE from a port block withdrawn from `host` within the drain. */
  #drainsIke(buf: Uint8Array, t: number, tlen: number, host: number, port: number, now: number): boolean {
    const withdrawn = this.#tables.withdrawnPorts;
    if (withdrawn.size === 0) return false;
    const dport = u16(buf, t + DST_PORT);
    if (dport === NATT) {
      if (tlen < NON_ESP_MARKER_END || u32(buf, t + UDP_HEADER) !== 0) return false;
    } else if (dport !== IKE) return false;
    return withdrawn.drains(host, port, now);
  }

  #icmpCheck(
    buf: Uint8Array,
    t: number,
    tlen: number,
    host: number,
    src: number,
    base: number,
    now: number,
  ): DropReason | null {
    const type = buf[t + ICMP_TYPE]!;
    const tables = this.#tables;
    if (isIcmpQueryType(type)) {
      const id = u16(buf, t + ICMP_IDENTIFIER);
      if (!this.#owners.owns(host, base + id)) return 'spoofed-port';
      tables.iaptt.touch(IpProtocol.ICMP, base + id, host, now);
      return null;
    }
    if (!isIcmpErrorType(type)) return 'unsupported-icmp';
    // The host rejects a datagram it received: the quote is of a datagram to
    // the shared address, at one of the host's ports.
    const q = this.#quoted.wrapQuoted(this.#icmpView.wrap(buf, t, tlen));
    if (q.check() !== null) return 'icmp-error-malformed';
    if (q.dst !== src) return 'icmp-error-not-ours';
    if (!q.isFirstFragment) return this.#owners.holds(host) ? null : 'no-lease';
    switch (q.protocol) {
      case IpProtocol.TCP:
      case IpProtocol.UDP:
        return this.#owners.owns(host, base + q.destinationPort) ? null : 'spoofed-port';
      case IpProtocol.ICMP:
        if (isIcmpQueryType(q.icmpType))
          return this.#owners.owns(host, base + q.icmpIdentifier) ? null : 'spoofed-port';
        return this.#owners.holds(host) ? null : 'no-lease';
      case IpProtocol.ESP:
        return this.#owners.spiOwner(q.espSpi) === host ? null : 'spoofed-port';
      case IpProtocol.AH:
        return this.#owners.spiOwner(q.ahSpi) === host ? null : 'spoofed-port';
      default:
        return this.#owners.holds(host) ? null : 'no-lease';
    }
  }
}
