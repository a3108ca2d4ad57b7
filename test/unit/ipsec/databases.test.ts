import { describe, expect, it } from 'vitest';
import { AhSa, EspSa } from '../../../src/ipsec/sa.ts';
import { SecurityAssociationDatabase } from '../../../src/ipsec/sad.ts';
import {
  ANY_PORT,
  cidrRange,
  PacketSelectors,
  selector,
  selectorMatches,
} from '../../../src/ipsec/selector.ts';
import { SecurityPolicy, SecurityPolicyDatabase } from '../../../src/ipsec/spd.ts';
import { addr, ipv4, KEYS, SERVER, SHARED, suite, tcpPacket, udpPacket } from './helpers.ts';

function sel(pkt: Uint8Array): PacketSelectors {
  return new PacketSelectors().read(pkt, 0, pkt.length);
}

describe('traffic selectors', () => {
  const dns = selector({
    local: cidrRange(SHARED, 32),
    remote: cidrRange(addr('203.0.113.0'), 24),
    protocol: 17,
    remotePort: { first: 53, last: 53 },
  });

  it('match on addresses, protocol and ports, seen from this end', () => {
    expect(selectorMatches(dns, sel(udpPacket(1030, 53)), true)).toBe(true);
    // The same datagram coming in: its destination is the local side.
    expect(
      selectorMatches(dns, sel(udpPacket(53, 1030, undefined, { src: SERVER, dst: SHARED })), false),
    ).toBe(true);
    expect(selectorMatches(dns, sel(udpPacket(1030, 53)), false)).toBe(false);
    expect(selectorMatches(dns, sel(udpPacket(1030, 54)), true)).toBe(false);
    expect(selectorMatches(dns, sel(tcpPacket(1030, 53)), true)).toBe(false);
    expect(
      selectorMatches(dns, sel(udpPacket(1030, 53, undefined, { dst: addr('203.0.114.3') })), true),
    ).toBe(false);
    expect(
      selectorMatches(dns, sel(udpPacket(1030, 53, undefined, { src: addr('198.51.100.31') })), true),
    ).toBe(false);
  });

  it('range edges are inclusive', () => {
    const s = selector({
      localPort: { first: 1024, last: 1055 },
      remote: { first: SERVER, last: SERVER + 1 },
    });
    expect(selectorMatches(s, sel(udpPacket(1024, 1)), true)).toBe(true);
    expect(selectorMatches(s, sel(udpPacket(1055, 1)), true)).toBe(true);
    expect(selectorMatches(s, sel(udpPacket(1023, 1)), true)).toBe(false);
    expect(selectorMatches(s, sel(udpPacket(1056, 1)), true)).toBe(false);
    expect(selectorMatches(s, sel(udpPacket(1024, 1, undefined, { dst: SERVER + 1 })), true)).toBe(true);
    expect(selectorMatches(s, sel(udpPacket(1024, 1, undefined, { dst: SERVER + 2 })), true)).toBe(false);
  });

  it('ports are OPAQUE for later fragments and portless protocols: only ANY matches them', () => {
    const later = sel(ipv4(new Uint8Array(16), { protocol: 17, fragmentOffset: 100 }));
    expect(later.srcPort).toBe(-1);
    expect(selectorMatches(dns, later, true)).toBe(false);
    expect(selectorMatches(selector({ protocol: 17 }), later, true)).toBe(true);
    const icmp = sel(ipv4(new Uint8Array(8), { protocol: 1 }));
    expect(selectorMatches(selector({ localPort: ANY_PORT }), icmp, true)).toBe(true);
    expect(selectorMatches(selector({ localPort: { first: 0, last: 100 } }), icmp, true)).toBe(false);
    // A first fragment carries the ports.
    const first = sel(udpPacket(1030, 53, new Uint8Array(8), { moreFragments: true }));
    expect(first.dstPort).toBe(53);
  });

  it('cidrRange covers the prefix exactly', () => {
    expect(cidrRange(addr('198.51.100.77'), 24)).toEqual({
      first: addr('198.51.100.0'),
      last: addr('198.51.100.255'),
    });
    expect(cidrRange(addr('10.1.2.3'), 0)).toEqual({ first: 0, last: 0xffff_ffff });
    expect(cidrRange(addr('255.255.255.255'), 32)).toEqual({ first: 0xffff_ffff, last: 0xffff_ffff });
    expect(() => cidrRange(0, 33)).toThrow(RangeError);
  });
});

