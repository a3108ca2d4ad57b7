/** A host's file against its router's: what only a check of both files together can see. */
import { describe, expect, it } from 'vitest';
import { formatProblem } from '../../../src/config/config-error.ts';
import { hostAgainstRouter, routerNamedByHost } from '../../../src/config/deployment-rules.ts';
import { HostConfigSchema } from '../../../src/config/host-config.ts';
import { RouterConfigSchema } from '../../../src/config/router-config.ts';

const router = (pap: Record<string, unknown> = {}) =>
  RouterConfigSchema.parse({ sharedAddress: '198.51.100.30', lanAddress: '10.0.0.7', pap });
const host = (o: Record<string, unknown> = {}) =>
  HostConfigSchema.parse({
    router: '10.0.0.7',
    lanAddress: '10.0.0.1',
    sharedAddress: '198.51.100.30',
    ...o,
  });

const against = (h: ReturnType<typeof host>, r: ReturnType<typeof router>): string[] =>
  hostAgainstRouter(h, r, 'router.yaml').map(formatProblem);

describe('a host against its router', () => {
  it('the defaults of both agree, and so do ICMP PAP and a smaller block', () => {
    expect(against(host(), router())).toEqual([]);
    expect(against(host({ pap: { transport: 'icmp', udpPort: 9 } }), router())).toEqual([]);
    expect(against(host({ pap: { blockSize: 16 } }), router({ maxPortsPerHost: 16 }))).toEqual([]);
  });

  it.for([
    [
      'another shared address',
      host({ sharedAddress: '198.51.100.31' }),
      router(),
      /^field `sharedAddress`: got "198.51.100.31"; expected the router's sharedAddress 198.51.100.30 \(router.yaml\)$/,
    ],
    [
      'another PAP port',
      host({ pap: { udpPort: 7000 } }),
      router(),
      /^field `pap.udpPort`: got 7000; expected the router's pap.udpPort 7032/,
    ],
    [
      'ICMP PAP the router does not serve',
      host({ pap: { transport: 'icmp' } }),
      router({ icmp: false }),
      /^field `pap.transport`: got "icmp"; expected udp/,
    ],
    [
      'a block above the per-host quota',
      host({ pap: { blockSize: 64 } }),
      router({ maxPortsPerHost: 32 }),
      /^field `pap.blockSize`: got 64; expected at most the router's pap.maxPortsPerHost 32/,
    ],
  ] as const)('refuses %s', ([, h, r, expected]) => {
    const found = against(h, r);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(expected);
  });

  it('leaves a shared address the file does not give alone', () => {
    expect(hostAgainstRouter({ router: '10.0.0.7', pap: {} }, router(), 'r')).toEqual([]);
  });

  it('names the routers checked when the host names none of them', () => {
    const routers = [
      { file: 'a.yaml', config: router() },
      {
        file: 'b.yaml',
        config: RouterConfigSchema.parse({ sharedAddress: '198.51.100.30', lanAddress: '10.0.1.7' }),
      },
    ];
    expect(routerNamedByHost(host(), routers)).toEqual([]);
    expect(routerNamedByHost(host({ router: '10.0.0.8' }), routers).map(formatProblem)).toEqual([
      'field `router`: got "10.0.0.8"; expected the lanAddress of a router checked with it (10.0.0.7 in a.yaml, 10.0.1.7 in b.yaml)',
    ]);
    expect(routerNamedByHost(host({ router: '10.0.0.8' }), [])).toEqual([]);
  });
});
