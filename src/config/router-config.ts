import { z } from 'zod';
import {
  interfaceName,
  ipv4Address,
  listenAddress,
  listenHost,
  listenPort,
  logLevel,
  port,
  seconds,
} from './fields.ts';
import { withRules, type Rule } from './rules.ts';

/**
 * `distnat router` configuration. Every field has a default that fits the
 * reference topology (docs/design.md) except the addresses, so a minimal file names the shared
 * address and the LAN address and nothing else.
 */
const RouterFields = z
  .object({
    sharedAddress: ipv4Address
      .optional()
      .describe('the public IPv4 address all hosts share (or sharedAddresses: several)'),
    sharedAddresses: z
      .array(ipv4Address)
      .min(1)
      .max(16)
      .optional()
      .describe(
        'the public IPv4 addresses the hosts share, each with its own ports; a host uses one (its sharedAddress). sharedAddress: X is [X]',
      ),
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
        'forwarding threads of the TUN path, one queue of a multi-queue TUN and a share of the LAN each (more than 1 needs router-setup.sh up --multi-queue; 1 forwards on the main thread; not with pcap)',
      ),
    pap: z
      .object({
        udpPort: port.default(7032),
        icmp: z.boolean().default(true).describe('also serve PAP as ICMP types 32 and 33'),
        portRange: z.tuple([port, port]).default([1024, 65535]),
        blockSize: z.number().int().min(1).max(255).default(32),
        spiFirst: z.number().int().min(256).max(0xffff_ffff).default(256),
        spiBlockSize: z.number().int().min(1).max(65535).default(64),
        leaseSeconds: seconds.default(300),
        maxLeaseSeconds: seconds
          .default(300)
          .describe(
            'longest lease granted, whatever a host asks (leaseSeconds if that is longer); half of it ' +
              'plus the quarantine is the hold-off after lost lease state (docs/pap.md 6.3)',
          ),
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
    etcd: z
      .object({
        endpoints: z
          .array(
            z
              .string()
              .regex(
                /^https?:\/\/[^/\s]+:\d+\/?$/,
                'expected an etcd client URL such as http://10.0.0.21:2379 (scheme, host and port)',
              ),
          )
          .min(1, 'expected at least one etcd client URL')
          .describe('client URLs of the etcd members; several routers then share the lease table'),
        prefix: z
          .string()
          .regex(/^\/(.*\/)?$/, "expected a key prefix that starts and ends with '/'")
          .default('/distnat/')
          .describe('where the leases live: <prefix><sharedAddress>/ (docs/multi-router.md)'),
        dialTimeoutSeconds: seconds.default(3).describe('how long to wait for a connection to a member'),
        callTimeoutSeconds: seconds
          .default(2)
          .describe('how long one etcd call may take before a request gets try-later'),
        clockSkewSeconds: z
          .number()
          .min(0)
          .default(2)
          .describe("how far the routers' clocks may disagree: expiry waits this much longer"),
        tls: z
          .object({
            ca: z.string().min(1).describe("CA certificate (PEM) that signed the members' certificates"),
            cert: z
              .string()
              .min(1)
              .optional()
              .describe('client certificate (PEM), when the members ask for one'),
            key: z.string().min(1).optional().describe('its private key (PEM)'),
          })
          .strict()
          .optional()
          .describe('TLS to the members (https:// endpoints)'),
        auth: z
          .object({
            username: z.string().min(1),
            passwordFile: z
              .string()
              .min(1)
              .describe('a file holding the password (kept out of the configuration)'),
          })
          .strict()
          .optional()
          .describe("etcd's user authentication"),
      })
      .strict()
      .optional()
      .describe(
        'keep the leases in etcd, shared with the other routers of the shared address (docs/multi-router.md)',
      ),
    metrics: listenAddress.optional().describe('serve Prometheus metrics on host:port'),
    pcap: z.string().optional().describe('record every packet sent and received to this pcap file'),
    logLevel: logLevel.default('info'),
  })
  .strict();

export type RouterConfig = z.infer<typeof RouterFields>;

/** The lowest port a host may lease: 0-1023 are the system ports servers listen on (RFC 6335 section 6). */
export const FIRST_LEASABLE_PORT = 1024;

/**
 * The first three sends of a PAP transaction span 1 + 2 s, each wait up to
 * 10 % longer (the PAP client's DEFAULT_RETRANSMIT in src/pap/pap-client.ts,
 * which a test holds this to).
 */
export const FIRST_RETRIES_SECONDS = 3 * 1.1;

/** A host renews when these fractions of its lease have passed (RENEW_AT in src/pap/host-leases.ts). */
export const RENEWALS_AT = [1 / 2, 7 / 8] as const;

/**
 * The shortest lease in which the first renewal (T1) is sent three times
 * before the second (T2) starts a transaction of its own. Each renewal
 * retransmits until the lease ends, so a longer lease only buys more
 * copies; a shorter one leaves a lost T1 answer no second chance before
 * T2. Short leases are for labs and tests of the timers; the default is 300 s.
 */
export const MIN_LEASE_SECONDS = Math.ceil(FIRST_RETRIES_SECONDS / (RENEWALS_AT[1] - RENEWALS_AT[0]));

/** The three block sizes up to 255 (a PAP count is one byte) nearest to `size` that split `ports` evenly. */
function divisorsNear(ports: number, size: number): number[] {
  const divisors: number[] = [];
  for (let d = 2; d <= Math.min(255, ports); d++) if (ports % d === 0) divisors.push(d);
  return divisors
    .sort((a, b) => Math.abs(a - size) - Math.abs(b - size) || a - b)
    .slice(0, 3)
    .sort((a, b) => a - b);
}

/**
 * The router's shared addresses, first first: sharedAddresses, or
 * sharedAddress as a list of one. The first is the one a host that names
 * none gets, and the one a journal record without an address is of.
 */
export function sharedAddressesOf(c: {
  sharedAddress?: string;
  sharedAddresses?: readonly string[];
}): string[] {
  if (c.sharedAddresses !== undefined) return [...c.sharedAddresses];
  return c.sharedAddress === undefined ? [] : [c.sharedAddress];
}

const ROUTER_RULES: readonly Rule<RouterConfig>[] = [
  function oneWayToNameSharedAddresses(c, report) {
    const list = c.sharedAddresses;
    // Neither at all is refused at start (startRouter): a rule cannot tell a missing field from an invalid one.
    // Both may be given when they agree: sharedAddress is the first of the list.
    if (c.sharedAddress !== undefined && list !== undefined && list[0] !== c.sharedAddress)
      report(['sharedAddresses'], `expected sharedAddress ${c.sharedAddress} first, or only one of the two`);
    if (list === undefined) return;
    list.forEach((a, i) => {
      if (a !== undefined && list.indexOf(a) !== i)
        report(
          ['sharedAddresses', i],
          `expected each address once: ${a} is also at index ${list.indexOf(a)}`,
        );
      else if (a !== undefined && a === c.lanAddress)
        report(
          ['sharedAddresses', i],
          'expected a public address, not lanAddress: the shared addresses are routed to the hosts through the TUN device',
        );
    });
  },
  function sharedIsNotLan(c, report) {
    if (c.sharedAddress !== undefined && c.sharedAddress === c.lanAddress)
      report(
        ['lanAddress'],
        "expected the router's own LAN address, not sharedAddress: the shared address is routed to the " +
          'hosts through the TUN device, the LAN address carries PAP and the tunnels',
      );
  },
  function portRangeInOrder(c, report) {
    const [lo, hi] = c.pap?.portRange ?? [];
    if (lo !== undefined && hi !== undefined && lo > hi)
      report(['pap', 'portRange'], 'expected [low, high] with low <= high');
  },
  function portRangeLeavesSystemPorts(c, report) {
    const lo = c.pap?.portRange?.[0];
    if (lo !== undefined && lo < FIRST_LEASABLE_PORT)
      report(
        ['pap', 'portRange'],
        `expected ports from ${FIRST_LEASABLE_PORT} up: 0-1023 are the system ports servers listen on ` +
          '(RFC 6335), never a source port a host should be leased',
      );
  },
  function blockSizeDividesPortRange(c, report) {
    const [lo, hi] = c.pap?.portRange ?? [];
    const size = c.pap?.blockSize;
    if (lo === undefined || hi === undefined || size === undefined || lo > hi) return;
    const ports = hi - lo + 1;
    if (ports % size === 0) return;
    const near = divisorsNear(ports, size);
    report(
      ['pap', 'blockSize'],
      `expected a block size that divides the ${ports} ports of pap.portRange [${lo}, ${hi}]` +
        (near.length > 0 ? ` (such as ${near.join(', ')})` : '') +
        `, else its last ${ports % size} ports are a short block`,
    );
  },
  function portQuotaHoldsABlock(c, report) {
    const quota = c.pap?.maxPortsPerHost;
    const size = c.pap?.blockSize;
    if (quota !== undefined && size !== undefined && quota < size)
      report(
        ['pap', 'maxPortsPerHost'],
        `expected at least pap.blockSize (${size}): below one block, no host is ever granted a whole block`,
      );
  },
  function spiQuotaHoldsABlock(c, report) {
    const quota = c.pap?.maxSpisPerHost;
    const size = c.pap?.spiBlockSize;
    if (quota !== undefined && size !== undefined && quota < size)
      report(
        ['pap', 'maxSpisPerHost'],
        `expected at least pap.spiBlockSize (${size}): below one block, no host is ever granted a whole block`,
      );
  },
  function spiBlockFitsIn32Bits(c, report) {
    const first = c.pap?.spiFirst;
    const size = c.pap?.spiBlockSize;
    if (first === undefined || size === undefined) return;
    const last = 0xffff_ffff - size + 1;
    if (first > last)
      report(
        ['pap', 'spiFirst'],
        `expected at most ${last}: SPIs are 32 bits, and a block of pap.spiBlockSize (${size}) from here ` +
          'would run past 4294967295',
      );
  },
  function leaseOutlivesARenewal(c, report) {
    const lease = c.pap?.leaseSeconds;
    if (lease !== undefined && lease < MIN_LEASE_SECONDS)
      report(
        ['pap', 'leaseSeconds'],
        `expected at least ${MIN_LEASE_SECONDS} s: a host renews at half the lease and again at 7/8 of it, ` +
          'and a shorter lease leaves the first renewal no time to be sent again before the second',
      );
  },
  function crlAddressIsTheWan(c, report) {
    const wan = c.pki?.wanAddress;
    if (wan === undefined) return;
    // The WAN listener only publishes the CRL; on the LAN address it would shadow the CSR endpoint.
    if (wan === c.lanAddress)
      report(
        ['pki', 'wanAddress'],
        'expected the WAN address, not lanAddress (the LAN endpoint already serves the CRL)',
      );
    else if (wan === c.sharedAddress)
      report(
        ['pki', 'wanAddress'],
        "expected the router's own WAN address, not sharedAddress: the shared address is routed to the " +
          'hosts, the router cannot listen on it',
      );
  },
  function etcdTlsMatchesEndpoints(c, report) {
    const etcd = c.etcd;
    if (etcd?.endpoints === undefined) return;
    const https = etcd.endpoints.filter((e) => e?.startsWith('https://') === true).length;
    if (etcd.tls !== undefined && https < etcd.endpoints.length)
      report(
        ['etcd', 'endpoints'],
        'expected https:// endpoints only: etcd.tls is set, and TLS is used for all or none',
      );
    else if (etcd.tls === undefined && https > 0)
      report(['etcd', 'tls'], 'expected a tls section with the CA (ca: file) for the https:// endpoints');
    if (etcd.tls !== undefined && (etcd.tls.cert === undefined) !== (etcd.tls.key === undefined))
      report(['etcd', 'tls'], 'expected both cert and key, or neither');
  },
  function metricsListenable(c, report) {
    const metrics = c.metrics;
    if (metrics === undefined) return;
    const host = listenHost(metrics);
    if (host === c.sharedAddress)
      report(
        ['metrics'],
        "expected an address of the router's own, not sharedAddress: the shared address is routed to " +
          'the hosts, the router cannot listen on it',
      );
    const pki = c.pki;
    if (pki?.port === undefined || listenPort(metrics) !== pki.port) return;
    if (host === '0.0.0.0' || host === c.lanAddress || host === pki.wanAddress)
      report(['metrics'], `expected another port than pki.port (${pki.port}): the CA endpoint listens there`);
  },
];

export const RouterConfigSchema = withRules(RouterFields, ROUTER_RULES);
