import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AsnConvert } from '@peculiar/asn1-schema';
import { GeneralName, Name as AsnName } from '@peculiar/asn1-x509';
import { describe, expect, it } from 'vitest';
import {
  issuerAddressConstraints,
  nameConstraintViolation,
  type Constraints,
} from '../../../src/pki/name-constraints.ts';
import { CertificateRegistry } from '../../../src/pki/registry.ts';
import { generateSigningKey } from '../../../src/pki/keys.ts';
import { x509 } from '../../../src/pki/x509.ts';

const ip = (v: string) => new GeneralName({ iPAddress: v });
const dns = (v: string) => new GeneralName({ dNSName: v });
const email = (v: string) => new GeneralName({ rfc822Name: v });
const uri = (v: string) => new GeneralName({ uniformResourceIdentifier: v });
const dn = (s: string) =>
  new GeneralName({ directoryName: AsnConvert.parse(new x509.Name(s).toArrayBuffer(), AsnName) });
const rid = (v: string) => new GeneralName({ registeredID: v });

const inside = (c: Constraints, ...names: GeneralName[]) => nameConstraintViolation(c, names) === undefined;
const permit = (...p: GeneralName[]): Constraints => ({ permitted: p, excluded: [] });

describe('name constraint matching (RFC 5280 4.2.1.10)', () => {
  it('iPAddress: inside the prefix only, and never across address families', () => {
    const c = permit(ip('198.51.100.30/32'));
    expect(inside(c, ip('198.51.100.30'))).toBe(true);
    expect(inside(c, ip('198.51.100.31'))).toBe(false);
    expect(inside(c, ip('::ffff:198.51.100.30'))).toBe(false);
    expect(inside(permit(ip('198.51.100.0/24')), ip('198.51.100.255'))).toBe(true);
    expect(inside(permit(ip('198.51.100.0/24')), ip('198.51.101.0'))).toBe(false);
    expect(inside(permit(ip('2001:db8::/32')), ip('2001:db8:1::1'))).toBe(true);
    expect(inside(permit(ip('2001:db8::/32')), ip('192.0.2.1'))).toBe(false);
  });

  it('a type without constraints is free; a type with them must match one', () => {
    const c = permit(ip('198.51.100.30/32'));
    expect(inside(c, dns('anything.example'))).toBe(true);
    expect(inside(permit(ip('198.51.100.30/32'), dns('invalid')), dns('bank.example'))).toBe(false);
    expect(inside(permit(dns('invalid')), dns('x.invalid'))).toBe(true);
  });

  it('dNSName: the name itself and names below it, not names that merely end alike', () => {
    const c = permit(dns('example.com'));
    expect(inside(c, dns('example.com'))).toBe(true);
    expect(inside(c, dns('a.b.EXAMPLE.com'))).toBe(true);
    expect(inside(c, dns('badexample.com'))).toBe(false);
  });

  it('rfc822Name: mailbox, host and domain forms', () => {
    expect(inside(permit(email('invalid')), email('root@invalid'))).toBe(true);
    expect(inside(permit(email('invalid')), email('root@example.com'))).toBe(false);
    expect(inside(permit(email('.example.com')), email('a@mail.example.com'))).toBe(true);
    expect(inside(permit(email('.example.com')), email('a@example.com'))).toBe(false);
    expect(inside(permit(email('a@example.com')), email('b@example.com'))).toBe(false);
  });

  it('URI: the host part', () => {
    expect(inside(permit(uri('host.example')), uri('http://host.example/x'))).toBe(true);
    expect(inside(permit(uri('.example')), uri('http://a.example/'))).toBe(true);
    expect(inside(permit(uri('host.example')), uri('http://other.example/'))).toBe(false);
  });

  it('directoryName: the base RDNs begin the name, case and spaces folded', () => {
    const c = permit(dn('O=distnat, OU=198.51.100.30'));
    expect(inside(c, dn('O=distnat, OU=198.51.100.30, CN=198.51.100.30 ports 1026-1057'))).toBe(true);
    expect(inside(c, dn('O=Distnat, OU=198.51.100.30, CN=x'))).toBe(true);
    expect(inside(c, dn('O=distnat, OU=198.51.100.31, CN=x'))).toBe(false);
    expect(inside(c, dn('O=distnat'))).toBe(false);
    expect(inside(c, dn('CN=x, O=distnat, OU=198.51.100.30'))).toBe(false);
  });

  it('excluded subtrees win, and unknown name types under constraints are refused', () => {
    const c: Constraints = { permitted: [], excluded: [dns('evil.example')] };
    expect(inside(c, dns('www.evil.example'))).toBe(false);
    expect(inside(c, dns('good.example'))).toBe(true);
    expect(inside(permit(rid('1.2.3')), rid('1.2.3'))).toBe(false);
    expect(nameConstraintViolation(permit(ip('198.51.100.30/32')), [ip('192.0.2.1')])).toMatch(
      /IP 192\.0\.2\.1 is outside/,
    );
  });
});

