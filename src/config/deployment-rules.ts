import type { ConfigProblem } from './config-error.ts';
import type { HostConfig } from './host-config.ts';
import type { RouterConfig } from './router-config.ts';
import { sharedAddressesOf } from './router-config.ts';
import type { Settled } from './schema-walk.ts';

/**
 * Rules between a host's file and its router's, which only `distnat check`
 * can apply (each daemon sees its own file alone): a host that names another
 * router, another shared address or another PAP port than the router serves
 * never gets a lease, and says only that its requests go unanswered.
 */

/**
 * The host file's problems against the file of the router it names. The
 * host's fields may be missing (its shared address, left to the TUN device):
 * those are not compared.
 */
export function hostAgainstRouter(
  host: Settled<HostConfig>,
  router: RouterConfig,
  routerFile: string,
): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const blame = (field: string, value: unknown, expected: string): void => {
    problems.push({ field, value, expected: `${expected} (${routerFile})` });
  };
  const pap = host.pap ?? {};
  const shared = sharedAddressesOf(router);
  if (host.sharedAddress !== undefined && !shared.includes(host.sharedAddress))
    blame(
      'sharedAddress',
      host.sharedAddress,
      shared.length === 1
        ? `expected the router's sharedAddress ${shared[0]}`
        : `expected one of the router's sharedAddresses ${shared.join(', ')}`,
    );
  if (pap.transport === 'udp' && pap.udpPort !== undefined && pap.udpPort !== router.pap.udpPort)
    blame('pap.udpPort', pap.udpPort, `expected the router's pap.udpPort ${router.pap.udpPort}`);
  if (pap.transport === 'icmp' && !router.pap.icmp)
    blame('pap.transport', pap.transport, 'expected udp: the router does not serve PAP over ICMP (pap.icmp)');
  if (pap.blockSize !== undefined && pap.blockSize > router.pap.maxPortsPerHost)
    blame(
      'pap.blockSize',
      pap.blockSize,
      `expected at most the router's pap.maxPortsPerHost ${router.pap.maxPortsPerHost}, or every grant is short`,
    );
  return problems;
}

/** Names the router files a host's `router` matches none of, or nothing when one matches. */
export function routerNamedByHost(
  host: Settled<HostConfig>,
  routers: readonly { file: string; config: RouterConfig }[],
): ConfigProblem[] {
  if (routers.length === 0 || routers.some((r) => r.config.lanAddress === host.router)) return [];
  const known = routers.map((r) => `${r.config.lanAddress} in ${r.file}`).join(', ');
  return [
    {
      field: 'router',
      value: host.router,
      expected: `expected the lanAddress of a router checked with it (${known})`,
    },
  ];
}
