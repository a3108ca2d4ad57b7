import { describe, expect, it } from 'vitest';
import { mergeRouterFlags } from '../../../src/cli/commands/router.ts';
import { ConfigError } from '../../../src/config/config-error.ts';
import { validateConfig } from '../../../src/config/load.ts';
import { RouterConfigSchema } from '../../../src/config/router-config.ts';

const BASE = { sharedAddress: '198.51.100.30', lanAddress: '10.0.0.7' };

function problemsOf(data: unknown): string {
  try {
    validateConfig(RouterConfigSchema, data, 'router.yaml');
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.join('\n');
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('router configuration: pki section', () => {
  it('is absent unless given: no CA, as before', () => {
    expect(validateConfig(RouterConfigSchema, BASE, 'r').pki).toBeUndefined();
  });

  it('fills port 7033 and a 600 s CRL around the directory', () => {
    const c = validateConfig(
      RouterConfigSchema,
      { ...BASE, pki: { dir: '/var/lib/distnat/router/ca' } },
      'r',
    );
    expect(c.pki).toEqual({ dir: '/var/lib/distnat/router/ca', port: 7033, crlSeconds: 600 });
  });

  it('names each bad field of the section', () => {
    const text = problemsOf({
      ...BASE,
      pki: { dir: '', port: 70000, wanAddress: '203.0.113.300', crlSeconds: 10, crlUrl: 'x' },
    });
    expect(text).toMatch(/field `pki.dir`: got ""/);
    expect(text).toMatch(/field `pki.port`: got 70000/);
    expect(text).toMatch(/field `pki.wanAddress`: got "203.0.113.300"; expected an IPv4/);
    expect(text).toMatch(/field `pki.crlSeconds`: got 10; a CRL living under a minute/);
    expect(text).toMatch(/crlUrl/);
  });

  it('wants a directory: a section without one is refused', () => {
    expect(problemsOf({ ...BASE, pki: { port: 7033 } })).toMatch(/field `pki.dir`: got nothing/);
  });

  it('refuses the LAN address as the WAN address', () => {
    expect(problemsOf({ ...BASE, pki: { dir: 'ca', wanAddress: '10.0.0.7' } })).toMatch(
      /field `pki.wanAddress`: got "10.0.0.7"; expected the WAN address, not lanAddress/,
    );
  });
});

describe('distnat router flags for the CA', () => {
  it('--ca-dir, --ca-port and --crl-address make or override the pki section', () => {
    const merged = mergeRouterFlags(
      { ...BASE, pki: { dir: '/etc/ca', port: 8000 } },
      { 'ca-dir': '/tmp/ca', 'crl-address': '203.0.113.1' },
    );
    const c = validateConfig(RouterConfigSchema, merged, 'r');
    expect(c.pki).toEqual({ dir: '/tmp/ca', port: 8000, wanAddress: '203.0.113.1', crlSeconds: 600 });
    expect(
      validateConfig(RouterConfigSchema, mergeRouterFlags(BASE, { 'ca-dir': 'ca', 'ca-port': 9 }), 'r').pki,
    ).toMatchObject({ dir: 'ca', port: 9 });
  });

  it('leaves the section alone without CA flags, and a --crl-address alone is refused for want of a directory', () => {
    expect(mergeRouterFlags(BASE, { tun: 'dn1' })).toEqual({ ...BASE, tun: 'dn1' });
    expect(problemsOf(mergeRouterFlags(BASE, { 'crl-address': '203.0.113.1' }))).toMatch(/field `pki.dir`/);
  });
});