/** A self-signed CA certificate with the given subjectAltNames (none: no extension). */
async function caWith(names: x509.JsonGeneralName[]): Promise<x509.X509Certificate> {
  const { key } = await generateSigningKey('ec-p256');
  const extensions: x509.Extension[] = [new x509.BasicConstraintsExtension(true, 0, true)];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names));
  return x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: 'O=distnat, OU=198.51.100.30, CN=ca',
    keys: { publicKey: key.publicKey, privateKey: key.privateKey },
    signingAlgorithm: key.algorithm,
    notBefore: new Date(0),
    notAfter: new Date(Date.now() + 86_400_000),
    extensions,
  });
}

describe('issuerAddressConstraints: the addresses a CA names of itself bound those it certifies', () => {
  it('one permitted subtree per address of the CA, /32 or /128; other name types do not count', async () => {
    const c = issuerAddressConstraints(
      await caWith([
        { type: 'ip', value: '198.51.100.30' },
        { type: 'dns', value: 'router.invalid' },
        { type: 'ip', value: '2001:db8::30' },
      ]),
    )!;
    expect(c.permitted.map((g) => g.iPAddress)).toEqual(['198.51.100.30/32', '2001:db8::30/128']);
    expect(c.excluded).toEqual([]);
    expect(inside(c, ip('198.51.100.30'))).toBe(true);
    expect(inside(c, ip('2001:db8::30'))).toBe(true);
    expect(inside(c, ip('198.51.100.31'))).toBe(false);
    expect(inside(c, ip('2001:db8::31'))).toBe(false);
    expect(inside(c, dns('bank.example'))).toBe(true); // not an address: the nameConstraints' business
  });

  it('no subjectAltName, or none with an address: no constraint', async () => {
    expect(issuerAddressConstraints(await caWith([]))).toBeUndefined();
    expect(
      issuerAddressConstraints(await caWith([{ type: 'dns', value: 'router.invalid' }])),
    ).toBeUndefined();
  });
});

describe('CertificateRegistry with two writers', () => {
  it('a revocation written by one process survives the next change by another', () => {
    const dir = mkdtempSync(join(tmpdir(), 'distnat-reg-'));
    try {
      const file = join(dir, 'issued.json');
      const router = CertificateRegistry.open(file);
      const entry = (serial: string) => ({
        serial,
        role: 'host' as const,
        subject: 'CN=x',
        keyId: 'aa',
        notBefore: 0,
        notAfter: Date.now() + 60_000,
        ports: [{ lowest: 1026, count: 32 }],
        spis: [],
        pem: '',
      });
      router.add(entry('01'));
      const cli = CertificateRegistry.open(file);
      expect(cli.revoke('01', 'keyCompromise', 5)).toBe('revoked');
      router.add(entry('02')); // must not write back its stale copy of 01
      const after = CertificateRegistry.open(file);
      expect(after.find('01')?.revoked).toEqual({ at: 5, reason: 'keyCompromise' });
      expect(after.find('02')).toBeDefined();
      expect(router.takeCrlNumber()).toBe(1);
      expect(cli.takeCrlNumber()).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
