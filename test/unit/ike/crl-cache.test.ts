import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { x509 } from '../../../src/pki/x509.ts';
import { CrlCache, revocationCheckingAuthorizer } from '../../../src/ike/crl-cache.ts';
import { hostAndPeer } from './harness.ts';
import { HOST_PORTS, PEER, makePki, type TestPki } from './pki-fixture.ts';

let pki: TestPki;
beforeAll(async () => {
  pki = await makePki();
});
afterAll(() => pki?.cleanup());

/** The local CA's current CRL as a distribution point would serve it, counting fetches. */
function servedCrl(): { fetch: (url: string) => Promise<Uint8Array>; urls: string[]; down: boolean } {
  const state = {
    urls: [] as string[],
    down: false,
    fetch: async (url: string): Promise<Uint8Array> => {
      state.urls.push(url);
      if (state.down) throw new Error('connection refused');
      return new Uint8Array((await pki.localCa.crl()).rawData);
    },
  };
  return state;
}

describe('CRLs from distribution points', () => {
  it('fetches once per maximum age, again after it, and keeps a current copy when the point is down', async () => {
    let now = Date.now();
    const served = servedCrl();
    const cache = new CrlCache({ maxAgeMs: 30_000, fetch: served.fetch, now: () => now });
    const url = pki.localCa.crlUrl;
    expect(await cache.get(url)).toBeDefined();
    expect(await cache.get(url)).toBeDefined();
    expect(served.urls).toEqual([url]);
    now += 31_000;
    served.down = true;
    expect(await cache.get(url)).toBeDefined();
    expect(served.urls.length).toBe(2);
    expect(cache.failures).toBe(1);
  });

  it('without any copy and an unreachable point, the peer is refused (fail closed)', async () => {
    const served = servedCrl();
    served.down = true;
    const cache = new CrlCache({ maxAgeMs: 0, fetch: served.fetch });
    const { host, peer } = hostAndPeer(pki, {}, { authorize: revocationCheckingAuthorizer(cache) });
    const r = await host.daemon.initiate({ address: PEER, port: 500 }).catch((e: Error) => e);
    expect(r).toBeInstanceOf(Error);
    expect(peer.events.some((e) => e.type === 'auth-failed' && /no current CRL/.test(e.reason))).toBe(true);
  });

  it('a host certificate revoked after the router withdrew its block is refused at the next IKE_AUTH', async () => {
    const identity = await pki.issueHost(HOST_PORTS);
    const served = servedCrl();
    const cache = new CrlCache({ maxAgeMs: 0, fetch: served.fetch });
    const hostExtra = {
      identity: { certificate: identity.certPem, chain: identity.chainPem, privateKey: identity.key },
    };
    const first = hostAndPeer(pki, hostExtra, { authorize: revocationCheckingAuthorizer(cache) });
    const sa = await first.host.daemon.initiate({ address: PEER, port: 500 });
    expect(sa.state).toBe('established');
    await first.host.daemon.close();

    const serial = new x509.X509Certificate(identity.certPem).serialNumber;
    expect(pki.localCa.revoke(serial, 'privilegeWithdrawn')).toBe('revoked');
    const second = hostAndPeer(pki, hostExtra, { authorize: revocationCheckingAuthorizer(cache) });
    const r = await second.host.daemon.initiate({ address: PEER, port: 500 }).catch((e: Error) => e);
    expect(r).toBeInstanceOf(Error);
    expect(second.peer.events.some((e) => e.type === 'auth-failed' && /revoked/.test(e.reason))).toBe(true);
  });
});
