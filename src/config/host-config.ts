import { z } from 'zod';
import { interfaceName, ipv4Address, listenAddress, logLevel, port, requiredIpv4Address } from './fields.ts';
import { withRules, type Rule } from './rules.ts';

/**
 * `distnat host` configuration: where the router is, which shared address the
 * TUN device carries, and whether ports are translated (Method 170/184) or the
 * kernel's ephemeral range is set to the leased block (native, Method 130).
 */
const HostFields = z
  .object({
    router: requiredIpv4Address("expected the router's LAN address (or give --router, or routers)").describe(
      "the router's LAN address; with routers, the one to start with (default: the first)",
    ),
    // docs/multi-router.md, "Hosts with several routers": the others the host moves to when one stops answering.
    routers: z
      .array(ipv4Address)
      .min(1)
      .max(16)
      .optional()
      .describe(
        'the LAN addresses of the routers sharing the leases on etcd, in the order the host tries them',
      ),
    failover: z
      .object({
        probeSeconds: z
          .number()
          .min(0.1)
          .max(60)
          .default(1)
          .describe('with several routers: a renewal is sent when the router has been quiet this long'),
        silentSeconds: z
          .number()
          .min(0.5)
          .max(300)
          .default(3)
          .describe(
            'with several routers: move to the next after this long without an answer to a request sent',
          ),
      })
      .strict()
      .prefault({}),
    lanAddress: requiredIpv4Address(
      "expected this host's LAN address (or give --lan-address, or --lan-if with the LAN interface)",
    ).describe("this host's LAN address (the outer source of its tunnel)"),
    sharedAddress: requiredIpv4Address(
      'expected the shared address (or give --shared-address, or run native-setup/linux/host-setup.sh up ' +
        'so that the TUN device carries it)',
    ).describe('the public address the router shares'),
    tun: interfaceName.default('dn0'),
    mode: z.enum(['translate', 'native']).default('translate'),
    // The data path (docs/ebpf.md, "The host"): established flows in the kernel, or everything in user space.
    datapath: z
      .enum(['ebpf', 'tun'])
      .default('ebpf')
      .describe(
        'ebpf: BPF programs on the TUN and LAN interfaces carry established TCP/UDP flows (leased ports in native ' +
          'mode, FIG. 11 rows in use both ways when translating), the agent the rest (first packets, TCP ' +
          'control segments, ICMP, fragments, IPsec); a kernel or build without BPF: one warning, all in the ' +
          'agent; tun: all in the agent',
      ),
    pap: z
      .object({
        transport: z.enum(['udp', 'icmp']).default('udp'),
        udpPort: port.default(7032),
        blockSize: z.number().int().min(1).max(255).default(32),
        spis: z.number().int().min(0).max(65535).default(0).describe('SPIs to lease at start (0: none)'),
      })
      .strict()
      .prefault({}),
    // docs/host.md, "Hairpin": policy routing sends other hosts' ports of the shared address into the tunnel.
    hairpin: z
      .object({
        enabled: z
          .boolean()
          .default(true)
          .describe("route other hosts' TCP/UDP ports of the shared address into the tunnel"),
        table: z
          .number()
          .int()
          .min(1)
          .max(0xffffffff)
          .refine((t) => t < 253 || t > 255, {
            message: 'expected a table of its own, not main (254), local (255) or default (253)',
          })
          .default(7032)
          .describe('routing table for the route into the TUN device'),
      })
      .strict()
      .prefault({}),
    stateDir: z.string().min(1).default('/var/lib/distnat/host'),
    runDir: z.string().min(1).default('/run/distnat'),
    metrics: listenAddress.optional(),
    pcap: z.string().optional(),
    ipsec: z
      .string()
      .min(1)
      .optional()
      .describe(
        'manual keying file (docs/ipsec.md): protect after translation, verify before translating back',
      ),
    ike: z
      .string()
      .min(1)
      .optional()
      .describe('IKE file (docs/ike.md): certificate from the router, SAs negotiated on a leased port'),
    logLevel: logLevel.default('info'),
  })
  .strict();

export type HostConfig = z.infer<typeof HostFields>;

const HOST_RULES: readonly Rule<HostConfig>[] = [
  function lanIsNotTheRouter(c, report) {
    if (c.lanAddress !== undefined && c.lanAddress === c.router)
      report(
        ['lanAddress'],
        "expected this host's own LAN address, not the router's: it is the outer source of the tunnel",
      );
  },
  function sharedIsNeitherLanAddress(c, report) {
    const shared = c.sharedAddress;
    if (shared === undefined) return;
    if (shared === c.lanAddress)
      report(
        ['sharedAddress'],
        "expected the router's shared public address, not lanAddress: the TUN device carries it, the LAN " +
          'interface carries the tunnel',
      );
    else if (shared === c.router)
      report(['sharedAddress'], "expected the router's shared public address, not its LAN address (router)");
  },
  function routerIsOneOfRouters(c, report) {
    if (c.routers === undefined || c.router === undefined) return;
    if (!c.routers.includes(c.router))
      report(['router'], `expected one of routers (${c.routers.join(', ')}): the one the host starts with`);
    if (new Set(c.routers).size !== c.routers.length) report(['routers'], 'expected each router once');
    if (c.lanAddress !== undefined && c.routers.includes(c.lanAddress))
      report(['routers'], "expected the routers' LAN addresses, not this host's (lanAddress)");
  },
  function quietBeforeSilent(c, report) {
    const f = c.failover;
    if (f?.probeSeconds !== undefined && f.silentSeconds !== undefined && f.silentSeconds <= f.probeSeconds)
      report(
        ['failover', 'silentSeconds'],
        'expected more than failover.probeSeconds: a probe must have time to be answered',
      );
  },
  function oneKindOfKeying(c, report) {
    if (c.ipsec !== undefined && c.ike !== undefined)
      report(['ike'], 'expected either ipsec (manual keying) or ike, not both');
  },
];

export const HostConfigSchema = withRules(HostFields, HOST_RULES);

/**
 * A host's input with `routers` and no `router`: the first of them is where
 * it starts. Applied before validation (the file and the flags merged), so
 * that `router` stays the one address the rest of the agent starts from.
 */
export function withStartingRouter(data: Record<string, unknown>): Record<string, unknown> {
  const routers = data.routers;
  if (data.router !== undefined || !Array.isArray(routers) || routers.length === 0) return data;
  return { ...data, router: routers[0] as unknown };
}

/** The routers a host may send through, the one it starts with first, then the others in their order. */
export function routersOf(c: Pick<HostConfig, 'router' | 'routers'>): string[] {
  const all = c.routers ?? [c.router];
  const at = Math.max(0, all.indexOf(c.router));
  return [...all.slice(at), ...all.slice(0, at)];
}