describe('security policy database', () => {
  it('takes the first match in order, by direction, else the default', () => {
    const spd = new SecurityPolicyDatabase('discard');
    spd.add(
      new SecurityPolicy({
        name: 'b',
        selector: selector({ protocol: 17 }),
        action: 'bypass',
        direction: 'out',
      }),
    );
    spd.add(new SecurityPolicy({ name: 'p', selector: selector(), action: 'protect', protect: ['esp'] }));
    spd.add(new SecurityPolicy({ name: 'first', selector: selector({ protocol: 6 }), action: 'discard' }), 0);
    expect(spd.policies.map((p) => p.name)).toEqual(['first', 'b', 'p']);
    const u = sel(udpPacket(1, 2));
    expect(spd.match(u, true)?.name).toBe('b');
    expect(spd.match(u, false)?.name).toBe('p');
    expect(spd.match(sel(tcpPacket(1, 2)), true)?.name).toBe('first');
    expect(spd.remove('p')).toBe(true);
    expect(spd.remove('p')).toBe(false);
    expect(spd.match(u, false)).toBeNull();
    expect(spd.defaultAction).toBe('discard');
    expect(() => spd.add(new SecurityPolicy({ name: 'b', selector: selector(), action: 'bypass' }))).toThrow(
      /exists/,
    );
  });

  it('refuses protect templates that cannot be built', () => {
    const make = (protect: ('ah' | 'esp')[], action: 'protect' | 'bypass' = 'protect') =>
      new SecurityPolicy({ name: 'x', selector: selector(), action, protect });
    expect(() => make([])).toThrow(RangeError);
    expect(() => make(['esp', 'ah'])).toThrow(/AH over ESP/);
    expect(() => make(['esp', 'esp'])).toThrow(RangeError);
    expect(() => make(['esp'], 'bypass')).toThrow(RangeError);
    expect(make(['ah', 'esp']).template).toEqual(['ah', 'esp']);
  });
});

function inboundEsp(spi: number, encap?: number): EspSa {
  return new EspSa({
    spi,
    direction: 'inbound',
    mode: 'transport',
    encap: encap === undefined ? undefined : { localPort: encap, remotePort: 4500 },
    ...suite('gcm128'),
  });
}

describe('security association database', () => {
  it('installs inbound SAs only with SPIs from the leased block, unless nested', () => {
    let leased = { first: 256, count: 32 };
    const sad = new SecurityAssociationDatabase({
      isLeasedSpi: (spi) => spi >= leased.first && spi < leased.first + leased.count,
    });
    expect(sad.add(inboundEsp(256))).toBeNull();
    expect(sad.add(inboundEsp(287))).toBeNull();
    expect(sad.add(inboundEsp(288))).toBe('spi-not-leased');
    // The patent: only the outermost SA's SPI is seen by the router.
    expect(sad.add(inboundEsp(5000), { nested: true })).toBeNull();
    expect(sad.add(inboundEsp(256))).toBe('spi-in-use');
    const sa = sad.inboundEsp(256)!;
    expect(sad.add(sa)).toBe('installed');
    // The same SPI under AH is a different SA.
    const ah = new AhSa({
      spi: 256,
      direction: 'inbound',
      mode: 'transport',
      integrity: 'hmac-sha256-128',
      integrityKey: KEYS.sha256,
    });
    expect(sad.add(ah)).toBeNull();
    expect(sad.inboundAh(256)).toBe(ah);
    // The router withdraws the block: the outermost SAs go, the nested one stays.
    leased = { first: 1024, count: 32 };
    const gone = sad.revalidateLeases();
    expect(gone.map((s) => `${s.protocol}:${s.spi}`).sort()).toEqual(['ah:256', 'esp:256', 'esp:287']);
    expect(sad.inboundEsp(256)).toBeUndefined();
    expect(sad.inboundEsp(5000)).toBeDefined();
  });

  it('counts the ESP-in-UDP ports of inbound SAs', () => {
    const sad = new SecurityAssociationDatabase();
    const a = inboundEsp(300, 4500);
    const b = inboundEsp(301, 4500);
    sad.add(a);
    sad.add(b);
    expect(sad.isEncapPort(4500)).toBe(true);
    expect(sad.isEncapPort(500)).toBe(false);
    sad.remove(a);
    expect(sad.isEncapPort(4500)).toBe(true);
    sad.remove(b);
    expect(sad.isEncapPort(4500)).toBe(false);
    expect(sad.remove(b)).toBe(false);
  });

  it('finds outbound SAs through the policy; a rekey replaces the bundle', () => {
    const sad = new SecurityAssociationDatabase();
    const policy = new SecurityPolicy({
      name: 'p',
      selector: selector(),
      action: 'protect',
      protect: ['esp'],
    });
    const out = (spi: number) =>
      new EspSa({ spi, direction: 'outbound', mode: 'transport', ...suite('cbc128') });
    const old = out(0x500);
    const next = out(0x501);
    expect(() => sad.bindOutbound(policy, [old])).toThrow(/not installed/);
    sad.add(old);
    sad.bindOutbound(policy, [old]);
    expect(policy.outbound).toEqual([old]);
    sad.add(next);
    sad.bindOutbound(policy, [next]);
    // Removing the old SA after the rekey leaves the new bundle alone.
    sad.remove(old);
    expect(policy.outbound).toEqual([next]);
    sad.remove(next);
    expect(policy.outbound).toEqual([]);
    expect(() => sad.bindOutbound(policy, [inboundEsp(0x600)])).toThrow(RangeError);
    const bypass = new SecurityPolicy({ name: 'b', selector: selector(), action: 'bypass' });
    expect(() => sad.bindInbound(bypass, inboundEsp(0x601))).toThrow(RangeError);
  });
});

