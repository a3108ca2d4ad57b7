/**
 * Packets for the forwarder tests, built with the wire codec's emit
 * functions, and a rig: RouterTables with leases, a forwarder over in-memory
 * sinks that record what was sent, and a fake clock.
 */
import { MemoryDevice } from '../../../src/io/memory.ts';
import { SlotBuffer } from '../../../src/io/slots.ts';
import { RouterForwarder } from '../../../src/router/data-path/forwarder.ts';
import { RouterTables } from '../../../src/router/data-path/tables/router-tables.ts';
import { FakeClock } from '../../../src/util/clock.ts';
import { emitAh } from '../../../src/wire/ah.ts';
import { emitEsp } from '../../../src/wire/esp.ts';
import { emitIcmp } from '../../../src/wire/icmp.ts';
import { emitIpip } from '../../../src/wire/ipip.ts';
import { emitIpv4, ipv4FromString } from '../../../src/wire/ipv4.ts';
import { IpProtocol } from '../../../src/wire/result.ts';
import { emitTcp } from '../../../src/wire/tcp.ts';
import { emitUdp } from '../../../src/wire/udp.ts';

export const a = (text: string): number => ipv4FromString(text)!;

export const SHARED = a('198.51.100.30');
export const LAN = a('10.0.0.7');
export const H1 = a('10.0.0.1');
export const H2 = a('10.0.0.3');
/** On the LAN, holds no lease. */
export const H9 = a('10.0.0.9');
export const SERVER = a('203.0.113.3');
export const HOP = a('192.0.2.1');

export interface IpOpts {
  id?: number;
  ttl?: number;
  /** Ipv4Flag bits (DF 2, MF 1). */
  flags?: number;
  /** In 8-byte units. */
  fragmentOffset?: number;
}

/** IPv4 header + payload; the header checksum computed by emitIpv4. */
export function ip(
  src: number,
  dst: number,
  protocol: number,
  payload: Uint8Array,
  o: IpOpts = {},
): Uint8Array {
  const b = new Uint8Array(20 + payload.length);
  emitIpv4(
    {
      tos: 0,
      identification: o.id ?? 0x1234,
      flags: o.flags ?? 0,
      fragmentOffset: o.fragmentOffset ?? 0,
      ttl: o.ttl ?? 64,
      protocol,
      src,
      dst,
      options: [],
      payloadLength: payload.length,
    },
    b,
    0,
  );
  b.set(payload, 20);
  return b;
}

export function tcp(
  src: number,
  sport: number,
  dst: number,
  dport: number,
  data = 0,
  o: IpOpts = {},
): Uint8Array {
  const seg = new Uint8Array(20 + data);
  for (let i = 0; i < data; i++) seg[20 + i] = i & 0xff;
  emitTcp(
    {
      srcPort: sport,
      dstPort: dport,
      seq: 1000,
      ack: 0,
      reserved: 0,
      flags: 0x02,
      window: 64240,
      urgentPointer: 0,
      options: [],
      payload: seg.subarray(20),
    },
    seg,
    0,
    src,
    dst,
  );
  return ip(src, dst, IpProtocol.TCP, seg, o);
}

export function udp(
  src: number,
  sport: number,
  dst: number,
  dport: number,
  data = 4,
  o: IpOpts = {},
): Uint8Array {
  const dg = new Uint8Array(8 + data);
  for (let i = 0; i < data; i++) dg[8 + i] = (i * 7) & 0xff;
  emitUdp({ srcPort: sport, dstPort: dport, hasChecksum: true, payload: dg.subarray(8) }, dg, 0, src, dst);
  return ip(src, dst, IpProtocol.UDP, dg, o);
}

export function echo(src: number, dst: number, kind: 'echo-request' | 'echo-reply', id: number): Uint8Array {
  const m = new Uint8Array(8 + 16);
  emitIcmp({ kind, code: 0, identifier: id, sequence: 1, data: new Uint8Array(16).fill(0xab) }, m, 0);
  return ip(src, dst, IpProtocol.ICMP, m);
}

/** An ICMP error from src to dst quoting the first `quote` bytes of `original`. */
export function icmpError(
  src: number,
  dst: number,
  kind: 'destination-unreachable' | 'time-exceeded',
  code: number,
  original: Uint8Array,
  quote = 28,
): Uint8Array {
  const quoted = original.subarray(0, Math.min(quote, original.length));
  const m = new Uint8Array(8 + quoted.length);
  if (kind === 'destination-unreachable')
    emitIcmp({ kind, code, originalLength: 0, nextHopMtu: code === 4 ? 1400 : 0, quoted }, m, 0);
  else emitIcmp({ kind, code, originalLength: 0, quoted }, m, 0);
  return ip(src, dst, IpProtocol.ICMP, m);
}

