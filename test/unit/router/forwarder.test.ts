import { describe, expect, it } from 'vitest';
import { MemoryDevice, MemoryScheduler } from '../../../src/io/memory.ts';
import { verifiesTo0 } from '../../../src/wire/checksum.ts';
import { IpProtocol } from '../../../src/wire/result.ts';
import { IKE_DRAIN_MS } from '../../../src/router/data-path/tables/withdrawn-ports.ts';
import {
  H1,
  H2,
  H9,
  HOP,
  LAN,
  SERVER,
  SHARED,
  a,
  ah,
  echo,
  esp,
  hex,
  icmpError,
  ip,
  rig,
  tcp,
  tunnel,
  udp,
} from './forwarder-packets.ts';

const u32at = (b: Uint8Array, i: number) =>
  ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;

/** Checks an IP-in-IP datagram the router sent and returns its inner datagram. */
function innerOf(sent: Uint8Array, owner: number): Uint8Array {
  expect(sent[0]).toBe(0x45);
  expect(sent[9]).toBe(IpProtocol.IPIP);
  expect(u32at(sent, 12)).toBe(LAN);
  expect(u32at(sent, 16)).toBe(owner);
  expect(verifiesTo0(sent, 0, 20)).toBe(true);
  expect((sent[2]! << 8) | sent[3]!).toBe(sent.length);
  return sent.subarray(20);
}

describe('RouterForwarder, from the LAN', () => {
  it('strips the tunnel and writes the inner datagram into the TUN byte for byte', () => {
    const r = rig();
    const inner = [
      tcp(SHARED, 1030, SERVER, 80, 100),
      udp(SHARED, 1055, SERVER, 53),
      echo(SHARED, SERVER, 'echo-request', 1040),
    ];
    r.fromLan(...inner.map((p) => tunnel(H1, p)));
    expect(r.tun.sent.map(hex)).toEqual(inner.map(hex));
    expect(r.totalDrops()).toBe(0);
    expect(r.fwd.traffic.get('outbound-packets')).toBe(3);
    expect(r.tun.stats().txBatches).toBe(1);
  });

  it('drops and counts a source port the outer source does not own', () => {
    const r = rig();
    // H2 sends from H1's port; H9 holds nothing at all; H1 from a port nobody leased.
    r.fromLan(
      tunnel(H2, udp(SHARED, 1030, SERVER, 53)),
      tunnel(H9, tcp(SHARED, 1030, SERVER, 80)),
      tunnel(H1, tcp(SHARED, 40000, SERVER, 80)),
      tunnel(H2, echo(SHARED, SERVER, 'echo-request', 1040)),
    );
    expect(r.tun.sent).toHaveLength(0);
    expect(r.drops()).toEqual({ 'spoofed-port': 4 });
    r.fromLan(tunnel(H2, udp(SHARED, 1060, SERVER, 53)));
    expect(r.tun.sent).toHaveLength(1);
  });

  it('drops inner sources other than the shared address and tunnels not addressed to the router', () => {
    const r = rig();
    r.fromLan(
      tunnel(H1, udp(a('10.0.0.1'), 1030, SERVER, 53)),
      tunnel(H1, udp(SHARED, 1030, SERVER, 53), a('10.0.0.8')),
      udp(H1, 1030, LAN, 53),
    );
    expect(r.drops()).toEqual({
      'not-shared-source': 1,
      'tunnel-not-for-router': 1,
      'tunnel-malformed': 1,
    });
  });

  it("checks a host's ICMP errors against the quoted datagram's destination port", () => {
    const r = rig();
    const received = udp(SERVER, 5353, SHARED, 1030);
    const unreachable = icmpError(SHARED, SERVER, 'destination-unreachable', 3, received);
    r.fromLan(tunnel(H1, unreachable), tunnel(H2, unreachable));
    expect(r.tun.sent.map(hex)).toEqual([hex(unreachable)]);
    expect(r.drops()).toEqual({ 'spoofed-port': 1 });
    // A quote of a datagram that was not for the shared address is not the host's to answer.
    r.fromLan(tunnel(H1, icmpError(SHARED, SERVER, 'destination-unreachable', 3, udp(SERVER, 1, HOP, 1030))));
    expect(r.fwd.drops.get('icmp-error-not-ours')).toBe(1);
  });

  it('forwards ESP and AH without looking at the SPI, if the host holds a lease', () => {
    const r = rig();
    // 0x9999 is the remote's SPI: nobody here leased it, and that is fine outbound.
    const out = [esp(SHARED, SERVER, 0x9999), ah(SHARED, SERVER, 0x9999)];
    r.fromLan(tunnel(H1, out[0]!), tunnel(H2, out[1]!), tunnel(H9, out[0]!));
    expect(r.tun.sent.map(hex)).toEqual(out.map(hex));
    expect(r.drops()).toEqual({ 'no-lease': 1 });
  });

  it('lets non-first fragments through from hosts that hold a lease', () => {
    const r = rig();
    const later = udp(SHARED, 1030, SERVER, 53, 8, { flags: 0, fragmentOffset: 100 });
    r.fromLan(tunnel(H2, later), tunnel(H9, later));
    expect(r.tun.sent).toHaveLength(1);
    expect(r.drops()).toEqual({ 'no-lease': 1 });
  });

  it('stamps the IAPTT (FIG. 12) row of the source port on use', () => {
    const r = rig();
    r.fromLan(tunnel(H1, tcp(SHARED, 1030, SERVER, 80)));
    expect(r.tables.iaptt.hostOf(IpProtocol.TCP, 1030)).toBe(H1);
    const first = r.tables.iaptt.lastUse(IpProtocol.TCP, 1030);
    expect(first).toBe(r.clock.now());
    r.clock.advance(5000);
    r.fromWan(tcp(SERVER, 80, SHARED, 1030));
    expect(r.tables.iaptt.lastUse(IpProtocol.TCP, 1030)).toBe(first + 5000);
    r.fromLan(tunnel(H1, echo(SHARED, SERVER, 'echo-request', 1041)));
    expect(r.tables.iaptt.hostOf(IpProtocol.ICMP, 1041)).toBe(H1);
  });
});

