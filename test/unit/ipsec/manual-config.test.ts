import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, formatProblem } from '../../../src/config/config-error.ts';
import { checkConfig } from '../../../src/config/load.ts';
import { IpsecEngine } from '../../../src/ipsec/engine.ts';
import { buildManualKeying } from '../../../src/ipsec/manual-build.ts';
import { ManualKeyingSchema, parseManualKeying, readManualKeying } from '../../../src/ipsec/manual-config.ts';
import { EspSa } from '../../../src/ipsec/sa.ts';
import { hex, place, SERVER, SHARED, taken, udpPacket } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'ipsec-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const GCM_KEY = '"0x000102030405060708090a0b0c0d0e0f10111213"';
const CBC_KEY = '"0x505152535455565758595a5b5c5d5e5f"';
const SHA_KEY = '"0x808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"';

/** The host's file: DNS to the server protected with ESP, its tunnel to a gateway with ESP-in-UDP. */
const HOST = `
defaultAction: bypass
policies:
  - name: ike
    protocol: udp
    localPort: 500
    action: bypass
  - name: dns
    local: 198.51.100.30
    remote: 203.0.113.0/24
    protocol: udp
    remotePort: 53
    action: protect
    protect: [esp]
  - name: web
    remote: 203.0.113.3
    protocol: tcp
    remotePort: 443
    action: protect
    protect: [ah, esp]
  - name: blocked
    remote: 192.0.2.0-192.0.2.127
    action: discard
sas:
  - name: dns-out
    spi: 0x00001000
    direction: outbound
    protocol: esp
    encryption: { algorithm: aes-gcm-16, key: ${GCM_KEY} }
    policy: dns
  - name: dns-in
    spi: 0x00000100
    direction: inbound
    protocol: esp
    encryption: { algorithm: aes-gcm-16, key: ${GCM_KEY} }
    replayWindow: 1024
    policy: dns
  - spi: "0x2000"
    direction: outbound
    protocol: ah
    integrity: { algorithm: hmac-sha256-128, key: ${SHA_KEY} }
    policy: web
  - spi: 0x2001
    direction: outbound
    protocol: esp
    encryption: { algorithm: aes-cbc, key: ${CBC_KEY} }
    integrity: { algorithm: hmac-sha256-128, key: ${SHA_KEY} }
    policy: web
`;

