import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineChildSaDatabase, ikeBypassPolicy } from '../../../src/ike/engine-sad.ts';
import { spiAllocatorFromBlocks } from '../../../src/ike/policy.ts';
import {
  IpsecEngine,
  SecurityAssociationDatabase,
  SecurityPolicyDatabase,
} from '../../../src/ipsec/index.ts';
import { hostAndPeer, until } from './harness.ts';
import { HOST_SPIS, PEER, makePki, type TestPki } from './pki-fixture.ts';
import { SERVER, place, udpPacket } from '../ipsec/helpers.ts';

let pki: TestPki;
beforeAll(async () => {
  pki = await makePki();
});
afterAll(() => pki?.cleanup());

const inSpiBlock = (spi: number): boolean =>
  spi >= HOST_SPIS.lowest && spi < HOST_SPIS.lowest + HOST_SPIS.count;

function engines(): { host: IpsecEngine; peer: IpsecEngine } {
  const hostSpd = new SecurityPolicyDatabase('bypass');
  hostSpd.add(ikeBypassPolicy('ike', 1030));
  const peerSpd = new SecurityPolicyDatabase('bypass');
  peerSpd.add(ikeBypassPolicy('ike', 500));
  return {
    host: new IpsecEngine(hostSpd, new SecurityAssociationDatabase({ isLeasedSpi: inSpiBlock })),
    peer: new IpsecEngine(peerSpd, new SecurityAssociationDatabase()),
  };
}

/** Seals a UDP datagram on `from` and opens it on `to`: both verdicts and the bytes that come out. */
function roundTrip(from: IpsecEngine, to: IpsecEngine, packet: Uint8Array) {
  const p = place(packet);
  const out = from.outbound(p.buf, p.span);
  const sealed = p.buf.slice(p.span.offset, p.span.offset + p.span.length);
  const q = place(sealed);
  const back = out === 'protected' ? to.inbound(q.buf, q.span) : undefined;
  const opened = q.buf.slice(q.span.offset, q.span.offset + q.span.length);
  return { out, back, sealed, opened };
}