describe('SA parameters', () => {
  const base = { spi: 0x1000, direction: 'outbound' as const, mode: 'transport' as const };
  it('refuse reserved SPIs, wrong key lengths and unsafe combinations', () => {
    expect(() => new EspSa({ ...base, spi: 255, ...suite('gcm128') })).toThrow(/reserved/);
    expect(() => new EspSa({ ...base, spi: 2 ** 32, ...suite('gcm128') })).toThrow(RangeError);
    expect(() => new EspSa({ ...base, encryption: 'aes-gcm-16', encryptionKey: new Uint8Array(16) })).toThrow(
      /salt/,
    );
    expect(
      () =>
        new EspSa({
          ...base,
          encryption: 'aes-gcm-16',
          encryptionKey: KEYS.gcm128,
          integrity: 'hmac-sha256-128',
          integrityKey: KEYS.sha256,
        }),
    ).toThrow(/authenticates by itself/);
    expect(() => new EspSa({ ...base, encryption: 'aes-cbc', encryptionKey: KEYS.aes128 })).toThrow(
      /integrity/,
    );
    expect(() => new EspSa({ ...base, encryption: 'null' })).toThrow(/integrity/);
    expect(
      () =>
        new EspSa({
          ...base,
          encryption: 'aes-cbc',
          encryptionKey: new Uint8Array(20),
          integrity: 'hmac-sha256-128',
          integrityKey: KEYS.sha256,
        }),
    ).toThrow(/16, 24 or 32/);
    expect(
      () => new AhSa({ ...base, integrity: 'hmac-sha256-128', integrityKey: new Uint8Array(20) }),
    ).toThrow(/32-byte key/);
    expect(() => new EspSa({ ...base, mode: 'tunnel', ...suite('gcm128') })).toThrow(/tunnel endpoints/);
    expect(
      () => new EspSa({ ...base, direction: 'inbound', esn: true, replayWindow: 0, ...suite('gcm128') }),
    ).toThrow(/ESN/);
    expect(
      () => new EspSa({ ...base, encap: { localPort: 0, remotePort: 4500 }, ...suite('gcm128') }),
    ).toThrow(/port/);
  });

  it('AH header length is 12 plus the ICV, in 4-byte units', () => {
    const ah = (
      integrity: 'hmac-sha1-96' | 'hmac-sha256-128' | 'hmac-sha384-192' | 'hmac-sha512-256',
      n: number,
    ) => new AhSa({ ...base, integrity, integrityKey: new Uint8Array(n) }).headerLength;
    expect(ah('hmac-sha1-96', 20)).toBe(24);
    expect(ah('hmac-sha256-128', 32)).toBe(28);
    expect(ah('hmac-sha384-192', 48)).toBe(36);
    expect(ah('hmac-sha512-256', 64)).toBe(44);
  });

  it('anti-replay can be turned off for an inbound SA (manual keying without state)', () => {
    const sa = new EspSa({ ...base, direction: 'inbound', replayWindow: 0, ...suite('gcm128') });
    expect(sa.replay).toBeNull();
  });
});
