/**
 * The rules between the router's fields: each refusal with the field it
 * names, and the nearest configuration that passes, so that every rule is
 * shown to fire and to hold its fire.
 */
import { describe, expect, it } from 'vitest';
import { formatProblem } from '../../../src/config/config-error.ts';
import { checkConfig } from '../../../src/config/load.ts';
import {
  FIRST_RETRIES_SECONDS,
  MIN_LEASE_SECONDS,
  RENEWALS_AT,
  RouterConfigSchema,
} from '../../../src/config/router-config.ts';
import { DEFAULT_RETRANSMIT } from '../../../src/pap/pap-client.ts';
import { RENEW_AT } from '../../../src/pap/host-leases.ts';

const BASE = { sharedAddress: '198.51.100.30', lanAddress: '10.0.0.7' };

function problems(data: Record<string, unknown>): string[] {
  return checkConfig(RouterConfigSchema, { ...BASE, ...data }).problems.map(formatProblem);
}

const pap = (p: Record<string, unknown>) => ({ pap: p });

describe('router rules', () => {
  it('the defaults pass, and so does every field set to a sound value', () => {
    expect(problems({})).toEqual([]);
    expect(
      problems({
        tun: 'dn1',
        pap: {
          udpPort: 7032,
          icmp: false,
          portRange: [10000, 19999],
          blockSize: 100,
          spiFirst: 0xffff_ffff - 63,
          spiBlockSize: 64,
          leaseSeconds: MIN_LEASE_SECONDS,
          quarantineSeconds: 120,
          maxPortsPerHost: 100,
          maxSpisPerHost: 64,
        },
        pki: { dir: '/var/lib/distnat/router/ca', port: 7033, wanAddress: '203.0.113.1', crlSeconds: 600 },
        metrics: '127.0.0.1:9732',
      }),
    ).toEqual([]);
  });

  it.for([
    [
      'sharedAddress equal to lanAddress',
      { lanAddress: BASE.sharedAddress },
      'lanAddress',
      /not sharedAddress/,
    ],
    ['an inverted port range', pap({ portRange: [5000, 2000] }), 'pap.portRange', /low <= high/],
    [
      'a port range with well-known ports',
      pap({ portRange: [1023, 65534] }),
      'pap.portRange',
      /from 1024 up.*RFC 6335/,
    ],
    [
      'a block size that does not divide the port range',
      pap({ blockSize: 30 }),
      'pap.blockSize',
      /divides the 64512 ports of pap.portRange \[1024, 65535\] \(such as 24, 28, 32\), else its last 12 ports/,
    ],
    [
      'a per-host port quota below the block size',
      pap({ maxPortsPerHost: 31 }),
      'pap.maxPortsPerHost',
      /at least pap.blockSize \(32\)/,
    ],
    [
      'a per-host SPI quota below the SPI block size',
      pap({ maxSpisPerHost: 63 }),
      'pap.maxSpisPerHost',
      /at least pap.spiBlockSize \(64\)/,
    ],
    [
      'an SPI block that runs past 32 bits',
      pap({ spiFirst: 0xffff_ffff - 62 }),
      'pap.spiFirst',
      /at most 4294967232: SPIs are 32 bits/,
    ],
    ['an SPI start beyond 32 bits', pap({ spiFirst: 2 ** 32 }), 'pap.spiFirst', /<=4294967295/],
    [
      'a lease a renewal at half of it cannot keep',
      pap({ leaseSeconds: MIN_LEASE_SECONDS - 1 }),
      'pap.leaseSeconds',
      new RegExp(`at least ${MIN_LEASE_SECONDS} s: a host renews at half the lease`),
    ],
    ['a quarantine below 120 s', pap({ quarantineSeconds: 119 }), 'pap.quarantineSeconds', /RFC 6888/],
    [
      'pki.wanAddress equal to lanAddress',
      { pki: { dir: 'ca', wanAddress: '10.0.0.7' } },
      'pki.wanAddress',
      /not lanAddress/,
    ],
    [
      'pki.wanAddress equal to sharedAddress',
      { pki: { dir: 'ca', wanAddress: BASE.sharedAddress } },
      'pki.wanAddress',
      /not sharedAddress: .* cannot listen on it/,
    ],
    ['a metrics port above 65535', { metrics: '127.0.0.1:99999' }, 'metrics', /port of 0-65535/],
    ['a metrics address without a port', { metrics: '127.0.0.1' }, 'metrics', /host:port/],
    [
      'a metrics address that is no address',
      { metrics: '10.0.0.999:9732' },
      'metrics',
      /IPv4 address or a host name/,
    ],
    [
      'metrics on the shared address',
      { metrics: `${BASE.sharedAddress}:9732` },
      'metrics',
      /not sharedAddress/,
    ],
    [
      "metrics on the CA endpoint's port",
      { metrics: '10.0.0.7:7033', pki: { dir: 'ca' } },
      'metrics',
      /another port than pki.port \(7033\)/,
    ],
    [
      "metrics on every address at the CA endpoint's port",
      { metrics: '0.0.0.0:8000', pki: { dir: 'ca', port: 8000 } },
      'metrics',
      /another port than pki.port \(8000\)/,
    ],
  ] as const)('refuses %s', ([, data, field, expected]) => {
    const found = problems(data as Record<string, unknown>);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(new RegExp(`^field \`${field.replace('.', '\\.')}\`: got .*; `));
    expect(found[0]).toMatch(expected);
  });

  it.for([
    ['a port range from 1024', pap({ portRange: [1024, 1055] })],
    ['a block size that divides the range', pap({ portRange: [2000, 2999], blockSize: 200 })],
    ['a quota of exactly one block', pap({ maxPortsPerHost: 32, maxSpisPerHost: 64 })],
    ['the last whole SPI block', pap({ spiFirst: 0xffff_ffff - 63 })],
    ['metrics beside the CA on another port', { metrics: '10.0.0.7:9732', pki: { dir: 'ca' } }],
    ['metrics on the CA port of another address', { metrics: '127.0.0.1:7033', pki: { dir: 'ca' } }],
    ['metrics by host name, port 0 (any free one)', { metrics: 'localhost:0' }],
  ] as const)('accepts %s', ([, data]) => {
    expect(problems(data as Record<string, unknown>)).toEqual([]);
  });
});

