import { z } from 'zod';
import { interfaceName, ipv4Address, listenAddress, logLevel, port } from './fields.ts';

/**
 * `distnat host` configuration: where the router is, which shared address the
 * TUN device carries, and whether ports are translated (Method 170/184) or the
 * kernel's ephemeral range is set to the leased block (native, Method 130).
 */
export const HostConfigSchema = z
  .object({
    router: ipv4Address.describe("the router's LAN address"),
    lanAddress: ipv4Address.describe("this host's LAN address (the outer source of its tunnel)"),
    sharedAddress: ipv4Address.describe('the public address the router shares'),
    tun: interfaceName.default('dn0'),
    mode: z.enum(['translate', 'native']).default('translate'),
    // The data path (docs/ebpf.md): established flows in the kernel, or everything in user space.
    datapath: z
      .enum(['ebpf', 'tun'])
      .default('ebpf')
      .describe(
        'ebpf: BPF programs carry established flows, the agent the rest (falls back to tun); tun: all in the agent',
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
  .strict()
  .refine((c) => c.ipsec === undefined || c.ike === undefined, {
    path: ['ike'],
    message: 'expected either ipsec (manual keying) or ike, not both',
  });

export type HostConfig = z.infer<typeof HostConfigSchema>;
