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
});
