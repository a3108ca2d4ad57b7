/**
 * Plain ESP (IP protocol 50) and AH (51) through the distributed NAT against
 * an IPsec implementation that is not distnat's: scapy's IPsec layer, in
 * test/oracles/ipsec_responder.py on the server, reading the hosts' own
 * manual keying files and taking the other side of every SA.
 *
 * Each suite has its own server address, because an ICMP policy has no
 * ports to tell suites apart: one ICMP policy per remote address.
 *
 *   server address  suite (transport mode)
 *   203.0.113.41    ESP AES-GCM-128 (RFC 4106)
 *   203.0.113.42    ESP AES-CBC-128 + HMAC-SHA-256-128
 *   203.0.113.43    AH HMAC-SHA-256-128
 *
 * and per host and suite two policies, ICMP and UDP to port 7007, each with
 * its own pair of SAs: 12 SAs per host, inbound SPIs from the block the
 * router leases it (h1 first: 256.., h2 second: 320..).
 *
 * Shown, with both hosts at once: ping and UDP echo through every suite
 * answered; scapy opened or verified every datagram the hosts sent, inside
 * the policy's selector, and answered in the paired SA; scapy (again, from
 * a capture of the router's WAN) and tshark open the datagrams of both
 * directions (tshark has no AH ICV check: for AH it dissects only); the
 * router lists both SPI blocks (FIG. 21) and tunnels every inbound datagram
 * to the host owning its SPI; the server sends the shared address nothing
 * in the clear. The same capture checked with one wrong key fails for that
 * SA's packets, so the checks do look at the keys.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Capture } from '../helpers/capture.ts';
import type { DaemonStatus, HostNode } from '../helpers/distnat.ts';
import {
  HOSTS,
  LAN_OF,
  PYTHON,
  addr,
  counter,
  ipv4Of,
  readPcapng,
  readStatus,
  udpExchange,
} from '../helpers/distnat.ts';
import { decodeEsp, ipsecCounter, startHostAgent, startRouter } from '../helpers/ipsec.ts';
import type { EspKey } from '../netns/ipsec-keys.ts';
import { describe as describeResult, run } from '../helpers/process.ts';
import type { Background } from '../helpers/process.ts';
import { ROOT, TOPOLOGY, useTestbed } from '../helpers/testbed.ts';

const bed = useTestbed({ daemons: false });
const SHARED = TOPOLOGY.shared;
const RESPONDER = join(ROOT, 'test', 'oracles', 'ipsec_responder.py');
const UDP_PORT = 7007;

const SUITES = [
  { name: 'esp-gcm', address: '203.0.113.41', proto: 'esp' },
  { name: 'esp-cbc', address: '203.0.113.42', proto: 'esp' },
  { name: 'ah', address: '203.0.113.43', proto: 'ah' },
] as const;
type Suite = (typeof SUITES)[number];
const KINDS = ['icmp', 'udp'] as const;

/** Inbound SPIs: the block the router leases each host; outbound: the server's choice. */
const SPIS: Record<HostNode, { in: number; out: number; seed: number }> = {
  h1: { in: 0x100, out: 0x9100, seed: 1 },
  h2: { in: 0x140, out: 0xa100, seed: 2 },
};

interface SaInfo {
  node: HostNode;
  suite: Suite;
  kind: (typeof KINDS)[number];
  policy: string;
  /** As the host sees it. */
  direction: 'inbound' | 'outbound';
  spi: number;
}

const hex = (byte: number, n: number): string => '0x' + byte.toString(16).padStart(2, '0').repeat(n);

