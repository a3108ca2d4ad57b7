/**
 * The rules of the IKE file: the PEM files it names are read (and only
 * read) to see that they hold what they should, and the fields that depend
 * on each other agree.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatProblem } from '../../../src/config/config-error.ts';
import { checkConfig } from '../../../src/config/load.ts';
import { IkeConfigSchema } from '../../../src/config/ike-config.ts';

const dir = mkdtempSync(join(tmpdir(), 'distnat-ike-rules-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const pem = (name: string, label: string): string => {
  const f = join(dir, name);
  writeFileSync(f, `-----BEGIN ${label}-----\nAAAA\n-----END ${label}-----\n`);
  return f;
};
const ROOT = pem('root.pem', 'CERTIFICATE');
const CERT = pem('cert.pem', 'CERTIFICATE');
const KEY = pem('key.pem', 'PRIVATE KEY');
const EC_KEY = pem('ec-key.pem', 'EC PRIVATE KEY');
const NOT_PEM = join(dir, 'notes.txt');
writeFileSync(NOT_PEM, 'hello\n');
const MISSING = join(dir, 'missing.pem');

const problems = (data: Record<string, unknown>): string[] =>
  checkConfig(IkeConfigSchema, { trust: [ROOT], ...data }).problems.map(formatProblem);

describe('IKE rules', () => {
  it("a host's file (no key yet, certificate from the router) and a peer's file pass", () => {
    expect(problems({ peers: [{ address: '203.0.113.3', initiate: true }] })).toEqual([]);
    expect(problems({ key: MISSING })).toEqual([]);
    expect(problems({ key: KEY })).toEqual([]);
    expect(
      problems({ certificate: CERT, key: KEY, peers: [{ address: '198.51.100.30', port: 1024 }] }),
    ).toEqual([]);
    expect(problems({ certificate: CERT, key: EC_KEY })).toEqual([]);
    expect(
      problems({ certificateUrl: 'https://10.0.0.7:7033', cookieThreshold: 5000, halfOpenLimit: 5000 }),
    ).toEqual([]);
  });

  it.for([
    [
      'a trust file that does not exist',
      { trust: [ROOT, MISSING] },
      'trust.1',
      /readable file of PEM certificates.*ENOENT/,
    ],
    ['a trust file without a certificate', { trust: [NOT_PEM] }, 'trust.0', /found none in/],
    ['a certificate file that does not exist', { certificate: MISSING, key: KEY }, 'certificate', /ENOENT/],
    ['a certificate file holding a key', { certificate: KEY, key: KEY }, 'certificate', /PEM certificates/],
    ['a certificate without its key', { certificate: CERT }, 'key', /private key of `certificate`/],
    ["a certificate's key that does not exist", { certificate: CERT, key: MISSING }, 'key', /ENOENT/],
    ['a key file that holds no key', { key: CERT }, 'key', /PEM private key/],
    [
      'a certificate URL that is not HTTP',
      { certificateUrl: 'ftp://10.0.0.7/' },
      'certificateUrl',
      /http: or https:/,
    ],
    [
      'a cookie threshold above the half-open limit',
      { cookieThreshold: 101, halfOpenLimit: 100 },
      'cookieThreshold',
      /at most halfOpenLimit \(100\)/,
    ],
    [
      'the same peer twice',
      {
        peers: [
          { address: '203.0.113.3' },
          { address: '203.0.113.4' },
          { address: '203.0.113.3', port: 500 },
        ],
      },
      'peers.2',
      /peers.0 is 203.0.113.3:500 already/,
    ],
  ] as const)('refuses %s', ([, data, field, expected]) => {
    const found = problems(data as Record<string, unknown>);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(new RegExp(`^field \`${field.replace('.', '\\.')}\`: got .*; `));
    expect(found[0]).toMatch(expected);
  });

  it('accepts the same address on two ports as two peers', () => {
    expect(problems({ peers: [{ address: '203.0.113.3' }, { address: '203.0.113.3', port: 4500 }] })).toEqual(
      [],
    );
  });
});
