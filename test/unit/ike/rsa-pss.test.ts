/**
 * RSASSA-PSS in RFC 7427 AUTH: AlgorithmIdentifiers and signatures made by
 * OpenSSL (fixtures/rsa-pss-openssl.json says how) are read and verified,
 * ours come out as OpenSSL writes them, hostile DER is refused without a
 * throw, and two daemons authenticate each other with PSS.
 */
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuth, verifyAuth } from '../../../src/ike/auth.ts';
import { AuthMethod, HashAlgorithmId } from '../../../src/ike/constants.ts';
import {
  isPssAlgorithmIdentifier,
  parsePssAlgorithmIdentifier,
  pssAlgorithmIdentifier,
} from '../../../src/ike/rsa-pss.ts';
import { hostAndPeer, until } from './harness.ts';
import { makePki, PEER, type TestPki } from './pki-fixture.ts';

interface Fixture {
  algorithmIdentifiers: { hash: string; salt: number; der: string }[];
  publicKey: string;
  octets: string;
  signatures: { hash: string; salt: number; signature: string }[];
}
const fx = JSON.parse(
  readFileSync(new URL('./fixtures/rsa-pss-openssl.json', import.meta.url), 'utf8'),
) as Fixture;
const hex = (s: string): Buffer => Buffer.from(s, 'hex');
/** An RFC 7427 AUTH body: AlgorithmIdentifier length, AlgorithmIdentifier, signature. */
const authData = (ai: Buffer, sig: Buffer): Buffer => Buffer.concat([Buffer.from([ai.length]), ai, sig]);

describe('RSASSA-PSS AlgorithmIdentifiers', () => {
  it("reads OpenSSL's, and writes SHA-256 and SHA-384 with hash-long salts byte for byte as OpenSSL does", () => {
    for (const a of fx.algorithmIdentifiers) {
      const der = hex(a.der);
      expect(isPssAlgorithmIdentifier(der)).toBe(true);
      expect(parsePssAlgorithmIdentifier(der)).toEqual({ hash: a.hash, saltLength: a.salt });
    }
    expect(pssAlgorithmIdentifier('sha256').toString('hex')).toBe(fx.algorithmIdentifiers[0]!.der);
    expect(pssAlgorithmIdentifier('sha384').toString('hex')).toBe(fx.algorithmIdentifiers[1]!.der);
    // SHA-512 with its 64-byte salt round-trips through our reader.
    expect(parsePssAlgorithmIdentifier(pssAlgorithmIdentifier('sha512'))).toEqual({
      hash: 'sha512',
      saltLength: 64,
    });
  });

  it('refuses defaults (SHA-1), a different MGF1 hash, a bad trailer, and anything not DER', () => {
    const oid = '06092a864886f70d01010a';
    expect(parsePssAlgorithmIdentifier(hex(`300d${oid}3000`))).toMatch(/SHA-1/);
    const mixed = fx.algorithmIdentifiers[0]!.der.replace(
      /(a11c.*?608648016503040201)/,
      (m) => m.slice(0, -2) + '03',
    );
    expect(parsePssAlgorithmIdentifier(hex(mixed))).toMatch(/hashes must agree/);
    // trailerField [3] INTEGER 2
    const trailer = hex(
      `304606092a864886f70d01010a3039${fx.algorithmIdentifiers[0]!.der.slice(30)}a303020102`,
    );
    expect(parsePssAlgorithmIdentifier(trailer)).toMatch(/trailer/);
    expect(isPssAlgorithmIdentifier(hex('300a06082a8648ce3d040302'))).toBe(false);
  });

  it('never throws on mangled identifiers', () => {
    const base = hex(fx.algorithmIdentifiers[3]!.der);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 5 }),
        fc.nat(),
        (edits, cut) => {
          const b = Buffer.from(base.subarray(0, base.length - (cut % base.length)));
          for (const [at, v] of edits) if (b.length > 0) b[at % b.length] = v;
          const r = parsePssAlgorithmIdentifier(b);
          expect(typeof r === 'string' || (r.saltLength >= 0 && r.hash.startsWith('sha'))).toBe(true);
          expect(typeof isPssAlgorithmIdentifier(b)).toBe('boolean');
        },
      ),
      { seed: 29, numRuns: 2000 },
    );
  });
});