/** A host's manual keying file (docs/ipsec.md), its SAs, and the ESP ones as tshark needs them. */
function keying(node: HostNode): { yaml: string; sas: SaInfo[]; esp: EspKey[] } {
  const k = SPIS[node];
  const policies: string[] = [];
  const lines: string[] = [];
  const sas: SaInfo[] = [];
  const esp: EspKey[] = [];
  let i = 0;
  for (const suite of SUITES) {
    for (const kind of KINDS) {
      const policy = `${suite.name}-${kind}`;
      const ports = kind === 'udp' ? `, remotePort: ${UDP_PORT}` : '';
      policies.push(
        `  - { name: ${policy}, local: ${SHARED}, remote: ${suite.address}, protocol: ${kind}${ports}, ` +
          `action: protect, protect: [${suite.proto}] }`,
      );
      for (const direction of ['outbound', 'inbound'] as const) {
        const spi = (direction === 'outbound' ? k.out : k.in) + i;
        const [src, dst] = direction === 'outbound' ? [SHARED, suite.address] : [suite.address, SHARED];
        const b = k.seed * 32 + i * 2 + (direction === 'outbound' ? 0 : 1);
        let body: string;
        if (suite.name === 'esp-gcm') {
          const key = hex(b, 20);
          body = `protocol: esp, encryption: { algorithm: aes-gcm-16, key: "${key}" }`;
          esp.push({ spi, src, dst, encryption: 'gcm', encKey: key, authKey: '' });
        } else if (suite.name === 'esp-cbc') {
          const [key, auth] = [hex(b, 16), hex(b + 0x80, 32)];
          body =
            `protocol: esp, encryption: { algorithm: aes-cbc, key: "${key}" }, ` +
            `integrity: { algorithm: hmac-sha256-128, key: "${auth}" }`;
          esp.push({ spi, src, dst, encryption: 'cbc', encKey: key, authKey: auth });
        } else {
          body = `protocol: ah, integrity: { algorithm: hmac-sha256-128, key: "${hex(b + 0x80, 32)}" }`;
        }
        lines.push(
          `  - { name: ${policy}-${direction}, spi: ${spi}, direction: ${direction}, policy: ${policy}, ${body} }`,
        );
        sas.push({ node, suite, kind, policy, direction, spi });
      }
      i++;
    }
  }
  const yaml = ['defaultAction: bypass', 'policies:', ...policies, 'sas:', ...lines, ''].join('\n');
  return { yaml, sas, esp };
}

/** What the responder prints per datagram (test/oracles/ipsec_responder.py). */
interface Opened {
  event: 'in' | 'out';
  ok?: boolean;
  error?: string;
  file?: string;
  policy?: string;
  proto?: string;
  spi?: number;
  seq?: number;
  hostDirection?: string;
  outerSrc?: string;
  outerDst?: string;
  inner?: {
    src: string;
    dst: string;
    protocol: number;
    icmpType?: number;
    icmpId?: number;
    sport?: number;
    dport?: number;
    payload?: string;
  };
}

const jsonLines = (text: string): Opened[] =>
  text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Opened);

