/**
 * Which host an inbound datagram for the shared address belongs to: the
 * router's demultiplexing step (patent Tables 4/10 -> 5/11 and the IPsec walk
 * of FIG. 21), read from the packet in place without changing it.
 *
 * | datagram                           | key                        | table            |
 * |------------------------------------|----------------------------|------------------|
 * | TCP, UDP                           | destination port           | FIG. 8           |
 * | ICMP echo / timestamp (both ways)  | identifier                 | FIG. 8 (shared)  |
 * | ICMP error                         | quoted datagram's source   | FIG. 8, or the   |
 * |                                    | port, query id, or SPI     | outbound SA table|
 * | ESP, AH                            | SPI (0-255 never owned)    | FIG. 21          |
 * | first fragment (MF, offset 0)      | as above, then recorded    | FragmentTable    |
 * | later fragment                     | (src, dst, proto, id)      | FragmentTable,   |
 * |                                    |                            | else held        |
 */
import { AhField } from '../../wire/ah.ts';
import { u16, u32 } from '../../wire/bytes.ts';
import { EspField, MIN_SPI } from '../../wire/esp.ts';
import { IcmpField, IcmpView, isIcmpErrorType, isIcmpQueryType } from '../../wire/icmp.ts';
import { QuotedIpv4View } from '../../wire/icmp-quoted.ts';
import { checkIpv4, Ipv4Field, Ipv4FragmentWord } from '../../wire/ipv4.ts';
import { PortField } from '../../wire/ports.ts';
import { IpProtocol } from '../../wire/result.ts';
import { UDP_HEADER_LENGTH } from '../../wire/udp.ts';
import { NATT_PORT } from '../../ike/header.ts';
import type { DropReason } from './counters.ts';
import type { OutboundSaTable } from './outbound-sa.ts';
import type { SharedAddresses } from './shared-addresses.ts';
import type { RouterTables } from './tables/router-tables.ts';
import { transportMinimum } from './transport-rules.ts';

/** `owner()` kept the datagram (an early fragment): neither forward nor count it as dropped. */
export const HELD = -1;

// The fields read, as module constants (see wire/bytes.ts).
const IP_VERSION_IHL = Ipv4Field.VERSION_IHL;
const IP_TOTAL_LENGTH = Ipv4Field.TOTAL_LENGTH;
const IP_IDENTIFICATION = Ipv4Field.IDENTIFICATION;
const IP_FLAGS_FRAGMENT = Ipv4Field.FLAGS_FRAGMENT;
const IP_PROTOCOL = Ipv4Field.PROTOCOL;
const IP_SRC = Ipv4Field.SRC;
const IP_DST = Ipv4Field.DST;
const IP_FRAGMENT_OFFSET = Ipv4FragmentWord.OFFSET;
const IP_MF = Ipv4FragmentWord.MF;
const DST_PORT = PortField.DST_PORT;
const SRC_PORT = PortField.SRC_PORT;
/** UDP-encapsulated ESP (RFC 3948): from this port, the SPI right after the UDP header. */
const NATT = NATT_PORT;
const UDP_HEADER = UDP_HEADER_LENGTH;
/** The UDP header, then the SPI and sequence number of ESP's header. */
const UDP_ESP_MINIMUM = UDP_HEADER + 8;
const ICMP_TYPE = IcmpField.TYPE;
const ICMP_IDENTIFIER = IcmpField.IDENTIFIER;
const ESP_SPI = EspField.SPI;
const AH_SPI = AhField.SPI;
/** SPIs below it are reserved (RFC 4303 2.1): no host ever owns one. */
const LOWEST_SPI = MIN_SPI;

export class InboundDemux {
  /** Why the last `owner()` returned 0. */
  reason: DropReason = 'no-owner';
  /**
   * Set by `owner()` when the datagram was a first fragment whose owner was
   * found (and recorded): held later fragments of it may now be released.
   * The datagram's identity is in src, dst, protocol and id.
   */
  firstFragment = false;
  src = 0;
  dst = 0;
  protocol = 0;
  id = 0;

  readonly #shared: SharedAddresses;
  /** Where the ports of the address the datagram in hand is for start in the ownership index. */
  #base = 0;
  readonly #tables: RouterTables;
  readonly #sas: OutboundSaTable;
  readonly #icmp = new IcmpView();
  readonly #quoted = new QuotedIpv4View();

  /** `shared`: the router's shared addresses; the ports of each are its own (util/block.ts). */
  constructor(shared: SharedAddresses, tables: RouterTables, sas: OutboundSaTable) {
    this.#shared = shared;
    this.#tables = tables;
    this.#sas = sas;
  }

  /**
   * The owner (internal IPv4 address) of the datagram at buf[off, off + len),
   * 0 when it is to be dropped (`reason` says why), or HELD. Stamps the
   * IAPTT row of what it forwards. Never throws for any bytes.
   */
  owner(buf: Uint8Array, off: number, len: number, now: number): number {
    this.firstFragment = false;
    if (checkIpv4(buf, off, len, true) !== null) return this.#drop('ip-malformed');
    const dst = u32(buf, off + IP_DST);
    const base = this.#shared.baseOf(dst);
    if (base < 0) return this.#drop('not-shared-destination');
    this.#base = base;
    this.dst = dst;
    const hl = (buf[off + IP_VERSION_IHL]! & 0x0f) << 2;
    const total = u16(buf, off + IP_TOTAL_LENGTH);
    const protocol = buf[off + IP_PROTOCOL]!;
    const frag = u16(buf, off + IP_FLAGS_FRAGMENT);
    const fragmentOffset = frag & IP_FRAGMENT_OFFSET;
    const moreFragments = (frag & IP_MF) !== 0;
    const t = off + hl;
    const tlen = total - hl;

    if (fragmentOffset !== 0) return this.#laterFragment(buf, off, total, protocol, fragmentOffset, now);
    if (tlen < transportMinimum(protocol))
      return this.#drop(moreFragments ? 'tiny-fragment' : 'transport-truncated');

    const owner = this.#transportOwner(buf, t, tlen, protocol, now);
    if (owner !== 0 && moreFragments) {
      this.src = u32(buf, off + IP_SRC);
      this.protocol = protocol;
      this.id = u16(buf, off + IP_IDENTIFICATION);
      this.#tables.fragments.record(this.src, this.dst, protocol, this.id, owner, now);
      this.firstFragment = true;
    }
    return owner;
  }

