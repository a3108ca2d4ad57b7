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
    // The data path (docs/ebpf.md): the kernel fast path beside the TUN path, or the TUN path alone.
    datapath: z
      .enum(['ebpf', 'tun'])
      .default('ebpf')
      .describe(
        'ebpf: BPF programs forward the common case, the TUN path the rest (falls back to tun); tun: all in user space',
      ),
    wanInterface: interfaceName
      .optional()
      .describe(
        "where the shared address is reached from (eBPF data path); default: the default route's interface",
      ),
    workers: z
      .number()
      .int()
      .min(1)
      .max(64)
      .default(1)
      .describe(
        'forwarding threads of the TUN path, one TUN queue each (more than 1 needs a multi-queue TUN)',
      ),
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
    pki: z
      .object({
        dir: z.string().min(1).describe("the router's local CA directory, made by `distnat ca issue-local`"),
        port: port
          .default(7033)
          .describe('TCP port of the CSR/CA/CRL endpoint on lanAddress (and wanAddress)'),
        wanAddress: ipv4Address
          .optional()
          .describe("the router's WAN address: also publish the CRL there (no CSRs accepted on it)"),
        crlSeconds: seconds
          .min(60, 'a CRL living under a minute would lapse between two fetches')
          .default(600)
          .describe('nextUpdate minus thisUpdate of every CRL'),
      })
      .strict()
      .optional()
      .describe('serve the local certificate authority (docs/router.md, "The local CA")'),
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
    // The WAN listener only publishes the CRL; on the LAN address it would shadow the CSR endpoint.
    if (c.pki?.wanAddress !== undefined && c.pki.wanAddress === c.lanAddress)
      ctx.addIssue({
        code: 'custom',
        path: ['pki', 'wanAddress'],
        message: 'expected the WAN address, not lanAddress (the LAN endpoint already serves the CRL)',
      });
  });

export type RouterConfig = z.infer<typeof RouterConfigSchema>;