describe('the shortest lease', () => {
  it("is sized by the PAP client's own retransmission and renewal times", () => {
    const p = DEFAULT_RETRANSMIT;
    let waits = 0;
    for (let i = 0; i < 2; i++) waits += Math.min(p.maxMs, p.initialMs * 2 ** i);
    expect(FIRST_RETRIES_SECONDS).toBeCloseTo((waits / 1000) * (1 + p.jitter), 9);
    expect(RENEWALS_AT).toEqual(RENEW_AT);
    const window = (lease: number) => lease * (RENEWALS_AT[1] - RENEWALS_AT[0]);
    expect(window(MIN_LEASE_SECONDS)).toBeGreaterThanOrEqual(FIRST_RETRIES_SECONDS);
    expect(window(MIN_LEASE_SECONDS - 1)).toBeLessThan(FIRST_RETRIES_SECONDS);
  });
});

describe('router etcd section', () => {
  const etcd = (e: Record<string, unknown>) => ({ etcd: e });

  it('endpoints alone pass; the defaults fill the rest', () => {
    expect(problems(etcd({ endpoints: ['http://10.0.0.21:2379'] }))).toEqual([]);
    const c = checkConfig(RouterConfigSchema, { ...BASE, ...etcd({ endpoints: ['http://10.0.0.21:2379'] }) });
    expect(c.config?.etcd).toMatchObject({ prefix: '/distnat/', callTimeoutSeconds: 2, clockSkewSeconds: 2 });
    expect(
      problems(
        etcd({
          endpoints: ['https://10.0.0.21:2379', 'https://10.0.0.22:2379'],
          tls: { ca: '/etc/ca.pem', cert: '/etc/c.pem', key: '/etc/c.key' },
          auth: { username: 'distnat', passwordFile: '/etc/pw' },
          prefix: '/leases/',
        }),
      ),
    ).toEqual([]);
  });

  it('each refusal names its field', () => {
    expect(problems(etcd({ endpoints: [] })).join()).toContain('etcd.endpoints');
    expect(problems(etcd({ endpoints: ['10.0.0.21:2379'] })).join()).toMatch(/etcd\.endpoints.*client URL/);
    expect(problems(etcd({ endpoints: ['http://10.0.0.21:2379'], prefix: 'distnat' })).join()).toContain(
      'etcd.prefix',
    );
    expect(problems(etcd({ endpoints: ['https://10.0.0.21:2379'] })).join()).toContain('etcd.tls');
    expect(problems(etcd({ endpoints: ['http://10.0.0.21:2379'], tls: { ca: '/ca.pem' } })).join()).toContain(
      'etcd.endpoints',
    );
    expect(
      problems(
        etcd({ endpoints: ['https://10.0.0.21:2379'], tls: { ca: '/ca.pem', cert: '/c.pem' } }),
      ).join(),
    ).toContain('etcd.tls');
    expect(problems(etcd({ endpoints: ['http://10.0.0.21:2379'], port: 1 })).join()).toContain('etcd');
  });
});