  #laterFragment(
    buf: Uint8Array,
    off: number,
    total: number,
    protocol: number,
    fragmentOffset: number,
    now: number,
  ): number {
    // RFC 1858 3.2: a TCP fragment at offset 1 (8 bytes) can only serve to
    // rewrite the flags of the first one at reassembly.
    if (fragmentOffset === 1 && protocol === IpProtocol.TCP) return this.#drop('overlapping-fragment');
    const src = u32(buf, off + IP_SRC);
    const id = u16(buf, off + IP_IDENTIFICATION);
    const owner = this.#tables.fragments.lookup(src, this.dst, protocol, id, now);
    if (owner !== 0) return owner;
    if (this.#tables.held.hold(src, this.dst, protocol, id, buf, off, total, now)) return HELD;
    return this.#drop('fragment-too-big');
  }

  #transportOwner(buf: Uint8Array, t: number, tlen: number, protocol: number, now: number): number {
    const tables = this.#tables;
    switch (protocol) {
      case IpProtocol.TCP:
      case IpProtocol.UDP: {
        const port = u16(buf, t + DST_PORT);
        const owner = tables.ownership.portOwner(this.#base + port);
        if (owner === 0) return this.#drop('no-owner');
        if (
          protocol === IpProtocol.UDP &&
          tables.withdrawnSpis.size > 0 &&
          this.#withdrawnInUdp(buf, t, tlen)
        )
          return this.#drop('spi-withdrawn');
        tables.iaptt.touch(protocol, this.#base + port, owner, now);
        return owner;
      }
      case IpProtocol.ICMP:
        return this.#icmpOwner(buf, t, tlen, now);
      case IpProtocol.ESP:
        return this.#spiOwner(u32(buf, t + ESP_SPI));
      case IpProtocol.AH:
        return this.#spiOwner(u32(buf, t + AH_SPI));
      default:
        return this.#drop('unsupported-protocol');
    }
  }

  /**
   * ESP in UDP (RFC 3948) from port 4500 on an SA of a withdrawn SPI block:
   * demultiplexed by the host's port, it would reach the host all the same.
   * Zero where the SPI would be is the non-ESP marker (IKE), which passes.
   */
  #withdrawnInUdp(buf: Uint8Array, t: number, tlen: number): boolean {
    if (u16(buf, t + SRC_PORT) !== NATT || tlen < UDP_ESP_MINIMUM) return false;
    const spi = u32(buf, t + UDP_HEADER);
    return spi !== 0 && this.#tables.withdrawnSpis.has(spi);
  }

  #spiOwner(spi: number): number {
    if (spi < LOWEST_SPI) return this.#drop('reserved-spi');
    const owner = this.#tables.ownership.spiOwner(spi);
    if (owner !== 0) return owner;
    return this.#drop(this.#tables.withdrawnSpis.has(spi) ? 'spi-withdrawn' : 'no-owner');
  }

  #icmpOwner(buf: Uint8Array, t: number, tlen: number, now: number): number {
    const type = buf[t + ICMP_TYPE]!;
    const tables = this.#tables;
    if (isIcmpQueryType(type)) {
      // Requests from outside are demultiplexed by identifier too: the host
      // that owns it answers, keeping the identifier (docs/tables.md).
      const id = u16(buf, t + ICMP_IDENTIFIER);
      const owner = tables.ownership.icmpIdOwner(this.#base + id);
      if (owner === 0) return this.#drop('no-owner');
      tables.iaptt.touch(IpProtocol.ICMP, this.#base + id, owner, now);
      return owner;
    }
    if (!isIcmpErrorType(type)) return this.#drop('unsupported-icmp');
    // The checksum is left to the host, which checks it before acting on the
    // error (RFC 5508 REQ-3); the router changes nothing it covers.
    const q = this.#quoted.wrapQuoted(this.#icmp.wrap(buf, t, tlen));
    if (q.check() !== null) return this.#drop('icmp-error-malformed');
    // The quoted datagram is one a host sent: from the shared address the error came back to.
    if (q.src !== this.dst) return this.#drop('icmp-error-not-ours');
    if (!q.isFirstFragment) return this.#drop('no-owner');
    let owner = 0;
    switch (q.protocol) {
      case IpProtocol.TCP:
      case IpProtocol.UDP:
        owner = tables.ownership.portOwner(this.#base + q.sourcePort);
        break;
      case IpProtocol.ICMP:
        if (isIcmpQueryType(q.icmpType)) owner = tables.ownership.icmpIdOwner(this.#base + q.icmpIdentifier);
        break;
      case IpProtocol.ESP:
        owner = this.#sas.ownerOf(q.dst, IpProtocol.ESP, q.espSpi, now);
        break;
      case IpProtocol.AH:
        owner = this.#sas.ownerOf(q.dst, IpProtocol.AH, q.ahSpi, now);
        break;
    }
    return owner === 0 ? this.#drop('no-owner') : owner;
  }

  #drop(reason: DropReason): number {
    this.reason = reason;
    return 0;
  }
}