describe('RouterForwarder, the drain of a withdrawn port block', () => {
  const WITHDRAWN = { host: '10.0.0.1', kind: 'port' as const, lowest: 1024, count: 32 };
  /** UDP from SHARED:sport to SERVER:dport whose payload (16 bytes, or `size`) starts with `word`; no checksum. */
  const udpWord = (sport: number, dport: number, word: number, size = 16): Uint8Array => {
    const p = udp(SHARED, sport, SERVER, dport, size);
    if (size >= 4) new DataView(p.buffer, p.byteOffset).setUint32(28, word);
    p[26] = p[27] = 0;
    return p;
  };
  const ike500 = udpWord(1030, 500, 0x1234abcd);
  const ike4500 = udpWord(1030, 4500, 0);
  const drained = (r: ReturnType<typeof rig>): number => r.fwd.traffic.snapshot()['withdrawn-ike-drain'];

  it('lets the former owner send IKE (to 500, or to 4500 with the non-ESP marker) from the block, and nothing else', () => {
    const r = rig();
    expect(r.tables.onLeaseRemoved(WITHDRAWN, true)).toBe('removed');
    const espInUdp = udpWord(1030, 4500, 300);
    const markerCut = udpWord(1030, 4500, 0, 2);
    const dns = udpWord(1030, 53, 0);
    const fromOtherPort = udpWord(1030, 501, 0);
    const tcp500 = tcp(SHARED, 1030, SERVER, 500);
    const ping = echo(SHARED, SERVER, 'echo-request', 1030);
    r.fromLan(
      tunnel(H1, ike500),
      tunnel(H1, ike4500),
      tunnel(H1, espInUdp),
      tunnel(H1, markerCut),
      tunnel(H1, dns),
      tunnel(H1, fromOtherPort),
      tunnel(H1, tcp500),
      tunnel(H1, ping),
      // Not the former owner: H2 holds ports, but not these.
      tunnel(H2, ike500),
      tunnel(H9, ike4500),
    );
    expect(r.tun.sent.map(hex)).toEqual([ike500, ike4500].map(hex));
    expect(drained(r)).toBe(2);
    expect(r.drops()).toEqual({ 'spoofed-port': 8 });
    // The ports are nobody's: no IAPTT row, and nothing comes back in (the peer's answer has no owner).
    expect(r.tables.iaptt.hostOf(IpProtocol.UDP, 1030)).toBe(0);
    r.fromWan(udp(SERVER, 500, SHARED, 1030), udp(SERVER, 4500, SHARED, 1030));
    expect(r.lan.sent).toHaveLength(0);
    expect(r.drops()).toEqual({ 'spoofed-port': 8, 'no-owner': 2 });
  });

  it('ends IKE_DRAIN_MS after the withdrawal', () => {
    const r = rig();
    r.tables.onLeaseRemoved(WITHDRAWN, true);
    r.clock.advance(IKE_DRAIN_MS - 1);
    r.fromLan(tunnel(H1, ike500));
    r.clock.advance(1);
    r.fromLan(tunnel(H1, ike500), tunnel(H1, ike4500));
    expect(r.tun.sent).toHaveLength(1);
    expect(drained(r)).toBe(1);
    expect(r.drops()).toEqual({ 'spoofed-port': 2 });
  });

  it('drains only what the router took back: a block that ended or was given back is spoofed-port at once', () => {
    const r = rig();
    r.tables.onLeaseRemoved(WITHDRAWN);
    r.fromLan(tunnel(H1, ike500), tunnel(H1, ike4500));
    expect(r.tun.sent).toHaveLength(0);
    expect(r.drops()).toEqual({ 'spoofed-port': 2 });
  });

  it('ends when the block is leased again: the new owner sends as owner, the former one is spoofed-port', () => {
    const r = rig();
    r.tables.onLeaseRemoved(WITHDRAWN, true);
    expect(r.tables.onLeaseAdded({ ...WITHDRAWN, host: '10.0.0.3' })).toBe('added');
    r.fromLan(tunnel(H1, ike500), tunnel(H2, ike500));
    expect(r.tun.sent.map(hex)).toEqual([hex(ike500)]);
    expect(drained(r)).toBe(0);
    expect(r.drops()).toEqual({ 'spoofed-port': 1 });
    expect(r.tables.iaptt.hostOf(IpProtocol.UDP, 1030)).toBe(H2);
  });
});

