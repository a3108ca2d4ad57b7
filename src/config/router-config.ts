import { z } from 'zod';
import { interfaceName, ipv4Address, listenAddress, logLevel, port, seconds } from './fields.ts';

/**
 * `distnat router` configuration. Every field has a default that fits the
 * DESIGN.md testbed except the addresses, so a minimal file names the shared
 * address and the LAN address and nothing else.
 */
export const RouterConfigSchema = z
  .object({
    sharedAddress: ipv4Address.describe('the public IPv4 address all hosts share'),
    lanAddress: ipv4Address.describe("the router's address on the LAN, where hosts send PAP and IP-in-IP"),
    tun: interfaceName.default('dn0').describe('TUN device the shared address is routed into'),
    tunOffload: z
      .boolean()
      .default(true)
      .describe('TCP offloads on the TUN: segment super-packets from the WAN, coalesce segments to it'),
    pap: z
      .object({
        udpPort: port.default(7032),
        icmp: z.boolean().default(true).describe('also serve PAP as ICMP types 32 and 33'),
        portRange: z.tuple([port, port]).default([1024, 65535]),
        blockSize: z.number().int().min(1).max(255).default(32),
        spiFirst: z.number().int().min(256).default(256),
        spiBlockSize: z.number().int().min(1).max(65535).default(64),
        leaseSeconds: seconds.default(300),
        quarantineSeconds: seconds.min(120, 'RFC 6888 asks for at least 120 s').default(120),
        maxPortsPerHost: z.number().int().min(1).default(1024),
        maxSpisPerHost: z.number().int().min(1).default(1024),
      })
      .strict()
      .prefault({}),
    stateDir: z.string().min(1).default('/var/lib/distnat/router'),
    runDir: z.string().min(1).default('/run/distnat'),
    metrics: listenAddress.optional().describe('serve Prometheus metrics on host:port'),
    pcap: z.string().optional().describe('record every packet sent and received to this pcap file'),
    logLevel: logLevel.default('info'),
  })
  .strict()
  .superRefine((c, ctx) => {
    const [lo, hi] = c.pap.portRange;
    if (lo > hi)
      ctx.addIssue({
        code: 'custom',
        path: ['pap', 'portRange'],
        message: 'expected [low, high] with low <= high',
      });
  });

export type RouterConfig = z.infer<typeof RouterConfigSchema>;