/** The server's side of the DNS SAs (SPIs and directions swapped). */
const SERVER_SIDE = `
policies:
  - name: dns
    local: 203.0.113.3
    remote: 198.51.100.30
    protocol: udp
    localPort: 53
    action: protect
sas:
  - spi: 0x00001000
    direction: inbound
    protocol: esp
    encryption: { algorithm: aes-gcm-16, key: ${GCM_KEY} }
    policy: dns
  - spi: 0x00000100
    direction: outbound
    protocol: esp
    encryption: { algorithm: aes-gcm-16, key: ${GCM_KEY} }
    policy: dns
`;

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('manual keying file', () => {
  it('builds databases that protect what the file says, and a peer built from its own file opens it', () => {
    const leased = (spi: number): boolean => spi >= 0x100 && spi < 0x120;
    const host = buildManualKeying(readManualKeying(file('host.yaml', HOST)), { isLeasedSpi: leased });
    const peer = buildManualKeying(readManualKeying(file('server.yaml', SERVER_SIDE)));
    const h = new IpsecEngine(host.spd, host.sad);
    const s = new IpsecEngine(peer.spd, peer.sad);
    expect(host.spd.policies.map((p) => p.name)).toEqual(['ike', 'dns', 'web', 'blocked']);
    expect(host.spd.get('web')!.outbound.map((sa) => sa.protocol)).toEqual(['ah', 'esp']);
    expect((host.sad.inboundEsp(0x100) as EspSa).replay!.size).toBe(1024);

    const query = udpPacket(1030, 53, new Uint8Array([1, 2, 3]));
    const p = place(query);
    expect(h.outbound(p.buf, p.span)).toBe('protected');
    expect(s.inbound(p.buf, p.span)).toBe('accepted');
    expect(hex(taken(p))).toBe(hex(query));

    const answer = udpPacket(53, 1030, new Uint8Array([4, 5]), { src: SERVER, dst: SHARED });
    const q = place(answer);
    expect(s.outbound(q.buf, q.span)).toBe('protected');
    expect(h.inbound(q.buf, q.span)).toBe('accepted');
    expect(hex(taken(q))).toBe(hex(answer));

    const verdict = (pkt: Uint8Array): string => {
      const x = place(pkt);
      return h.outbound(x.buf, x.span);
    };
    expect(verdict(udpPacket(500, 500))).toBe('bypass');
    expect(verdict(udpPacket(1030, 80, undefined, { dst: 0xc0000205 }))).toBe('policy-discard');
    expect(verdict(udpPacket(1030, 80, undefined, { dst: 0xc0000285 }))).toBe('bypass');
  });

  it('refuses an inbound SA outside the leased SPI block, naming the field', () => {
    const cfg = parseManualKeying(
      {
        sas: [
          {
            spi: 0x5000,
            direction: 'inbound',
            protocol: 'esp',
            encryption: { algorithm: 'aes-gcm-16', key: GCM_KEY.slice(1, -1) },
          },
        ],
      },
      'h.yaml',
    );
    const problems = problemsOf(() => buildManualKeying(cfg, { isLeasedSpi: () => false, source: 'h.yaml' }));
    expect(problems).toEqual(['field `sas.0.spi`: got 0x5000; not in a SPI block leased to this host']);
  });

  it('names each bad field with the value and what was expected', () => {
    const problems = problemsOf(() =>
      readManualKeying(
        file(
          'bad.yaml',
          `
policies:
  - name: p
    remote: 203.0.113.0/33
    localPort: 2000-1000
    action: protect
    protect: [esp, ah]
sas:
  - spi: 255
    direction: outbound
    protocol: esp
    encryption: { algorithm: aes-gcm-16, key: ${GCM_KEY} }
  - spi: 0x300
    direction: inbound
    protocol: esp
    encryption: { algorithm: aes-gcm-17, key: ${CBC_KEY} }
    replayWindow: 20
  - spi: 0x301
    direction: inbound
    protocol: esp
    encryption: { algorithm: null }
    integrity: { algorithm: hmac-sha256-128, key: 0x1234 }
  - spi: 0x302
    direction: outbound
    protocol: esp
    encryption: { algorithm: aes-gcm-16, key: ${GCM_KEY} }
    colour: blue
`,
        ),
      ),
    );
    const text = problems.join('\n');
    expect(text).toMatch(/^field `policies.0.remote`: got "203.0.113.0\/33"; expected any, an address/m);
    expect(text).toMatch(
      /^field `policies.0.localPort`: got "2000-1000"; expected any, a port, or first-last/m,
    );
    expect(text).toMatch(
      /^field `policies.0.protect`: got \["esp","ah"\]; expected \[esp\], \[ah\] or \[ah, esp\]/m,
    );
    expect(text).toMatch(/^field `sas.0.spi`: got 255; SPIs are 256/m);
    expect(text).toMatch(/^field `sas.1.encryption.algorithm`: got "aes-gcm-17"; /m);
    expect(text).toMatch(/^field `sas.1.replayWindow`: got 20; expected 0 \(off\) or 32/m);
    // A bare YAML null names the null algorithm: no complaint about sas.2.encryption.
    expect(text).not.toMatch(/sas.2.encryption/);
    expect(text).toMatch(/^field `sas.2.integrity.key`: got 4660; write keys as quoted hex strings/m);
    expect(text).toMatch(/^field `sas.3.colour`: got "blue"; unknown field; expected one of name, spi, /m);
    expect(problems).toHaveLength(8);
  });

  it('checks algorithms, keys, tunnel addresses and policy links once the fields parse', () => {
    const problems = problemsOf(() =>
      parseManualKeying(
        {
          policies: [
            { name: 'p', action: 'protect', protect: ['ah', 'esp'] },
            { name: 'b', action: 'bypass' },
            { name: 'b', action: 'bypass', protect: ['esp'] },
          ],
          sas: [
            {
              spi: 0x300,
              direction: 'outbound',
              protocol: 'esp',
              encryption: { algorithm: 'aes-gcm-16', key: '0x0011' },
              integrity: { algorithm: 'hmac-sha256-128', key: SHA_KEY.slice(1, -1) },
              policy: 'p',
            },
            {
              spi: 0x301,
              direction: 'inbound',
              protocol: 'esp',
              mode: 'tunnel',
              encryption: { algorithm: 'aes-cbc', key: CBC_KEY.slice(1, -1) },
              policy: 'nowhere',
            },
            {
              spi: 0x301,
              direction: 'inbound',
              protocol: 'esp',
              encryption: { algorithm: 'null' },
              integrity: { algorithm: 'hmac-sha1-96', key: SHA_KEY.slice(1, -1) },
              policy: 'b',
            },
            {
              spi: 0x302,
              direction: 'inbound',
              protocol: 'ah',
              encryption: { algorithm: 'null' },
              encap: { localPort: 4500, remotePort: 4500 },
            },
            {
              spi: 0x303,
              direction: 'outbound',
              protocol: 'esp',
              encryption: { algorithm: 'aes-gcm-16', key: GCM_KEY.slice(1, -1) },
              replayWindow: 64,
              nested: true,
              policy: 'p',
            },
          ],
        },
        'x.yaml',
      ),
    );
    const text = problems.join('\n');
    expect(text).toMatch(
      /field `sas.0.encryption.key`: got "0x0011"; aes-gcm-16 takes 160, 224, 288-bit keys \(AES key followed by the 4-byte salt\), got 16 bits/,
    );
    expect(text).toMatch(/field `sas.0.integrity`: .*aes-gcm-16 authenticates by itself/);
    expect(text).toMatch(/field `sas.1.integrity`: got nothing; aes-cbc needs an integrity algorithm/);
    expect(text).toMatch(/field `sas.1.src`: got nothing; tunnel mode needs the outer source address/);
    expect(text).toMatch(/field `sas.1.policy`: got "nowhere"; no policy named nowhere/);
    expect(text).toMatch(/field `sas.2.integrity.key`: .*hmac-sha1-96 takes a 160-bit key, got 256/);
    expect(text).toMatch(/field `sas.2.spi`: got 769; another inbound esp SA has SPI 769/);
    expect(text).toMatch(/field `sas.2.policy`: got "b"; policy b does not protect/);
    expect(text).toMatch(/field `sas.3.encryption`: .*AH does not encrypt/);
    expect(text).toMatch(/field `sas.3.integrity`: got nothing; AH needs an integrity algorithm/);
    expect(text).toMatch(/field `sas.3.encap`: .*only ESP is carried in UDP/);
    expect(text).toMatch(/field `sas.4.replayWindow`: got 64; only inbound SAs have a replay window/);
    expect(text).toMatch(/field `sas.4.nested`: got true; only inbound SAs are nested/);
    expect(text).toMatch(/field `sas.4.policy`: .*policy p has an outbound esp SA already/);
    expect(text).toMatch(/field `policies.0`: .*no outbound ah SA names it/);
    expect(text).toMatch(/field `policies.2.name`: got "b"; a policy named b comes earlier/);
    expect(text).toMatch(/field `policies.2.protect`: .*only protect policies name protocols/);
  });

  it('names a YAML syntax error with its line', () => {
    const problems = problemsOf(() => readManualKeying(file('syntax.yaml', 'sas:\n  - spi: [\n')));
    expect(problems.join('\n')).toMatch(/line/);
  });
});

