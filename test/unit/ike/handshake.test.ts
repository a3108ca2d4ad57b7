import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IkeError } from '../../../src/ike/ike-sa.ts';
import { HOST_SPIS, makePki, PEER, SHARED, type TestPki } from './pki-fixture.ts';
import { hostAndPeer, pairsMatch, until } from './harness.ts';

let pki: TestPki;
beforeAll(async () => {
  pki = await makePki();
});
afterAll(() => pki?.cleanup());

describe('IKE_SA_INIT + IKE_AUTH in memory', () => {
  it('a distnat host initiates to a peer: both ends hold matching child SAs, the host SPI from its block', async () => {
    const { host, peer } = hostAndPeer(pki);
    const sa = await host.daemon.initiate({ address: PEER, port: 500 });
    expect(sa.state).toBe('established');
    await until(() => peer.sad.live.length === 1);
    const [h] = host.sad.live;
    const [p] = peer.sad.live;
    expect(pairsMatch(h!, p!)).toBe(true);
    expect(h!.inbound.spi).toBeGreaterThanOrEqual(HOST_SPIS.lowest);
    expect(h!.inbound.spi).toBeLessThan(HOST_SPIS.lowest + HOST_SPIS.count);
    expect(h!.mode).toBe('tunnel');
    expect(h!.encap).toBeUndefined();
    // The peer narrowed the host's selectors to its certified ports (TCP and UDP).
    expect(p!.remoteSelectors.map((s) => [s.protocol, s.startPort, s.endPort])).toEqual([
      [6, 1026, 1057],
      [17, 1026, 1057],
    ]);
    const peerSa = peer.daemon.sas[0]!;
    expect(peerSa.peer?.binding?.address).toBe(SHARED);
    expect(peer.events.map((e) => e.type)).toEqual(['ike-up', 'child-up']);
  });

  it('a peer initiates to a host on its leased port; the host SPI still comes from the block', async () => {
    const { host, peer } = hostAndPeer(pki);
    const sa = await peer.daemon.initiate({ address: SHARED, port: 1030 }, { mode: 'transport' });
    await until(() => host.sad.live.length === 1 && peer.sad.live.length === 1);
    expect(pairsMatch(host.sad.live[0]!, peer.sad.live[0]!)).toBe(true);
    expect(host.sad.live[0]!.inbound.spi).toBeGreaterThanOrEqual(256);
    expect(host.sad.live[0]!.inbound.spi).toBeLessThan(320);
    expect(peer.sad.live[0]!.mode).toBe('transport');
    expect(sa.peer?.binding?.ports).toEqual([{ lowest: 1026, count: 32 }]);
  });

  it('refuses with AUTHENTICATION_FAILED a host whose certificate does not cover the port it uses', async () => {
    const { host, peer } = hostAndPeer(pki, {}, {}, { hostPort: 5000 });
    const err = await host.daemon.initiate({ address: PEER, port: 500 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IkeError);
    expect((err as IkeError).reason).toBe('auth-failed');
    expect(peer.events.find((e) => e.type === 'auth-failed')).toBeDefined();
    const reason = peer.events.find((e) => e.type === 'auth-failed');
    expect(reason && 'reason' in reason && reason.reason).toMatch(/not-covered.*5000/);
    await until(() => peer.daemon.sas.length === 0);
    expect(host.sad.live.length + peer.sad.live.length).toBe(0);
  });

  it('refuses a peer whose certificate is from an untrusted root, and the initiator refuses such a responder', async () => {
    const other = await makePki();
    try {
      const { host, peer } = hostAndPeer(
        pki,
        {},
        { identity: { certificate: other.peer.certPem, privateKey: other.peer.key } },
      );
      const err = await host.daemon.initiate({ address: PEER, port: 500 }).catch((e: unknown) => e);
      expect((err as IkeError).reason).toBe('auth-failed');
      expect(host.logs.join('\n')).toMatch(/no trusted CA issued/);
      await until(() => peer.daemon.sas.length === 0);
    } finally {
      other.cleanup();
    }
  });

  it('works with RSA keys, with and without RFC 7427 signature authentication', async () => {
    const rsa = await makePki('rsa-2048');
    try {
      for (const signatureHashes of [true, false]) {
        const { host, peer } = hostAndPeer(rsa, { signatureHashes }, { signatureHashes });
        await host.daemon.initiate({ address: PEER, port: 500 });
        await until(() => peer.sad.live.length === 1);
        expect(pairsMatch(host.sad.live[0]!, peer.sad.live[0]!)).toBe(true);
      }
    } finally {
      rsa.cleanup();
    }
  });

  it('works with ECDSA without RFC 7427 (AUTH method 9) and with each ESP suite', async () => {
    for (const [esp, encryption, integrity] of [
      ['aes128gcm16', 'aes-gcm-16', undefined],
      ['aes256gcm16', 'aes-gcm-16', undefined],
      ['aes128-sha256', 'aes-cbc', 'hmac-sha256-128'],
      ['aes256-sha256', 'aes-cbc', 'hmac-sha256-128'],
    ] as const) {
      const { host, peer } = hostAndPeer(
        pki,
        { signatureHashes: false, espProposals: [esp] },
        { espProposals: [esp] },
      );
      await host.daemon.initiate({ address: PEER, port: 500 });
      await until(() => peer.sad.live.length === 1);
      const h = host.sad.live[0]!;
      expect([h.encryption, h.integrity]).toEqual([encryption, integrity]);
      expect(h.outbound.encryptionKey.length).toBe(
        encryption === 'aes-gcm-16' ? h.encryptionKeyBits / 8 + 4 : h.encryptionKeyBits / 8,
      );
      expect(pairsMatch(h, peer.sad.live[0]!)).toBe(true);
    }
  });

  it('switches DH group on INVALID_KE_PAYLOAD and negotiates the responder group', async () => {
    const { host, peer } = hostAndPeer(
      pki,
      { ikeProposals: ['aes128gcm16-prfsha256-x25519-modp2048', 'aes256-sha256-x25519-modp2048'] },
      { ikeProposals: ['aes256-sha256-modp2048'] },
    );
    const sa = await host.daemon.initiate({ address: PEER, port: 500 });
    expect(sa.suite?.dhGroup).toBe(14);
    expect(sa.suite?.encr.aead).toBe(false);
    expect(peer.daemon.counters.get('init-invalid-ke')).toBe(1);
  });

  it('fails with no-proposal when nothing matches, leaving no state at the responder', async () => {
    const { host, peer } = hostAndPeer(
      pki,
      { ikeProposals: ['aes128-sha1-modp2048'] },
      { ikeProposals: ['aes256gcm16-prfsha384-ecp384'] },
    );
    const err = await host.daemon.initiate({ address: PEER, port: 500 }).catch((e: unknown) => e);
    expect((err as IkeError).reason).toBe('no-proposal');
    expect(peer.daemon.sas.length).toBe(0);
  });

  it('gives the IKE SA without child SA when the child proposals do not match (NO_PROPOSAL_CHOSEN)', async () => {
    const { host, peer } = hostAndPeer(
      pki,
      { espProposals: ['aes128-sha256'] },
      { espProposals: ['aes256gcm16'] },
    );
    const sa = await host.daemon.initiate({ address: PEER, port: 500 });
    await until(() => host.events.some((e) => e.type === 'child-failed'));
    expect(sa.state).toBe('established');
    expect(host.events.find((e) => e.type === 'child-failed')).toMatchObject({
      reason: 'NO_PROPOSAL_CHOSEN',
    });
    expect(host.sad.live.length + peer.sad.live.length).toBe(0);
  });

  it('answers TS_UNACCEPTABLE for selectors outside the policy and keeps the IKE SA', async () => {
    const { hostSelector } = await import('../../../src/ike/selectors.ts');
    const { host } = hostAndPeer(pki);
    const sa = await host.daemon.initiate(
      { address: PEER, port: 500 },
      { localSelectors: [hostSelector('192.0.2.9')] },
    );
    await until(() => host.events.some((e) => e.type === 'child-failed'));
    expect(host.events.find((e) => e.type === 'child-failed')).toMatchObject({ reason: 'TS_UNACCEPTABLE' });
    expect(sa.state).toBe('established');
  });

  it('goes through the cookie round trip when the responder demands cookies', async () => {
    const { host, peer } = hostAndPeer(pki, {}, { cookieThreshold: 0 });
    await host.daemon.initiate({ address: PEER, port: 500 });
    expect(peer.daemon.counters.get('init-cookie-sent')).toBe(1);
    await until(() => peer.sad.live.length === 1);
  });

  it('moves to the NAT-T port with ESP-in-UDP when the responder insists (forceEncap)', async () => {
    const { host, peer } = hostAndPeer(pki, {}, { forceEncap: true });
    const sa = await host.daemon.initiate({ address: PEER, port: 500 });
    expect(sa.natt).toBe(true);
    expect(sa.remote).toEqual({ address: PEER, port: 4500 });
    await until(() => peer.sad.live.length === 1);
    expect(host.sad.live[0]!.encap).toEqual({ localPort: 1030, remotePort: 4500 });
    expect(peer.sad.live[0]!.encap).toEqual({ localPort: 4500, remotePort: 1030 });
  });

  it('survives a lost IKE_AUTH response: the request is retransmitted and answered from the cache', async () => {
    const { net, host, peer } = hostAndPeer(pki);
    let dropped = 0;
    net.filter = (data, from) => {
      // The first IKE_AUTH response (exchange 35, R flag) from the peer is lost.
      if (from.address === PEER && data[18] === 35 && data[19]! & 0x20 && dropped === 0) {
        dropped++;
        return false;
      }
      return true;
    };
    await host.daemon.initiate({ address: PEER, port: 500 });
    expect(host.daemon.counters.get('retransmit')).toBeGreaterThanOrEqual(1);
    expect(peer.daemon.counters.get('retransmitted-request')).toBe(1);
    await until(() => peer.sad.live.length === 1);
    expect(peer.sad.live.length).toBe(1);
  });
});

describe('revocation and validity', () => {
  it('refuses a host certificate the local CA revoked, with its CRL loaded; accepts an unrevoked one', async () => {
    const { x509 } = await import('../../../src/pki/x509.ts');
    const victim = await pki.issueHost({ lowest: 1026, count: 32 });
    const serial = new x509.X509Certificate(victim.certPem).serialNumber;
    expect(pki.localCa.authority.revoke(serial, 'keyCompromise')).toBeTruthy();
    const crl = await pki.localCa.authority.makeCrl(600);
    const peerExtra = { trust: { roots: [pki.rootPem], crls: [crl] } };
    const bad = hostAndPeer(
      pki,
      { identity: { certificate: victim.certPem, chain: victim.chainPem, privateKey: victim.key } },
      peerExtra,
    );
    const err = await bad.host.daemon.initiate({ address: PEER, port: 500 }).catch((e: unknown) => e);
    expect((err as IkeError).reason).toBe('auth-failed');
    const why = bad.peer.events.find((e) => e.type === 'auth-failed');
    expect(why && 'reason' in why && why.reason).toMatch(/revoked/);
    const good = hostAndPeer(pki, {}, peerExtra);
    await good.host.daemon.initiate({ address: PEER, port: 500 });
  });

  it('refuses an expired certificate', async () => {
    const old = await pki.issuePlain(PEER, 'ec-p256', { notAfter: new Date(Date.now() - 1000) });
    const { host } = hostAndPeer(pki, {}, { identity: { certificate: old.certPem, privateKey: old.key } });
    const err = await host.daemon.initiate({ address: PEER, port: 500 }).catch((e: unknown) => e);
    expect((err as IkeError).reason).toBe('auth-failed');
    expect(host.logs.join('\n')).toMatch(/expired/);
  });

  it('refuses an ID that the certificate does not name', async () => {
    const { host } = hostAndPeer(
      pki,
      {},
      {
        identity: {
          certificate: pki.peer.certPem,
          privateKey: pki.peer.key,
          id: { type: 'ipv4', address: '203.0.113.99' },
        },
      },
    );
    const err = await host.daemon.initiate({ address: PEER, port: 500 }).catch((e: unknown) => e);
    expect((err as IkeError).reason).toBe('auth-failed');
    expect(host.logs.join('\n')).toMatch(/203\.0\.113\.99.*not in the certificate/);
  });

  it('accepts an ID_IPV4_ADDR identity that is the certificate SAN', async () => {
    const { host } = hostAndPeer(
      pki,
      {},
      {
        identity: {
          certificate: pki.peer.certPem,
          privateKey: pki.peer.key,
          id: { type: 'ipv4', address: PEER },
        },
      },
    );
    const sa = await host.daemon.initiate({ address: PEER, port: 500 });
    expect(sa.peer?.id.idType).toBe(1);
  });
});
