import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { IkeConfigSchema, readIkeConfig } from '../../../src/config/ike-config.ts';
import { ConfigError } from '../../../src/config/config-error.ts';

const file = (text: string): string => {
  const f = join(mkdtempSync(join(tmpdir(), 'distnat-ike-cfg-')), 'ike.yaml');
  writeFileSync(f, text);
  return f;
};

describe('the IKE file', () => {
  it('a minimal file gets every default', () => {
    const c = IkeConfigSchema.parse({ trust: ['/root.pem'], peers: [{ address: '203.0.113.3' }] });
    expect(c).toMatchObject({
      keyType: 'ec-p256',
      dpdSeconds: 30,
      crlMaxAgeSeconds: 30,
      retrySeconds: 5,
      rekeySeconds: { ike: 14_400, child: 3600 },
      fragmentation: true,
      fragmentSize: 1280,
      peers: [{ address: '203.0.113.3', port: 500, initiate: false, mode: 'tunnel' }],
    });
  });

  it('names each bad field with what was there and what was expected', () => {
    const f = file(
      'trust: []\npeers:\n  - { address: 203.0.113.300, port: 70000 }\ncertificateUrl: not a url\nbogus: 1\n',
    );
    let err: unknown;
    try {
      readIkeConfig(f);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const text = (err as ConfigError).problems.join('\n');
    expect(text).toMatch(/field `trust`: got \[\]; expected at least one root CA certificate/);
    expect(text).toMatch(/field `peers\.0\.address`: got "203\.0\.113\.300"; expected an IPv4 address/);
    expect(text).toMatch(/field `peers\.0\.port`: got 70000/);
    expect(text).toMatch(/field `certificateUrl`: got "not a url"; expected a URL/);
    expect(text).toMatch(/bogus/);
  });
});
