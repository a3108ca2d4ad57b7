import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certificateFacts, certificateFactsHeld, factsOf, verifyPeerChain } from '../../../src/ike/certs.ts';
import { makePki, type TestPki } from './pki-fixture.ts';

let pki: TestPki;
beforeAll(async () => {
  pki = await makePki();
});
afterAll(() => pki?.cleanup());

const der = (pem: string): Buffer => new X509Certificate(pem).raw;

describe('certificate facts', () => {
  it('are read once per DER and found again by the certificate object', () => {
    const host = der(pki.host.certPem);
    const facts = certificateFacts(host);
    expect(certificateFacts(Buffer.from(host))).toBe(facts);
    expect(factsOf(facts.cert)).toBe(facts);
    // An object made elsewhere from the same bytes finds them by the DER.
    expect(factsOf(new X509Certificate(host))).toBe(facts);
    expect(facts.crlUrls).toEqual([pki.localCa.crlUrl]);
    expect(certificateFacts(der(pki.peer.certPem)).crlUrls).toEqual([]);
  });

  it('stay bounded when a peer sends ever new certificates', () => {
    const base = der(pki.peer.certPem);
    const serial = Buffer.from(new X509Certificate(base).serialNumber, 'hex');
    const at = base.indexOf(serial);
    expect(at).toBeGreaterThan(0);
    // Same certificate, other serial numbers: different bytes, as a flood of made-up certificates would be.
    for (let i = 0; i < 1100; i++) {
      const variant = Buffer.from(base);
      variant.writeUInt16BE(i, at + serial.length - 2);
      certificateFacts(variant);
    }
    expect(certificateFactsHeld()).toBeLessThanOrEqual(1024);
  }, 120_000); // each one is parsed twice (node, @peculiar/x509): many seconds on a loaded machine

  it('do not stand in for a check: a certificate whose facts are held still fails a chain it does not belong to', async () => {
    const leaf = der(pki.peer.certPem);
    certificateFacts(leaf);
    const otherRoot = der(pki.host.certPem);
    const check = await verifyPeerChain([leaf], { roots: [new X509Certificate(otherRoot)] }, new Date());
    expect(check.ok).toBe(false);
    const good = await verifyPeerChain([leaf], { roots: [new X509Certificate(pki.rootPem)] }, new Date());
    expect(good.ok).toBe(true);
    // The validity read once is judged against each handshake's own time.
    const later = await verifyPeerChain(
      [leaf],
      { roots: [new X509Certificate(pki.rootPem)] },
      new Date(Date.now() + 100 * 365 * 86_400_000),
    );
    expect(later).toMatchObject({ ok: false, problem: expect.stringContaining('expired') });
  });
});
