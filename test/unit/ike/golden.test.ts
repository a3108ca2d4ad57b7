/**
 * strongSwan's own messages and keys (fixtures/strongswan-*.json, captured
 * by test/netns/ike-strongswan.test.ts with IKE_WRITE_GOLDEN=1): they must
 * parse and re-emit byte for byte, our key derivation must give the keys
 * charon logged, the SK payloads must open with them, and charon's AUTH
 * signature must verify over the octets we compute. An independent
 * implementation's answers, where the RFCs publish no IKEv2 vectors.
 */
import { X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { signedOctets, verifyAuth } from '../../../src/ike/auth.ts';
import { ExchangeType, PayloadType, ProtocolId } from '../../../src/ike/constants.ts';
import { deriveChildKeys, deriveIkeKeys, skeyseed } from '../../../src/ike/keys.ts';
import { parseIkeMessage, reemitClear } from '../../../src/ike/message.ts';
import {
  emitPayloadBody,
  emitPayloadChain,
  firstPayload,
  parsePayloadChain,
} from '../../../src/ike/payloads.ts';
import { acceptChosen, ikeSuiteOf } from '../../../src/ike/proposal.ts';
import { SkCipher } from '../../../src/ike/sk-cipher.ts';

interface Fixture {
  description: string;
  messages: { from: 'strongswan' | 'ours'; natt: boolean; hex: string }[];
  keys: Record<string, string | null>;
  certificates: { root: string; strongswan: string; ours: string };
}

const dir = new URL('./fixtures/', import.meta.url);
const fixtures = readdirSync(dir)
  .filter((f) => f.startsWith('strongswan-') && f.endsWith('.json'))
  .map((f) => [f, JSON.parse(readFileSync(new URL(f, dir), 'utf8')) as Fixture] as const);

const key = (f: Fixture, name: string): Buffer => Buffer.from(f.keys[name] ?? '', 'hex');

describe('golden messages from strongSwan', () => {
  it('has the three captures', () => {
    expect(fixtures.map(([f]) => f).sort()).toEqual([
      'strongswan-initiator-gcm.json',
      'strongswan-responder-cbc.json',
      'strongswan-responder-gcm.json',
    ]);
  });

  for (const [name, f] of fixtures) {
    describe(name, () => {
      const raw = f.messages.map((m) => Buffer.from(m.hex, 'hex'));
      const parsed = raw.map((r) => {
        const p = parseIkeMessage(r);
        if (!p.ok) throw new Error(`${name}: ${p.reason}`);
        return p.value;
      });
      const [initReq, initResp] = parsed;

      it('parses every message and re-emits it byte for byte', () => {
        expect(parsed.map((m) => m.header.exchange)).toEqual([34, 34, 35, 35]);
        parsed.forEach((m, i) => expect(reemitClear(m).equals(raw[i]!)).toBe(true));
      });

      const sa = acceptChosen(
        firstPayload(initResp!.payloads, PayloadType.SA)!.proposals,
        firstPayload(initReq!.payloads, PayloadType.SA)!.proposals,
        ProtocolId.IKE,
      )!;
      const suite = ikeSuiteOf(sa);
      const ni = firstPayload(initReq!.payloads, PayloadType.NONCE)!.data;
      const nr = firstPayload(initResp!.payloads, PayloadType.NONCE)!.data;
      const spiI = initResp!.header.spiI;
      const spiR = initResp!.header.spiR;
      const seed = skeyseed(suite.prf, ni, nr, key(f, 'shared Diffie Hellman secret'));
      const keys = deriveIkeKeys(suite, seed, ni, nr, spiI, spiR);

      it("derives charon's SKEYSEED and SK_d, SK_a, SK_e, SK_p", () => {
        expect(seed.toString('hex')).toBe(f.keys.SKEYSEED);
        expect(keys.skD.toString('hex')).toBe(f.keys['Sk_d secret']);
        expect(keys.skEi.toString('hex')).toBe(f.keys['Sk_ei secret']);
        expect(keys.skEr.toString('hex')).toBe(f.keys['Sk_er secret']);
        expect(keys.skPi.toString('hex')).toBe(f.keys['Sk_pi secret']);
        expect(keys.skPr.toString('hex')).toBe(f.keys['Sk_pr secret']);
        if (suite.integ) {
          expect(keys.skAi.toString('hex')).toBe(f.keys['Sk_ai secret']);
          expect(keys.skAr.toString('hex')).toBe(f.keys['Sk_ar secret']);
        }
      });

      const open = (i: number): Buffer => {
        const m = parsed[i]!;
        const initiator = i === 2;
        const cipher = new SkCipher({
          encr: suite.encr,
          integ: suite.integ,
          encryptionKey: initiator ? keys.skEi : keys.skEr,
          integrityKey: initiator ? keys.skAi : keys.skAr,
        });
        const opened = cipher.open(m.raw, m.encrypted!.offset + 4);
        if (!opened.ok) throw new Error(`${name} message ${i}: ${opened.reason}`);
        return opened.plain;
      };

      it('opens both IKE_AUTH messages and re-emits their inner payloads byte for byte', () => {
        for (const i of [2, 3]) {
          const plain = open(i);
          const chain = parsePayloadChain(plain, 0, parsed[i]!.encrypted!.firstInner);
          expect(chain.ok).toBe(true);
          if (!chain.ok) return;
          expect(emitPayloadChain(chain.value.payloads).equals(plain)).toBe(true);
          const types = chain.value.payloads.map((p) => p.type);
          expect(types).toContain(i === 2 ? PayloadType.IDi : PayloadType.IDr);
          expect(types).toContain(PayloadType.AUTH);
          expect(types).toContain(PayloadType.SA);
        }
      });

      it("verifies strongSwan's AUTH over the octets we compute", () => {
        const swanIsInitiator = f.messages[0]!.from === 'strongswan';
        const i = swanIsInitiator ? 2 : 3;
        const chain = parsePayloadChain(open(i), 0, parsed[i]!.encrypted!.firstInner);
        if (!chain.ok) throw new Error('unparsable');
        const id = firstPayload(chain.value.payloads, swanIsInitiator ? PayloadType.IDi : PayloadType.IDr)!;
        const auth = firstPayload(chain.value.payloads, PayloadType.AUTH)!;
        const cert = new X509Certificate(firstPayload(chain.value.payloads, PayloadType.CERT)!.data);
        expect(cert.raw.equals(new X509Certificate(f.certificates.strongswan).raw)).toBe(true);
        const octets = swanIsInitiator
          ? signedOctets(suite.prf, initReq!.raw, nr, keys.skPi, emitPayloadBody(id))
          : signedOctets(suite.prf, initResp!.raw, ni, keys.skPr, emitPayloadBody(id));
        expect(verifyAuth(cert.publicKey, auth.method, auth.data, octets)).toMatchObject({ ok: true });
        // Any other octets fail: the check is not vacuous.
        expect(
          verifyAuth(cert.publicKey, auth.method, auth.data, Buffer.concat([octets, Buffer.from([0])])).ok,
        ).toBe(false);
      });

      it("derives charon's child SA keys from SK_d and the IKE_SA_INIT nonces", () => {
        const plain = open(3);
        const chain = parsePayloadChain(plain, 0, parsed[3]!.encrypted!.firstInner);
        if (!chain.ok) throw new Error('unparsable');
        const reqChain = parsePayloadChain(open(2), 0, parsed[2]!.encrypted!.firstInner);
        if (!reqChain.ok) throw new Error('unparsable');
        const child = acceptChosen(
          firstPayload(chain.value.payloads, PayloadType.SA)!.proposals,
          firstPayload(reqChain.value.payloads, PayloadType.SA)!.proposals,
          ProtocolId.ESP,
        )!;
        const k = deriveChildKeys(suite.prf, keys.skD, child.encr, child.integ, ni, nr);
        expect(k.initiatorToResponder.encryption.toString('hex')).toBe(f.keys['encryption initiator key']);
        expect(k.responderToInitiator.encryption.toString('hex')).toBe(f.keys['encryption responder key']);
        if (child.integ) {
          expect(k.initiatorToResponder.integrity.toString('hex')).toBe(f.keys['integrity initiator key']);
          expect(k.responderToInitiator.integrity.toString('hex')).toBe(f.keys['integrity responder key']);
        }
        expect(parsed[3]!.header.exchange).toBe(ExchangeType.IKE_AUTH);
      });
    });
  }
});