describe('EngineChildSaDatabase: IKE child SAs in a live IpsecEngine', () => {
  it('a negotiated pair protects the certified ports, leaves IKE alone, and opens on the other side', async () => {
    const e = engines();
    const hostSad = new EngineChildSaDatabase(e.host);
    const peerSad = new EngineChildSaDatabase(e.peer);
    const { host } = hostAndPeer(
      pki,
      { sad: hostSad, spis: spiAllocatorFromBlocks([HOST_SPIS]) },
      { sad: peerSad },
    );
    await host.daemon.initiate({ address: PEER, port: 500 }, { mode: 'tunnel' });
    await until(() => peerSad.size === 1 && hostSad.size === 1);

    const data = new TextEncoder().encode('through the child SA');
    const flow = udpPacket(1040, 7777, data);
    const r = roundTrip(e.host, e.peer, flow);
    expect(r.out).toBe('protected');
    expect(r.sealed[9]).toBe(50);
    expect(r.back).toBe('accepted');
    expect(Buffer.from(r.opened).equals(Buffer.from(flow))).toBe(true);

    // The peer's answer goes back through the other SA of the pair.
    const answer = udpPacket(7777, 1040, data, { src: SERVER, dst: 0xc633641e });
    expect(roundTrip(e.peer, e.host, answer).back).toBe('accepted');

    // IKE's own port is never sealed, and a port outside the certified block is not selected.
    expect(roundTrip(e.host, e.peer, udpPacket(1030, 500)).out).toBe('bypass');
    expect(roundTrip(e.host, e.peer, udpPacket(2000, 7777)).out).toBe('bypass');
    await host.daemon.close();
  });

  it('a rekeyed child takes over outbound at once; deleting the old one leaves the new one working', async () => {
    const e = engines();
    const hostSad = new EngineChildSaDatabase(e.host);
    const peerSad = new EngineChildSaDatabase(e.peer);
    const { host } = hostAndPeer(pki, { sad: hostSad }, { sad: peerSad });
    const sa = await host.daemon.initiate({ address: PEER, port: 500 }, { mode: 'tunnel' });
    await until(() => peerSad.size === 1);
    const before = roundTrip(e.host, e.peer, udpPacket(1040, 7777)).sealed;
    await host.daemon.rekeyChild(sa, sa.children[0]!);
    await until(() => peerSad.size === 1 && hostSad.size === 1);
    const after = roundTrip(e.host, e.peer, udpPacket(1040, 7777));
    expect(after.back).toBe('accepted');
    // A different SPI on the wire: the new SA, not the old one.
    expect(Buffer.from(after.sealed.subarray(20, 24)).equals(Buffer.from(before.subarray(20, 24)))).toBe(
      false,
    );
    expect(e.host.spd.policies.filter((p) => p.name.startsWith('ike-child-')).length).toBeGreaterThan(0);
    await host.daemon.close();
  });

  it('an inbound SPI outside the leased block fails the child SA instead of installing it', async () => {
    const e = engines();
    const hostSad = new EngineChildSaDatabase(e.host);
    const { host } = hostAndPeer(
      pki,
      { sad: hostSad, spis: spiAllocatorFromBlocks([{ lowest: 5000, count: 8 }]) },
      { sad: new EngineChildSaDatabase(e.peer) },
    );
    const sa = await host.daemon.initiate({ address: PEER, port: 500 }, { mode: 'tunnel' }).catch((x) => x);
    expect(hostSad.size).toBe(0);
    expect(e.host.sad.inboundEsp(5000)).toBeUndefined();
    if (!(sa instanceof Error)) await host.daemon.close();
  });

  it('removal takes the policies and both SAs out', async () => {
    const e = engines();
    const hostSad = new EngineChildSaDatabase(e.host);
    const { host } = hostAndPeer(pki, { sad: hostSad }, { sad: new EngineChildSaDatabase(e.peer) });
    const sa = await host.daemon.initiate({ address: PEER, port: 500 }, { mode: 'tunnel' });
    await until(() => hostSad.size === 1);
    await host.daemon.deleteChild(sa, sa.children[0]!);
    await until(() => hostSad.size === 0);
    expect(e.host.spd.policies.map((p) => p.name)).toEqual(['ike']);
    expect(roundTrip(e.host, e.peer, udpPacket(1040, 7777)).out).toBe('bypass');
    await host.daemon.close();
  });

  it('a soft byte limit crossed in the data plane makes IKE rekey the child; traffic moves to the new SA', async () => {
    const e = engines();
    const hostSad = new EngineChildSaDatabase(e.host);
    const peerSad = new EngineChildSaDatabase(e.peer);
    const { host } = hostAndPeer(
      pki,
      { sad: hostSad, childLifetime: { rekeyBytes: 2000, lifeBytes: 100_000 } },
      { sad: peerSad },
    );
    const sa = await host.daemon.initiate({ address: PEER, port: 500 }, { mode: 'tunnel' });
    await until(() => peerSad.size === 1);
    const first = sa.children[0]!;
    const data = new Uint8Array(100);
    // 128 bytes of inner datagram each: the 16th packet crosses 2000.
    for (let i = 0; i < 15; i++)
      expect(roundTrip(e.host, e.peer, udpPacket(1040, 7777, data)).back).toBe('accepted');
    await new Promise((r) => setTimeout(r, 20));
    expect(host.daemon.counters.get('child-rekey-by-volume')).toBeUndefined();
    const spi = (b: Uint8Array): string => Buffer.from(b.subarray(20, 24)).toString('hex');
    const old = spi(roundTrip(e.host, e.peer, udpPacket(1040, 7777, data)).sealed);
    await until(() => host.daemon.counters.get('child-rekey-by-volume') === 1);
    await until(() => hostSad.size === 1 && peerSad.size === 1 && !sa.children.includes(first));
    const after = roundTrip(e.host, e.peer, udpPacket(1040, 7777, data));
    expect(after.back).toBe('accepted');
    expect(spi(after.sealed)).not.toBe(old);
    expect(sa.children[0]!.negotiated.replaces).toBe(first.id);
    // Once per SA: more traffic on the new SA does not rekey again before its own limit.
    for (let i = 0; i < 10; i++) roundTrip(e.host, e.peer, udpPacket(1040, 7777, data));
    await new Promise((r) => setTimeout(r, 20));
    expect(host.daemon.counters.get('child-rekey-by-volume')).toBe(1);
    await host.daemon.close();
  });

  it('the hard packet limit stops the SA in the data plane and IKE deletes the child at both ends', async () => {
    const e = engines();
    const hostSad = new EngineChildSaDatabase(e.host);
    const peerSad = new EngineChildSaDatabase(e.peer);
    const { host } = hostAndPeer(pki, { sad: hostSad, childLifetime: { lifePackets: 5 } }, { sad: peerSad });
    await host.daemon.initiate({ address: PEER, port: 500 }, { mode: 'tunnel' });
    await until(() => peerSad.size === 1);
    const verdicts = Array.from({ length: 7 }, () => roundTrip(e.host, e.peer, udpPacket(1040, 7777)).out);
    // The fifth packet reaches the limit: it is the last the SA protects.
    expect(verdicts).toEqual([...Array(5).fill('protected'), 'lifetime-expired', 'lifetime-expired']);
    await until(() => hostSad.size === 0 && peerSad.size === 0);
    expect(host.daemon.counters.get('child-expired-by-volume')).toBe(1);
    await host.daemon.close();
  });

  it('the responder of a rekey keeps sending on the old SA until the initiator deletes it', async () => {
    const e = engines();
    const hostSad = new EngineChildSaDatabase(e.host);
    const peerSad = new EngineChildSaDatabase(e.peer);
    const { net, host } = hostAndPeer(pki, { sad: hostSad }, { sad: peerSad });
    const sa = await host.daemon.initiate({ address: PEER, port: 500 }, { mode: 'tunnel' });
    await until(() => peerSad.size === 1);
    const old = sa.children[0]!;
    const spi = (b: Uint8Array): number => Buffer.from(b.subarray(20, 24)).readUInt32BE(0);
    const answer = (): Uint8Array =>
      roundTrip(e.peer, e.host, udpPacket(7777, 1040, undefined, { src: SERVER, dst: 0xc633641e })).sealed;
    // Hold the Delete back: both pairs are installed at both ends.
    let holding = true;
    net.filter = (d) => !(holding && d[18] === 37);
    const rekey = host.daemon.rekeyChild(sa, old);
    await until(() => hostSad.size === 2 && peerSad.size === 2);
    const fresh = sa.children.find((c) => c !== old)!;
    expect(spi(roundTrip(e.host, e.peer, udpPacket(1040, 7777)).sealed)).toBe(fresh.outboundSpi);
    expect(spi(answer())).toBe(old.inboundSpi);
    holding = false;
    await rekey;
    await until(() => peerSad.size === 1);
    expect(spi(answer())).toBe(fresh.inboundSpi);
    await host.daemon.close();
  });
});