describe('RouterForwarder, from the WAN', () => {
  it('tunnels TCP and UDP to the owner of the destination port, inner datagram unchanged', () => {
    const r = rig();
    const p = [
      tcp(SERVER, 80, SHARED, 1030, 50),
      udp(SERVER, 53, SHARED, 1060),
      udp(SERVER, 53, SHARED, 2000),
    ];
    r.fromWan(...p);
    expect(r.lan.sent).toHaveLength(2);
    expect(hex(innerOf(r.lan.sent[0]!, H1))).toBe(hex(p[0]!));
    expect(hex(innerOf(r.lan.sent[1]!, H2))).toBe(hex(p[1]!));
    expect(r.drops()).toEqual({ 'no-owner': 1 });
    expect(r.lan.stats().txBatches).toBe(1);
  });

  it('tunnels ICMP echo replies and requests by identifier', () => {
    const r = rig();
    r.fromWan(echo(SERVER, SHARED, 'echo-reply', 1040), echo(SERVER, SHARED, 'echo-request', 1070));
    expect(u32at(r.lan.sent[0]!, 16)).toBe(H1);
    expect(u32at(r.lan.sent[1]!, 16)).toBe(H2);
  });

  it("tunnels ICMP errors by the quoted datagram's source port, query id or learned SA", () => {
    const r = rig();
    const sentTcp = tcp(SHARED, 1060, SERVER, 80, 200, { flags: 2 });
    const sentEcho = echo(SHARED, SERVER, 'echo-request', 1030);
    const sentEsp = esp(SHARED, SERVER, 0xabcdef01);
    const errors = [
      icmpError(HOP, SHARED, 'destination-unreachable', 4, sentTcp),
      icmpError(HOP, SHARED, 'time-exceeded', 0, sentEcho),
      icmpError(HOP, SHARED, 'destination-unreachable', 4, sentEsp),
    ];
    r.fromWan(...errors);
    // Before H1 sent on the SA, its SPI (the remote's) is unknown here.
    expect(r.lan.sent.map((s) => u32at(s, 16))).toEqual([H2, H1]);
    expect(r.drops()).toEqual({ 'no-owner': 1 });
    r.fromLan(tunnel(H1, sentEsp));
    r.lan.sent.length = 0;
    r.fromWan(errors[2]!);
    expect(hex(innerOf(r.lan.sent[0]!, H1))).toBe(hex(errors[2]!));
    // A quote that did not come from the shared address, and one too short to read.
    r.fromWan(
      icmpError(HOP, SHARED, 'destination-unreachable', 3, udp(a('10.1.1.1'), 1030, SERVER, 53)),
      icmpError(HOP, SHARED, 'destination-unreachable', 3, sentTcp, 24),
    );
    expect(r.fwd.drops.get('icmp-error-not-ours')).toBe(1);
    expect(r.fwd.drops.get('icmp-error-malformed')).toBe(1);
  });

  it('tunnels ESP and AH by SPI and never for SPIs 0-255', () => {
    const r = rig();
    r.fromWan(
      esp(SERVER, SHARED, 300),
      ah(SERVER, SHARED, 256),
      esp(SERVER, SHARED, 255),
      esp(SERVER, SHARED, 5000),
    );
    expect(r.lan.sent.map((s) => u32at(s, 16))).toEqual([H1, H1]);
    expect(r.drops()).toEqual({ 'reserved-spi': 1, 'no-owner': 1 });
  });

  it('stops tunnelling ESP and AH for a withdrawn SPI block at once, counted as spi-withdrawn until leased again', () => {
    const r = rig();
    const block = { host: '10.0.0.1', kind: 'spi' as const, lowest: 256, count: 64 };
    r.fromWan(esp(SERVER, SHARED, 300));
    expect(r.lan.sent).toHaveLength(1);
    expect(r.tables.onLeaseRemoved(block, true)).toBe('removed');
    r.fromWan(esp(SERVER, SHARED, 300), ah(SERVER, SHARED, 319), esp(SERVER, SHARED, 320));
    expect(r.lan.sent).toHaveLength(1);
    expect(r.drops()).toEqual({ 'spi-withdrawn': 2, 'no-owner': 1 });
    // Leased again (to anyone): ordinary ownership again.
    expect(r.tables.onLeaseAdded({ ...block, host: '10.0.0.3', count: 32 })).toBe('added');
    r.fromWan(esp(SERVER, SHARED, 260), esp(SERVER, SHARED, 300));
    expect(r.lan.sent.map((x) => u32at(x, 16)).slice(1)).toEqual([H2]);
    expect(r.drops()).toEqual({ 'spi-withdrawn': 2, 'no-owner': 2 });
  });

  it('drops ESP in UDP from port 4500 on a withdrawn SPI, and passes IKE (non-ESP marker) and other ports', () => {
    const r = rig();
    /** UDP to H1's port 1030 whose payload starts with `word` (checksum off: the router reads no checksum). */
    const natt = (sport: number, word: number): Uint8Array => {
      const p = udp(SERVER, sport, SHARED, 1030, 16);
      new DataView(p.buffer, p.byteOffset).setUint32(28, word);
      p[26] = p[27] = 0;
      return p;
    };
    r.tables.onLeaseRemoved({ host: '10.0.0.1', kind: 'spi', lowest: 256, count: 64 }, true);
    r.fromWan(natt(4500, 300), natt(4500, 0), natt(4500, 5000), natt(4501, 300));
    expect(r.lan.sent).toHaveLength(3);
    expect(r.drops()).toEqual({ 'spi-withdrawn': 1 });
  });

  it('counts an SPI block that expired or was given back as no-owner, not as withdrawn', () => {
    const r = rig();
    r.tables.onLeaseRemoved({ host: '10.0.0.1', kind: 'spi', lowest: 256, count: 64 });
    r.fromWan(esp(SERVER, SHARED, 300));
    expect(r.drops()).toEqual({ 'no-owner': 1 });
  });

  it('drops what is not for the shared address and protocols it cannot demultiplex', () => {
    const r = rig();
    const gre = ip(SERVER, SHARED, 47, new Uint8Array(24));
    r.fromWan(tcp(SERVER, 80, a('198.51.100.31'), 1030), gre);
    expect(r.drops()).toEqual({ 'not-shared-destination': 1, 'unsupported-protocol': 1 });
  });

  it('sends one batch per batch read', () => {
    const r = rig();
    r.fromWan(...Array.from({ length: 50 }, (_, i) => udp(SERVER, 53, SHARED, 1024 + (i % 64))));
    expect(r.lan.sent).toHaveLength(50);
    expect(r.lan.stats().txBatches).toBe(1);
  });
});