export function esp(src: number, dst: number, spi: number, o: IpOpts = {}): Uint8Array {
  const p = new Uint8Array(8 + 32);
  emitEsp({ spi, sequence: 1, payload: new Uint8Array(32).fill(0x5a) }, p, 0);
  return ip(src, dst, IpProtocol.ESP, p, o);
}

export function ah(src: number, dst: number, spi: number): Uint8Array {
  const p = new Uint8Array(12 + 12 + 8);
  emitAh(
    { nextHeader: IpProtocol.UDP, reserved: 0, spi, sequence: 1, icv: new Uint8Array(12).fill(7) },
    p,
    0,
  );
  p.fill(0x33, 24);
  return ip(src, dst, IpProtocol.AH, p);
}

/** The host's tunnel: outer header from `host` to `to` (the router), protocol 4. */
export function tunnel(host: number, inner: Uint8Array, to = LAN): Uint8Array {
  const b = new Uint8Array(20 + inner.length);
  emitIpip(
    {
      outer: {
        tos: 0,
        identification: 7,
        flags: 0,
        fragmentOffset: 0,
        ttl: 64,
        protocol: IpProtocol.IPIP,
        src: host,
        dst: to,
        options: [],
        payloadLength: inner.length,
      },
      inner,
    },
    b,
    0,
  );
  return b;
}

/**
 * Cuts a datagram into fragments at the given payload offsets (multiples of
 * 8), each with its own header; returns them in order.
 */
export function fragment(datagram: Uint8Array, cuts: number[]): Uint8Array[] {
  const payload = datagram.subarray(20);
  const bounds = [0, ...cuts, payload.length];
  const src = (datagram[12]! << 24) | (datagram[13]! << 16) | (datagram[14]! << 8) | datagram[15]!;
  const dst = (datagram[16]! << 24) | (datagram[17]! << 16) | (datagram[18]! << 8) | datagram[19]!;
  const id = (datagram[4]! << 8) | datagram[5]!;
  const out: Uint8Array[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const from = bounds[i]!;
    const to = bounds[i + 1]!;
    out.push(
      ip(src >>> 0, dst >>> 0, datagram[9]!, payload.subarray(from, to), {
        id,
        flags: i + 2 < bounds.length ? 1 : 0,
        fragmentOffset: from / 8,
      }),
    );
  }
  return out;
}

export interface Rig {
  fwd: RouterForwarder;
  tables: RouterTables;
  /** Records what the forwarder wrote into the TUN. */
  tun: MemoryDevice;
  /** Records what the forwarder sent to hosts. */
  lan: MemoryDevice;
  clock: FakeClock;
  /** Runs packets from hosts (already tunnelled) through fromLan as one batch. */
  fromLan(...packets: Uint8Array[]): void;
  /** Runs packets from the WAN through fromWan as one batch. */
  fromWan(...packets: Uint8Array[]): void;
  drops(): Record<string, number>;
  totalDrops(): number;
}

/** H1 leases ports 1024-1055 and SPIs 256-319; H2 ports 1056-1087; H9 nothing. */
export function rig(): Rig {
  const clock = new FakeClock();
  const tables = new RouterTables({ fragments: { seed: 11 }, clock });
  tables.ownership.add(H1, 'port', 1024, 32);
  tables.ownership.add(H2, 'port', 1056, 32);
  tables.ownership.add(H1, 'spi', 256, 64);
  const tun = new MemoryDevice({ name: 'tun', record: true });
  const lan = new MemoryDevice({ name: 'lan', record: true });
  const fwd = new RouterForwarder({
    sharedAddress: SHARED,
    lanAddress: LAN,
    tables,
    tun,
    lan,
    clock,
  });
  const lanSlots = new SlotBuffer(64);
  const wanSlots = new SlotBuffer(64);
  const run = (slots: SlotBuffer, packets: Uint8Array[], f: (s: SlotBuffer, n: number) => void) => {
    packets.forEach((p, i) => {
      if (!slots.put(i, p)) throw new Error('packet does not fit a slot');
    });
    f(slots, packets.length);
  };
  return {
    fwd,
    tables,
    tun,
    lan,
    clock,
    fromLan: (...p) => run(lanSlots, p, (s, n) => fwd.fromLan(s, n)),
    fromWan: (...p) => run(wanSlots, p, (s, n) => fwd.fromWan(s, n)),
    drops: () => Object.fromEntries(Object.entries(fwd.drops.snapshot()).filter(([, v]) => v > 0)),
    totalDrops: () => Object.values(fwd.drops.snapshot()).reduce((x, y) => x + y, 0),
  };
}

export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
