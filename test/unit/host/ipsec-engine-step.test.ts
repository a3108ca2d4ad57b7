/**
 * The host forwarder with the engine step between in-memory devices, and a
 * peer engine built from the mirrored keying file: what the host protects
 * after translation the peer opens to the leased port; what the peer
 * protects the host verifies, translates back and hands to the stack.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/config/config-error.ts';
import { EngineIpsecStep, inSpiBlocks, ipsecDropOf } from '../../../src/host/data-path/ipsec-engine-step.ts';
import { buildManualKeying, IpsecEngine, PacketSpan, parseManualKeying } from '../../../src/ipsec/index.ts';
import type { HeldBlock } from '../../../src/pap/held-block.ts';
import { mirrorManualKeying } from '../../../src/peer/daemon/mirror.ts';
import { buildOuter, buildTcp, LAN, LEASE_COUNT, LEASE_FIRST, rig, ROUTER } from './forwarder-rig.ts';
import { get16, SERVER, SHARED } from './packets.ts';

const GCM_KEY_OUT = '0x000102030405060708090a0b0c0d0e0f10111213';
const GCM_KEY_IN = '0x202122232425262728292a2b2c2d2e2f30313233';
const HMAC_OUT = '0x' + '11'.repeat(32);
const HMAC_IN = '0x' + '22'.repeat(32);

type Kind = 'esp-transport' | 'esp-tunnel-cbc' | 'ah-transport';

function keying(kind: Kind) {
  const policy = {
    name: 'web',
    local: '198.51.100.30',
    remote: '203.0.113.3',
    protocol: 'tcp',
    remotePort: 80,
    action: 'protect',
    protect: [kind === 'ah-transport' ? 'ah' : 'esp'],
  };
  const sa = (direction: 'inbound' | 'outbound', spi: number): Record<string, unknown> => {
    const base = { spi, direction, policy: 'web', name: `web-${direction}` };
    const [src, dst] =
      direction === 'outbound' ? ['198.51.100.30', '203.0.113.3'] : ['203.0.113.3', '198.51.100.30'];
    if (kind === 'ah-transport')
      return {
        ...base,
        protocol: 'ah',
        integrity: { algorithm: 'hmac-sha256-128', key: direction === 'outbound' ? HMAC_OUT : HMAC_IN },
      };
    if (kind === 'esp-tunnel-cbc')
      return {
        ...base,
        protocol: 'esp',
        mode: 'tunnel',
        src,
        dst,
        encryption: { algorithm: 'aes-cbc', key: '0x' + (direction === 'outbound' ? '33' : '44').repeat(16) },
        integrity: { algorithm: 'hmac-sha256-128', key: direction === 'outbound' ? HMAC_OUT : HMAC_IN },
      };
    return {
      ...base,
      protocol: 'esp',
      encryption: { algorithm: 'aes-gcm-16', key: direction === 'outbound' ? GCM_KEY_OUT : GCM_KEY_IN },
    };
  };
  return parseManualKeying(
    { policies: [policy], sas: [sa('outbound', 0x9000), sa('inbound', 0x110)] },
    'test',
  );
}

const leased = (spi: number): boolean => spi >= 256 && spi < 320;

function setup(kind: Kind) {
  const cfg = keying(kind);
  const step = new EngineIpsecStep(cfg, 'test');
  step.install(leased);
  const r = rig({ ipsec: step });
  const peerDb = buildManualKeying(mirrorManualKeying(cfg), { source: 'mirror' });
  const peer = new IpsecEngine(peerDb.spd, peerDb.sad);
  /** The peer opens an inner packet (outer IP-in-IP header already gone); returns the datagram or the verdict. */
  const peerOpen = (p: Uint8Array): Uint8Array | string => {
    const buf = new Uint8Array(p.length + 64);
    buf.set(p, 0);
    const span = new PacketSpan().set(0, p.length, 0, buf.length);
    const v = peer.inbound(buf, span);
    return v === 'accepted' ? buf.slice(span.offset, span.offset + span.length) : v;
  };
  const peerSeal = (p: Uint8Array): Uint8Array => {
    const buf = new Uint8Array(p.length + 256);
    buf.set(p, 128);
    const span = new PacketSpan().set(128, p.length, 0, buf.length);
    expect(peer.outbound(buf, span)).toBe('protected');
    return buf.slice(span.offset, span.offset + span.length);
  };
  return { cfg, step, r, peer, peerOpen, peerSeal };
}

const payload = new TextEncoder().encode('GET / HTTP/1.1\r\n\r\n');