describe('RouterForwarder, hairpin (host to the shared address)', () => {
  it('turns the datagram around to the owner with TTL - 1 and a valid header checksum', () => {
    const r = rig();
    const inner = udp(SHARED, 1030, SHARED, 1060, 20, { ttl: 9 });
    r.fromLan(tunnel(H1, inner));
    expect(r.tun.sent).toHaveLength(0);
    expect(r.lan.sent).toHaveLength(1);
    const got = innerOf(r.lan.sent[0]!, H2);
    expect(got[8]).toBe(8);
    expect(verifiesTo0(got, 0, 20)).toBe(true);
    const expected = inner.slice();
    expected[8] = 8;
    expect(hex(got.subarray(12))).toBe(hex(expected.subarray(12)));
    expect(hex(got.subarray(0, 8))).toBe(hex(expected.subarray(0, 8)));
    expect(r.fwd.traffic.get('hairpin-packets')).toBe(1);
  });

  it('drops a hairpin whose TTL would reach 0, and still checks the source port', () => {
    const r = rig();
    r.fromLan(
      tunnel(H1, udp(SHARED, 1030, SHARED, 1060, 4, { ttl: 1 })),
      tunnel(H2, udp(SHARED, 1030, SHARED, 1060)),
    );
    expect(r.lan.sent).toHaveLength(0);
    expect(r.drops()).toEqual({ 'ttl-exceeded': 1, 'spoofed-port': 1 });
  });
});

describe('RouterForwarder on devices', () => {
  it('reads batches from the attached sources until detached', async () => {
    const scheduler = new MemoryScheduler(false);
    const r = rig();
    const lanRx = new MemoryDevice({ name: 'lan-rx', scheduler });
    const tunRx = new MemoryDevice({ name: 'tun-rx', scheduler });
    r.fwd.attach(lanRx, tunRx);
    lanRx.inject(tunnel(H1, udp(SHARED, 1030, SERVER, 53)));
    tunRx.inject(udp(SERVER, 53, SHARED, 1030));
    scheduler.runUntilIdle();
    expect(r.tun.sent).toHaveLength(1);
    expect(r.lan.sent).toHaveLength(1);
    r.fwd.detach();
    expect(lanRx.reading).toBe(false);
    expect(tunRx.reading).toBe(false);
    await Promise.resolve();
  });
});