describe('the example in docs/ipsec.md', () => {
  it('is a valid file that builds', () => {
    const doc = readFileSync(new URL('../../../docs/ipsec.md', import.meta.url), 'utf8');
    const yaml = /```yaml\n([\s\S]*?)```/.exec(doc)?.[1];
    expect(yaml).toBeDefined();
    const cfg = readManualKeying(file('doc.yaml', yaml!));
    const { spd, sad } = buildManualKeying(cfg, { isLeasedSpi: (spi) => spi >= 0x100 && spi < 0x120 });
    expect(spd.policies.map((p) => p.name)).toEqual(['ike', 'dns', 'web', 'gateway']);
    expect(spd.get('gateway')!.outbound[0]!.name).toBe('gw-out');
    expect(spd.get('gateway')!.outbound[0]!.mode).toBe('tunnel');
    expect(spd.get('dns')!.outbound[0]!.mode).toBe('transport');
    expect(sad.inboundEsp(0x100)!.name).toBe('dns-in');
    expect(sad.inboundAh(0x101)!.name).toBe('web-in');
    expect(spd.get('web')!.outbound[0]!.name).toBe('web-out');
  });
});

describe('manual keying file: every problem at once', () => {
  it("an SA's own problems are reported beside another SA's wrong field", () => {
    const problems = checkConfig(ManualKeyingSchema, {
      sas: [
        {
          spi: 300,
          direction: 'outbound',
          protocol: 'esp',
          encryption: { algorithm: 'aes-cbc', key: '0x00' },
        },
        { spi: true, direction: 'inbound', protocol: 'esp', encryption: { algorithm: 'null' } },
      ],
    }).problems.map(formatProblem);
    expect(problems).toEqual([
      'field `sas.0.encryption.key`: got "0x00"; aes-cbc takes 128, 192, 256-bit keys, got 8 bits',
      'field `sas.0.integrity`: got nothing; aes-cbc needs an integrity algorithm (RFC 4303 3.2)',
      'field `sas.1.spi`: got true; Invalid input',
    ]);
  });
});
