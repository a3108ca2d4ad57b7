/** The rules between the host agent's fields, each refusing and each passing. */
import { describe, expect, it } from 'vitest';
import { formatProblem } from '../../../src/config/config-error.ts';
import { checkConfig } from '../../../src/config/load.ts';
import { HostConfigSchema } from '../../../src/config/host-config.ts';

const BASE = { router: '10.0.0.7', lanAddress: '10.0.0.1', sharedAddress: '198.51.100.30' };

const problems = (data: Record<string, unknown>): string[] =>
  checkConfig(HostConfigSchema, { ...BASE, ...data }).problems.map(formatProblem);

describe('host rules', () => {
  it('the defaults pass, and so does every field set to a sound value', () => {
    expect(problems({})).toEqual([]);
    expect(
      problems({
        tun: 'dn1',
        mode: 'native',
        pap: { transport: 'icmp', udpPort: 7032, blockSize: 64, spis: 64 },
        metrics: 'localhost:9733',
        ike: '/etc/distnat/ike.yaml',
      }),
    ).toEqual([]);
  });

  it.for([
    [
      'lanAddress equal to router',
      { lanAddress: BASE.router },
      'lanAddress',
      /own LAN address, not the router's/,
    ],
    [
      'sharedAddress equal to lanAddress',
      { sharedAddress: BASE.lanAddress },
      'sharedAddress',
      /not lanAddress/,
    ],
    ['sharedAddress equal to router', { sharedAddress: BASE.router }, 'sharedAddress', /not its LAN address/],
    ['both ipsec and ike', { ipsec: 'a.yaml', ike: 'b.yaml' }, 'ike', /either ipsec .* or ike, not both/],
    ['a metrics port above 65535', { metrics: '127.0.0.1:99999' }, 'metrics', /port of 0-65535/],
  ] as const)('refuses %s', ([, data, field, expected]) => {
    const found = problems(data as Record<string, unknown>);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(new RegExp(`^field \`${field}\`: got .*; `));
    expect(found[0]).toMatch(expected);
  });

  it('names the flag or the device that can stand in for each missing address', () => {
    const found = checkConfig(HostConfigSchema, {}).problems.map(formatProblem);
    expect(found).toEqual([
      "field `router`: got nothing; expected the router's LAN address (or give --router, or routers)",
      "field `lanAddress`: got nothing; expected this host's LAN address (or give --lan-address, or --lan-if with the LAN interface)",
      'field `sharedAddress`: got nothing; expected the shared address (or give --shared-address, or run ' +
        'native-setup/linux/host-setup.sh up so that the TUN device carries it)',
    ]);
  });
});