describe.each<Kind>(['esp-transport', 'esp-tunnel-cbc', 'ah-transport'])('host IPsec step, %s', (kind) => {
  it('protects after translation: the peer opens it to the leased port, and the answer comes back to the local port', () => {
    const { r, peerOpen, peerSeal } = setup(kind);
    const out = r.send(buildTcp({ src: SHARED, sport: 40000, dst: SERVER, dport: 80, flags: 0x18, payload }));
    expect(out).toHaveLength(1);
    const inner = out[0]!.subarray(20);
    expect(inner[9]).toBe(kind === 'ah-transport' ? 51 : 50);
    if (kind === 'esp-tunnel-cbc') expect(get16(inner, 12) >>> 0).toBe(SHARED >>> 16);
    const opened = peerOpen(inner);
    expect(typeof opened).not.toBe('string');
    const seen = opened as Uint8Array;
    const leasedPort = get16(seen, 20);
    expect(leasedPort).toBeGreaterThanOrEqual(LEASE_FIRST);
    expect(leasedPort).toBeLessThan(LEASE_FIRST + LEASE_COUNT);
    expect(get16(seen, 22)).toBe(80);
    expect(Buffer.from(seen.subarray(seen.length - payload.length))).toEqual(Buffer.from(payload));

    const answer = peerSeal(
      buildTcp({ src: SERVER, sport: 80, dst: SHARED, dport: leasedPort, flags: 0x12 }),
    );
    const delivered = r.receive(buildOuter(ROUTER, LAN, answer));
    expect(delivered).toHaveLength(1);
    expect(delivered[0]![9]).toBe(6);
    expect(get16(delivered[0]!, 22)).toBe(40000);
  });

  it('drops a replayed and a bit-flipped packet, counted, without moving the replay window', () => {
    const { r, step, peerSeal } = setup(kind);
    r.send(buildTcp({ src: SHARED, sport: 40001, dst: SERVER, dport: 80, flags: 0x02 }));
    const leasedPort = r.table.rows()[0]!.leasedPort;
    const first = peerSeal(buildTcp({ src: SERVER, sport: 80, dst: SHARED, dport: leasedPort, flags: 0x12 }));
    const second = peerSeal(
      buildTcp({ src: SERVER, sport: 80, dst: SHARED, dport: leasedPort, flags: 0x10 }),
    );
    expect(r.receive(buildOuter(ROUTER, LAN, first))).toHaveLength(1);
    expect(r.receive(buildOuter(ROUTER, LAN, first))).toHaveLength(0);
    expect(r.fwd.inboundDrops.get('ipsec-replay')).toBe(1);
    const flipped = second.slice();
    flipped[flipped.length - 20]! ^= 0x04;
    expect(r.receive(buildOuter(ROUTER, LAN, flipped))).toHaveLength(0);
    expect(r.fwd.inboundDrops.get('ipsec-auth-failed')).toBe(1);
    // The forged copy did not advance the window: the genuine one still goes in.
    expect(r.receive(buildOuter(ROUTER, LAN, second))).toHaveLength(1);
    const c = step.counters();
    expect(c['ipsec.inbound.replay']).toBe(1);
    expect(c['ipsec.inbound.auth-failed']).toBe(1);
    expect(c['ipsec.inbound.accepted']).toBe(2);
  });
});

describe('host IPsec step', () => {
  it('passes traffic no policy covers, both ways, untouched', () => {
    const { r } = setup('esp-transport');
    const out = r.send(buildTcp({ src: SHARED, sport: 40002, dst: SERVER, dport: 443, flags: 0x02 }));
    expect(out[0]![20 + 9]).toBe(6);
    expect(r.fwd.counters().outboundDrops['ipsec-policy']).toBe(0);
  });

  it('refuses a clear packet where policy says protect', () => {
    const { r } = setup('esp-transport');
    r.send(buildTcp({ src: SHARED, sport: 40003, dst: SERVER, dport: 80, flags: 0x02 }));
    const leasedPort = r.table.rows()[0]!.leasedPort;
    const clear = buildTcp({ src: SERVER, sport: 80, dst: SHARED, dport: leasedPort, flags: 0x12 });
    expect(r.receive(buildOuter(ROUTER, LAN, clear))).toHaveLength(0);
    expect(r.fwd.inboundDrops.get('ipsec-policy')).toBe(1);
  });

  it('fails closed until the SAs are installed', () => {
    const step = new EngineIpsecStep(keying('esp-transport'), 'test');
    expect(step.maxOverhead).toBeGreaterThan(0);
    const r = rig({ ipsec: step });
    expect(
      r.send(buildTcp({ src: SHARED, sport: 40004, dst: SERVER, dport: 443, flags: 0x02 })),
    ).toHaveLength(0);
    expect(r.fwd.outboundDrops.get('ipsec-no-sa')).toBe(1);
    expect(step.counters()['ipsec.not-installed']).toBe(1);
  });

  it('will not install an inbound SA whose SPI is outside the leased blocks', () => {
    const step = new EngineIpsecStep(keying('esp-transport'), 'test');
    expect(step.spisNeeded).toEqual([0x110]);
    expect(() => step.install((spi) => spi >= 320 && spi < 384)).toThrow(ConfigError);
    expect(() => step.install((spi) => spi >= 320 && spi < 384)).toThrow(/sas\.1\.spi/);
    expect(step.installed).toBe(false);
  });

  it('tests SPIs against held SPI blocks only', () => {
    const blocks = [
      { kind: 'port', lowest: 256, count: 64 },
      { kind: 'spi', lowest: 320, count: 64 },
    ] as unknown as HeldBlock[];
    expect(inSpiBlocks(300, blocks)).toBe(false);
    expect(inSpiBlocks(320, blocks)).toBe(true);
    expect(inSpiBlocks(383, blocks)).toBe(true);
    expect(inSpiBlocks(384, blocks)).toBe(false);
  });

  it('folds engine verdicts into the forwarder reasons', () => {
    expect(ipsecDropOf('ike')).toBeNull();
    expect(ipsecDropOf('too-old')).toBe('ipsec-replay');
    expect(ipsecDropOf('bad-padding')).toBe('ipsec-auth-failed');
    expect(ipsecDropOf('lifetime-expired')).toBe('ipsec-no-sa');
    expect(ipsecDropOf('policy-discard')).toBe('ipsec-policy');
  });
});
