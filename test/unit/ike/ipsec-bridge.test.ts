import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { childSaParams } from '../../../src/ike/ipsec-bridge.ts';
import { EspSa } from '../../../src/ipsec/sa.ts';
import { hostAndPeer, until } from './harness.ts';
import { makePki, PEER, type TestPki } from './pki-fixture.ts';

let pki: TestPki;
beforeAll(async () => {
  pki = await makePki();
});
afterAll(() => pki?.cleanup());

describe('negotiated child SAs as src/ipsec SAs', () => {
  for (const esp of ['aes256gcm16', 'aes128-sha256']) {
    it(`${esp}: both ends build EspSa pairs, each one's outbound the other's inbound`, async () => {
      const { host, peer } = hostAndPeer(
        pki,
        { espProposals: [esp] },
        { espProposals: [esp], forceEncap: true },
      );
      await host.daemon.initiate({ address: PEER, port: 500 }, { mode: 'tunnel' });
      await until(() => peer.sad.live.length === 1);
      const h = childSaParams(host.sad.live[0]!);
      const p = childSaParams(peer.sad.live[0]!);
      for (const params of [h.inbound, h.outbound, p.inbound, p.outbound])
        expect(() => new EspSa(params)).not.toThrow();
      expect(h.outbound.spi).toBe(p.inbound.spi);
      expect(Buffer.from(h.outbound.encryptionKey!).equals(Buffer.from(p.inbound.encryptionKey!))).toBe(true);
      expect(h.outbound.integrityKey === undefined).toBe(esp.includes('gcm'));
      expect(h.outbound.tunnel).toEqual({ local: 0xc633641e, remote: 0xcb007103 });
      expect(p.outbound.tunnel).toEqual({ local: 0xcb007103, remote: 0xc633641e });
      expect(h.outbound.encap).toEqual({ localPort: 1030, remotePort: 4500 });
    });
  }
});