describe('RSASSA-PSS AUTH', () => {
  const key = createPublicKey(fx.publicKey);
  const octets = hex(fx.octets);

  it("verifies OpenSSL's signatures under each hash and salt, and refuses them on other octets", () => {
    for (const s of fx.signatures) {
      const ai = pssAlgorithmIdentifier(s.hash as 'sha256');
      // Our identifier says salt = hash length; give OpenSSL's salt where it differs.
      const fitting =
        fx.algorithmIdentifiers.find((a) => a.hash === s.hash && a.salt === s.salt)?.der ??
        (s.salt === { sha256: 32, sha384: 48, sha512: 64 }[s.hash] ? ai.toString('hex') : undefined);
      if (fitting === undefined) continue;
      const data = authData(hex(fitting), hex(s.signature));
      expect(verifyAuth(key, AuthMethod.DIGITAL_SIGNATURE, data, octets), `${s.hash}/${s.salt}`).toEqual({
        ok: true,
        scheme: `RSA-PSS-${s.hash.toUpperCase()}`,
      });
      const other = Buffer.from(octets);
      other[0]! ^= 1;
      expect(verifyAuth(key, AuthMethod.DIGITAL_SIGNATURE, data, other).ok).toBe(false);
    }
    // The salt the identifier names is the salt checked: a 20-byte-salt signature under salt 32 fails.
    const s20 = fx.signatures.find((s) => s.hash === 'sha256' && s.salt === 20)!;
    expect(
      verifyAuth(
        key,
        AuthMethod.DIGITAL_SIGNATURE,
        authData(pssAlgorithmIdentifier('sha256'), hex(s20.signature)),
        octets,
      ).ok,
    ).toBe(false);
  });

  it('signs with PSS only when asked, with the first SHA-2 hash the peer announced, and verifies', () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const peer = [HashAlgorithmId.SHA2_384, HashAlgorithmId.SHA2_512];
    const pss = createAuth(privateKey, octets, peer, { rsaPss: true });
    expect(pss.method).toBe(AuthMethod.DIGITAL_SIGNATURE);
    const ai = pss.data.subarray(1, 1 + pss.data[0]!);
    expect(parsePssAlgorithmIdentifier(ai)).toEqual({ hash: 'sha384', saltLength: 48 });
    expect(verifyAuth(publicKey, pss.method, pss.data, octets)).toEqual({
      ok: true,
      scheme: 'RSA-PSS-SHA384',
    });
    const classic = createAuth(privateKey, octets, peer);
    expect(isPssAlgorithmIdentifier(classic.data.subarray(1, 1 + classic.data[0]!))).toBe(false);
    // No RFC 7427 from the peer: method 1 (PKCS #1 v1.5 SHA-1), PSS or not.
    expect(createAuth(privateKey, octets, undefined, { rsaPss: true }).method).toBe(AuthMethod.RSA_SIGNATURE);
    // A PSS signature from an EC certificate's key is refused.
    const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey;
    expect(verifyAuth(ec, pss.method, pss.data, octets)).toMatchObject({ ok: false });
  });
});

describe('two daemons with RSA certificates', () => {
  let rsa: TestPki;
  beforeAll(async () => {
    rsa = await makePki('rsa-2048');
  }, 60_000);
  afterAll(() => rsa?.cleanup());

  it('authenticate each other with RSASSA-PSS when one or both ask for it', async () => {
    for (const [h, p] of [
      [true, true],
      [true, false],
      [false, true],
    ] as const) {
      const { host, peer } = hostAndPeer(rsa, { rsaPss: h }, { rsaPss: p });
      const sa = await host.daemon.initiate({ address: PEER, port: 500 });
      await until(() => peer.sad.live.length === 1);
      // Each end saw how the other signed.
      expect(peer.daemon.sas[0]!.peer?.scheme).toBe(h ? 'RSA-PSS-SHA256' : 'RSA-SHA256');
      expect(sa.peer?.scheme).toBe(p ? 'RSA-PSS-SHA256' : 'RSA-SHA256');
      await host.daemon.close();
      await peer.daemon.close();
    }
  });
});