describe('plain ESP and AH of two hosts through the shared address, answered by scapy', () => {
  const files: Partial<Record<HostNode, string>> = {};
  const allSas: SaInfo[] = [];
  const espKeys: EspKey[] = [];
  const before: Partial<Record<HostNode, DaemonStatus>> = {};
  let routerBefore: DaemonStatus;
  let responder: Background;
  let lan: Capture;
  let wan: Capture;
  /** Everything the server sends the shared address: must all be ESP or AH. */
  let serverOut: Capture;

  const spiInfo = (proto: number, spi: number): SaInfo | undefined =>
    allSas.find((s) => s.spi === spi && (s.suite.proto === 'ah') === (proto === 51));

  beforeAll(async () => {
    const b = bed();
    for (const s of SUITES) {
      const r = await b.exec('server', ['ip', 'addr', 'add', `${s.address}/32`, 'dev', TOPOLOGY.wanIf]);
      expect(r.code, describeResult(r)).toBe(0);
    }
    for (const node of HOSTS) {
      const k = keying(node);
      files[node] = join(b.scratchDir, `${node}-ipsec.yaml`);
      writeFileSync(files[node], k.yaml);
      allSas.push(...k.sas);
      espKeys.push(...k.esp);
    }
    await startRouter(b);
    // In this order: a fresh router leases h1 SPIs 256-319, then h2 320-383.
    for (const node of HOSTS) await startHostAgent(b, node, files[node]);
    for (const node of HOSTS) before[node] = await readStatus(b, node);
    routerBefore = await readStatus(b, 'router');
    responder = b.spawn('server', [
      PYTHON,
      RESPONDER,
      ...HOSTS.flatMap((n) => ['--mirror', files[n]!]),
      '--udp-port',
      String(UDP_PORT),
    ]);
    await responder.waitForOutput(/"event": "ready"/, { timeoutMs: 20_000 });
    [lan, wan, serverOut] = await Promise.all([
      b.capture('router', TOPOLOGY.lanIf, { filter: 'ip proto 4' }),
      b.capture('router', TOPOLOGY.wanIf, { filter: 'ip proto 50 or ip proto 51' }),
      b.capture('server', TOPOLOGY.wanIf, { filter: `ip dst ${SHARED}` }),
    ]);
  }, 60_000);

  it('the router leased h1 SPIs 256-319 and h2 320-383, and both hosts installed their SAs', async () => {
    const router = await readStatus(bed(), 'router');
    const fig21 = router.tables.find((t) => t.title.startsWith('FIG. 21'))!;
    expect(fig21.rows.map((r) => [r[0], Number(r[1]), Number(r[2])])).toEqual([
      [TOPOLOGY.h1.lan, 256, 64],
      [TOPOLOGY.h2.lan, 320, 64],
    ]);
    for (const node of HOSTS) expect(String(before[node]!.summary['ipsec'])).toContain('SAs installed');
  });

  it('ping and UDP echo through ESP AES-GCM, ESP AES-CBC + HMAC-SHA-256 and AH, from both hosts at once', async () => {
    const b = bed();
    try {
      const runs = HOSTS.flatMap((node) =>
        SUITES.flatMap((suite) => [
          (async () => {
            const p = await b.ping(node, suite.address, { count: 3, waitS: 2 });
            expect(p.received, `ping from ${node} through ${suite.name}: ${p.output}`).toBe(3);
          })(),
          (async () => {
            const u = await udpExchange(b, node, {
              dst: suite.address,
              port: UDP_PORT,
              tag: `${node}-${suite.name}`,
              flows: 2,
              count: 3,
            });
            expect(u.answered, `UDP from ${node} through ${suite.name}: ${JSON.stringify(u)}`).toBe(6);
          })(),
        ]),
      );
      await Promise.all(runs);
    } finally {
      await Promise.all([lan.stop(), wan.stop(), serverOut.stop()]);
    }
    for (const node of HOSTS) {
      const s = await readStatus(b, node);
      const grew = (name: string): number => ipsecCounter(s, name) - ipsecCounter(before[node]!, name);
      // 3 suites x (3 echo requests + 6 datagrams), more if a datagram was retried.
      expect(grew('ipsec.outbound.protected'), node).toBeGreaterThanOrEqual(27);
      expect(grew('ipsec.inbound.accepted'), node).toBeGreaterThanOrEqual(27);
      for (const bad of [
        'no-sa',
        'replay',
        'too-old',
        'auth-failed',
        'bad-padding',
        'policy-mismatch',
        'malformed',
      ])
        expect(grew(`ipsec.inbound.${bad}`), `${node} ipsec.inbound.${bad}`).toBe(0);
    }
  }, 60_000);

  it('scapy opened every datagram the hosts sent, inside its policy, and answered each in the paired SA', () => {
    const events = jsonLines(responder.stdout());
    const opened = events.filter((e) => e.event === 'in');
    expect(
      opened.filter((e) => e.ok !== true),
      'datagrams scapy could not open or verify',
    ).toEqual([]);
    const answers = events.filter((e) => e.event === 'out');
    const count = new Map<string, number>();
    for (const e of opened) {
      const sa = spiInfo(e.proto === 'ah' ? 51 : 50, e.spi!)!;
      expect(sa, `SPI ${e.spi}`).toBeDefined();
      expect(sa.direction).toBe('outbound');
      expect(e.file).toBe(`${sa.node}-ipsec.yaml`);
      expect([e.outerSrc, e.outerDst]).toEqual([SHARED, sa.suite.address]);
      expect(e.inner!.protocol).toBe(sa.kind === 'icmp' ? 1 : 17);
      if (sa.kind === 'icmp') expect(e.inner!.icmpType).toBe(8);
      else {
        expect(e.inner!.dport).toBe(UDP_PORT);
        expect(Buffer.from(e.inner!.payload!, 'hex').toString()).toMatch(
          new RegExp(`^${sa.node}-${sa.suite.name} flow=\\d seq=\\d$`),
        );
      }
      count.set(sa.policy + ' ' + sa.node, (count.get(sa.policy + ' ' + sa.node) ?? 0) + 1);
    }
    expect(count.size, [...count.keys()].join(', ')).toBe(HOSTS.length * SUITES.length * KINDS.length);
    for (const [k, n] of count) expect(n, k).toBeGreaterThanOrEqual(k.includes('icmp') ? 3 : 6);
    // Every opened request answered, in the host's inbound SA of the same policy and file.
    expect(answers).toHaveLength(opened.length);
    for (const a of answers) {
      const sa = allSas.find((s) => s.spi === a.spi && s.suite.proto === a.proto)!;
      expect(sa.direction).toBe('inbound');
      expect(a.file).toBe(`${sa.node}-ipsec.yaml`);
    }
  });

  it('scapy, from the WAN capture, opens or verifies both directions of every SA', async () => {
    const r = await run(
      [PYTHON, RESPONDER, ...HOSTS.flatMap((n) => ['--mirror', files[n]!]), '--check-pcap', wan.file],
      { timeoutMs: 60_000 },
    );
    expect(r.code, describeResult(r)).toBe(0);
    const rows = jsonLines(r.stdout);
    expect(rows.filter((e) => e.ok !== true)).toEqual([]);
    const seen = new Set(rows.map((e) => `${e.proto} ${e.spi}`));
    for (const sa of allSas)
      expect(seen.has(`${sa.suite.proto} ${sa.spi}`), `${sa.node} ${sa.policy} ${sa.direction}`).toBe(true);
    for (const e of rows) {
      const sa = spiInfo(e.proto === 'ah' ? 51 : 50, e.spi!)!;
      const [src, dst] =
        sa.direction === 'outbound' ? [SHARED, sa.suite.address] : [sa.suite.address, SHARED];
      expect([e.inner!.src, e.inner!.dst]).toEqual([src, dst]);
      expect(e.inner!.protocol).toBe(sa.kind === 'icmp' ? 1 : 17);
    }
  });

  it('the same capture checked with one wrong key fails for exactly that SA', async () => {
    const b = bed();
    // h1's outbound ESP AES-GCM key for ICMP, one bit flipped.
    const good = SPIS.h1.out;
    const yaml = readFileSync(files.h1!, 'utf8');
    const line = yaml.split('\n').find((l) => l.includes(`spi: ${good},`))!;
    const tampered = join(b.scratchDir, 'h1-wrong-key.yaml');
    writeFileSync(tampered, yaml.replace(line, line.replace('"0x20', '"0x21')));
    expect(readFileSync(tampered, 'utf8')).not.toBe(yaml);
    const r = await run(
      [PYTHON, RESPONDER, '--mirror', tampered, '--mirror', files.h2!, '--check-pcap', wan.file],
      {
        timeoutMs: 60_000,
      },
    );
    expect(r.code, describeResult(r)).toBe(0);
    const rows = jsonLines(r.stdout);
    const bad = rows.filter((e) => e.ok !== true);
    expect(bad.length).toBeGreaterThanOrEqual(3);
    for (const e of bad)
      expect([e.spi, e.error]).toEqual([good, expect.stringMatching(/IPSecIntegrityError/)]);
    expect(rows.filter((e) => e.ok === true).length).toBe(rows.length - bad.length);
  });

  it('tshark with the keys opens the ESP of both directions (every ICV good) and dissects the AH', async () => {
    const rows = await decodeEsp(wan.file, espKeys, [
      'esp.spi',
      'esp.icv_good',
      'esp.icv_bad',
      'icmp.type',
      'udp.dstport',
      'udp.srcport',
    ]);
    const good = (v: string | undefined): boolean => v === '1' || v === 'True';
    const directions = new Set<string>();
    for (const [spiText, icvGood, icvBad, icmpType, dport, sport] of rows) {
      const sa = spiInfo(50, Number(spiText))!;
      const what = `ESP SPI ${spiText}`;
      expect(sa, what).toBeDefined();
      expect(good(icvGood), `${what}: ICV good (${icvGood}/${icvBad})`).toBe(true);
      expect(good(icvBad), what).toBe(false);
      // The ESP payload decrypted and dissected: ICMP echo or UDP to/from the echo port.
      if (sa.kind === 'icmp') {
        expect(icmpType, what).toBe(sa.direction === 'outbound' ? '8' : '0');
      } else {
        expect(sa.direction === 'outbound' ? dport : sport, what).toBe(String(UDP_PORT));
      }
      directions.add(`${sa.node} ${sa.policy} ${sa.direction}`);
    }
    // 2 hosts x 2 ESP suites x 2 kinds x 2 directions.
    expect(directions.size).toBe(16);
    const ah = await decodeEsp(
      wan.file,
      [],
      ['ah.spi', 'ah.length', 'icmp.type', 'udp.dstport', 'udp.srcport'],
      'ah',
    );
    const ahSeen = new Set<string>();
    for (const [spiText, length, icmpType, dport, sport] of ah) {
      const sa = spiInfo(51, Number(spiText))!;
      expect(sa, `AH SPI ${spiText}`).toBeDefined();
      // Payload length 5: 12 bytes of fixed header + the 16-byte HMAC-SHA-256-128 ICV, in 32-bit words - 2.
      expect(length).toBe('5');
      if (sa.kind === 'icmp') expect(icmpType).toBe(sa.direction === 'outbound' ? '8' : '0');
      else expect(sa.direction === 'outbound' ? dport : sport).toBe(String(UDP_PORT));
      ahSeen.add(`${sa.node} ${sa.policy} ${sa.direction}`);
    }
    expect(ahSeen.size).toBe(8);
  });

  it("the router tunnels each inbound datagram to the host owning its SPI, and each outbound one came from the SA's host", async () => {
    const seen = new Set<string>();
    let tunnelled = 0;
    for (const frame of readPcapng(lan.file)) {
      const outer = ipv4Of(frame);
      if (outer === undefined || outer[9] !== 4) continue;
      const inner = outer.subarray((outer[0]! & 15) * 4);
      const proto = inner[9]!;
      if (proto !== 50 && proto !== 51) continue;
      const ihl = (inner[0]! & 15) * 4;
      const spi = proto === 50 ? inner.readUInt32BE(ihl) : inner.readUInt32BE(ihl + 4);
      const sa = spiInfo(proto, spi);
      expect(sa, `SPI ${spi} on the LAN`).toBeDefined();
      const toHost = addr(outer, 12) === TOPOLOGY.router.lan;
      expect(toHost ? 'inbound' : 'outbound', `SPI ${spi}`).toBe(sa!.direction);
      expect(addr(outer, toHost ? 16 : 12), `SPI ${spi}`).toBe(LAN_OF[sa!.node]);
      seen.add(`${sa!.node} ${sa!.policy} ${sa!.direction}`);
      if (toHost) tunnelled++;
    }
    expect(seen.size).toBe(allSas.length);
    // The router's own account: it tunnelled at least these, and dropped no SPI as nobody's.
    const router = await readStatus(bed(), 'router');
    const grew = (name: string): number => counter(router, name) - counter(routerBefore, name);
    expect(grew('traffic.inbound-packets')).toBeGreaterThanOrEqual(tunnelled);
    expect(grew('drop.no-owner')).toBe(0);
    expect(grew('drop.reserved-spi')).toBe(0);
  });

  it('the server sent the shared address nothing in the clear: its kernel neither answered nor refused', () => {
    const protocols = new Map<number, number>();
    for (const frame of readPcapng(serverOut.file)) {
      const ip = ipv4Of(frame);
      if (ip === undefined) continue;
      protocols.set(ip[9]!, (protocols.get(ip[9]!) ?? 0) + 1);
    }
    expect([...protocols.keys()].sort()).toEqual([50, 51]);
  });
});
