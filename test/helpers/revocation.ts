/**
 * What the revocation tests share (test/netns/ike-revocation*.test.ts): the
 * SPIs of a host's child SAs and SPI block from status, a curl loop that
 * keeps traffic on the SA while the block is withdrawn, ESP sent from the
 * server with a chosen SPI, and the ESP a router capture holds, by SPI and
 * time.
 */
import { expect } from 'vitest';
import { join } from 'node:path';
import { PYTHON, readPcapng, ipv4Of, readStatus, sha256, sha256File, writeScript } from './distnat.ts';
import type { DaemonStatus, HostNode } from './distnat.ts';
import { describe as describeResult, waitUntil } from './process.ts';
import type { Background } from './process.ts';
import type { Capture } from './capture.ts';
import type { HttpServer } from './servers.ts';
import { tableRows, withdraw } from './ike.ts';
import { TOPOLOGY } from './testbed.ts';
import type { Testbed } from './testbed.ts';

export interface Block {
  first: number;
  count: number;
}

export const inBlock = (spi: number, b: Block): boolean => spi >= b.first && spi < b.first + b.count;

/** The SPI block the router leased `host` (FIG. 21), or undefined. */
export function spiBlockOf(router: DaemonStatus, host: string): Block | undefined {
  const fig21 = router.tables.find((t) => t.title.startsWith('FIG. 21'));
  const row = fig21?.rows.find((r) => String(r[0]) === host);
  return row === undefined ? undefined : { first: Number(row[1]), count: Number(row[2]) };
}

/** A daemon's child SAs: its inbound and outbound SPI. */
export function childSpis(s: DaemonStatus): { in: number; out: number }[] {
  return tableRows(s, 'Child SAs (ESP)').map((r) => ({ in: Number(r[0]), out: Number(r[1]) }));
}

/** curl from `node` to `url` every 50 ms until stopped: traffic on whatever SA covers it. */
export function trafficLoop(bed: Testbed, node: HostNode, url: string): Background {
  return bed.spawn(node, [
    'sh',
    '-c',
    `while :; do curl -s -o /dev/null --max-time 1 '${url}'; sleep 0.05; done`,
  ]);
}

const SEND_PY = `
import socket, struct, sys
dst, kind, spi, port, mark = sys.argv[1], sys.argv[2], int(sys.argv[3], 0), int(sys.argv[4]), int(sys.argv[5], 0)
esp = struct.pack('!II', spi, 1) + bytes(32)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50 if kind == 'esp' else socket.IPPROTO_UDP)
if mark:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
if kind == 'esp':
    s.sendto(esp, (dst, 0))
else:
    # ESP in UDP from 4500 (RFC 3948), by hand: charon holds the port. Checksum 0: none.
    s.sendto(struct.pack('!HHHH', 4500, port, 8 + len(esp), 0) + esp, (dst, 0))
print('sent', flush=True)
`;

/**
 * Sends one ESP packet (or ESP in UDP from port 4500 to `port`) with `spi`
 * from the server to the shared address. `mark`: the packet's fwmark (a
 * charon with routes: 'fwmark' routes unmarked traffic to the shared
 * address into its TUN device).
 */
export async function sendEspFromServer(
  bed: Testbed,
  kind: 'esp' | 'udp',
  spi: number,
  o: { port?: number; mark?: number } = {},
): Promise<void> {
  const script = writeScript(bed, 'send-esp.py', SEND_PY);
  const argv = [PYTHON, script, TOPOLOGY.shared, kind, String(spi), String(o.port ?? 0), String(o.mark ?? 0)];
  const r = await bed.exec('server', argv, {
    timeoutMs: 20_000,
  });
  if (r.code !== 0) throw new Error(`send-esp.py: ${describeResult(r)}`);
}

/** One ESP packet seen in a capture: when, which way, its SPI, and whether it was in UDP. */
export interface SeenEsp {
  time: number;
  src: string;
  dst: string;
  spi: number;
  udp: boolean;
}

const dotted = (b: Buffer, at: number): string => [...b.subarray(at, at + 4)].join('.');

/** ESP of an IPv4 datagram: plain (protocol 50) or in UDP from or to port 4500 (non-zero marker). */
function espOf(ip: Buffer): { spi: number; udp: boolean } | undefined {
  const hl = (ip[0]! & 0x0f) * 4;
  if ((ip.readUInt16BE(6) & 0x1fff) !== 0) return undefined;
  if (ip[9] === 50 && ip.length >= hl + 8) return { spi: ip.readUInt32BE(hl), udp: false };
  if (ip[9] === 17 && ip.length >= hl + 16) {
    const sport = ip.readUInt16BE(hl);
    const dport = ip.readUInt16BE(hl + 2);
    const spi = ip.readUInt32BE(hl + 8);
    if ((sport === 4500 || dport === 4500) && spi !== 0) return { spi, udp: true };
  }
  return undefined;
}

/**
 * The ESP a capture holds, unwrapping IP-in-IP (the router's LAN side):
 * src and dst are those of the datagram that carries the ESP.
 */
export function espInCapture(file: string): SeenEsp[] {
  const out: SeenEsp[] = [];
  for (const frame of readPcapng(file)) {
    let ip = ipv4Of(frame);
    if (ip === undefined) continue;
    if (ip[9] === 4) ip = ip.subarray((ip[0]! & 0x0f) * 4);
    if (ip.length < 20 || ip[0]! >> 4 !== 4) continue;
    const esp = espOf(ip);
    if (esp !== undefined) out.push({ time: frame.time, src: dotted(ip, 12), dst: dotted(ip, 16), ...esp });
  }
  return out;
}

/** One UDP datagram seen in a capture (IP-in-IP unwrapped), with the first word of its payload. */
export interface SeenUdp {
  time: number;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  firstWord: number | undefined;
}

/** The UDP datagrams a capture holds (first fragments and whole ones), unwrapping IP-in-IP. */
export function udpInCapture(file: string): SeenUdp[] {
  const out: SeenUdp[] = [];
  for (const frame of readPcapng(file)) {
    let ip = ipv4Of(frame);
    if (ip === undefined) continue;
    if (ip[9] === 4) ip = ip.subarray((ip[0]! & 0x0f) * 4);
    if (ip.length < 20 || ip[0]! >> 4 !== 4 || ip[9] !== 17 || (ip.readUInt16BE(6) & 0x1fff) !== 0) continue;
    const hl = (ip[0]! & 0x0f) * 4;
    if (ip.length < hl + 8) continue;
    out.push({
      time: frame.time,
      src: dotted(ip, 12),
      sport: ip.readUInt16BE(hl),
      dst: dotted(ip, 16),
      dport: ip.readUInt16BE(hl + 2),
      firstWord: ip.length >= hl + 12 ? ip.readUInt32BE(hl + 8) : undefined,
    });
  }
  return out;
}

/** "0x00001234 x12 (last 12.345)" for failure messages. */
export function describeSeen(seen: readonly SeenEsp[]): string {
  const by = new Map<string, { n: number; last: number }>();
  for (const s of seen) {
    const k = `${s.src}->${s.dst} 0x${s.spi.toString(16)}${s.udp ? ' udp' : ''}`;
    const e = by.get(k) ?? { n: 0, last: 0 };
    e.n++;
    e.last = Math.max(e.last, s.time);
    by.set(k, e);
  }
  return [...by].map(([k, e]) => `${k} x${e.n} (last ${e.last.toFixed(3)})`).join('; ');
}

/**
 * What the router's captures must show around a withdrawal of `oldBlock`:
 * the old SA at work before (so the silence after means something), none of
 * its ESP after, neither out on the WAN nor tunnelled to the host, the ESP
 * injected to the old SPI seen on the WAN (`injected` datagrams at least)
 * and no further, and the new SA carrying the traffic both ways.
 */
export function expectWithdrawnSaSilent(
  captures: { wan: string; lan: string },
  sas: { old: { in: number; out: number }; fresh: { in: number; out: number } },
  oldBlock: Block,
  withdrawnAt: number,
  injected: number,
): void {
  const shared = TOPOLOGY.shared;
  const { old, fresh } = sas;
  const wanEsp = espInCapture(captures.wan);
  const lanEsp = espInCapture(captures.lan);
  const oldOut = wanEsp.filter((s) => s.src === shared && s.spi === old.out);
  const oldIn = lanEsp.filter((s) => s.dst === shared && inBlock(s.spi, oldBlock));
  const seen = `WAN: ${describeSeen(wanEsp)}\nLAN: ${describeSeen(lanEsp)}\nwithdrawn at ${withdrawnAt.toFixed(3)}`;
  expect(oldOut.filter((s) => s.time < withdrawnAt).length, seen).toBeGreaterThan(10);
  expect(oldIn.filter((s) => s.time < withdrawnAt).length, seen).toBeGreaterThan(10);
  expect(
    oldOut.filter((s) => s.time >= withdrawnAt),
    seen,
  ).toEqual([]);
  expect(
    oldIn.filter((s) => s.time >= withdrawnAt),
    seen,
  ).toEqual([]);
  expect(
    wanEsp.filter((s) => s.dst === shared && s.spi === old.in && s.time >= withdrawnAt).length,
    seen,
  ).toBeGreaterThanOrEqual(injected);
  expect(wanEsp.filter((s) => s.src === shared && s.spi === fresh.out).length, seen).toBeGreaterThan(10);
  expect(lanEsp.filter((s) => s.spi === fresh.in).length, seen).toBeGreaterThan(10);
}

/**
 * h1 downloads `file` from the server in a loop through its SA while the
 * router's WAN and LAN are captured; once the SA has carried traffic, h1's
 * blocks of `kind` (default its SPI block) are withdrawn (the CRL names
 * `serial`). The caller stops the loop and the captures.
 */
export async function withdrawUnderTraffic(
  bed: Testbed,
  file: Buffer,
  serial: string,
  kind: 'spi' | 'port' | 'all' = 'spi',
): Promise<{
  http: HttpServer;
  loop: Background;
  wan: Capture;
  lan: Capture;
  /** Just before `distnat withdraw` ran: what the host sends in answer can only come after it. */
  withdrawStartedAt: number;
  /** Once `distnat withdraw` has returned: the router forwards nothing of the blocks after it. */
  withdrawnAt: number;
}> {
  const server = TOPOLOGY.server.wan;
  const h1 = TOPOLOGY.h1.lan;
  const http = await bed.httpServer('server', { files: { 'file.bin': file } });
  const wan = await bed.capture('router', TOPOLOGY.wanIf, { filter: `host ${server}` });
  const lan = await bed.capture('router', TOPOLOGY.lanIf, { filter: `host ${h1}` });
  const loop = trafficLoop(bed, 'h1', http.url(server, 'file.bin'));
  const accepted = async (): Promise<number> =>
    (await readStatus(bed, 'h1')).counters['ipsec.inbound.accepted'] ?? 0;
  const start = await accepted();
  await waitUntil('traffic on the SA', async () => (await accepted()) > start + 100, {
    timeoutMs: 20_000,
    intervalMs: 100,
  });
  const withdrawStartedAt = Date.now() / 1000;
  expect(await withdraw(bed, h1, kind)).toContain(serial);
  return { http, loop, wan, lan, withdrawStartedAt, withdrawnAt: Date.now() / 1000 };
}

/** Waits until h1's new SA has opened another hundred packets: the traffic loop moved onto it. */
export async function waitForTrafficOnNewSa(bed: Testbed): Promise<void> {
  const accepted = async (): Promise<number> =>
    (await readStatus(bed, 'h1')).counters['ipsec.inbound.accepted'] ?? 0;
  const resumed = await accepted();
  await waitUntil('traffic on the new SA', async () => (await accepted()) > resumed + 100, {
    timeoutMs: 20_000,
    intervalMs: 100,
  });
}

/** h1 fetches the server's file once more and it arrives intact. */
export async function expectDownloadIntact(bed: Testbed, http: HttpServer, file: Buffer): Promise<void> {
  const out = join(bed.scratchDir, 'after.bin');
  const r = await bed.exec('h1', [
    'curl',
    '-sS',
    '--max-time',
    '10',
    '-o',
    out,
    http.url(TOPOLOGY.server.wan, 'file.bin'),
  ]);
  expect(r.code, r.stderr).toBe(0);
  expect(await sha256File(out)).toBe(sha256(file));
}

/**
 * What left h1's withdrawn IKE port on the WAN: its Delete (IKE: to 500, or
 * to 4500 with the non-ESP marker) at some time after the withdrawal began,
 * and after the router had applied it (`withdrawnAt`) nothing but IKE. ESP in
 * UDP from that port may still cross until then.
 */
export function expectOnlyIkeFromOldPort(
  wanCapture: string,
  oldIkePort: number,
  withdrawal: { startedAt: number; doneAt: number },
  context = '',
): void {
  const shared = TOPOLOGY.shared;
  const isIke = (u: SeenUdp): boolean => u.dport === 500 || (u.dport === 4500 && u.firstWord === 0);
  const fromOldPort = udpInCapture(wanCapture).filter(
    (u) => u.src === shared && u.sport === oldIkePort && u.time >= withdrawal.startedAt,
  );
  const seen =
    `${JSON.stringify(fromOldPort)}\nwithdrawal from ${withdrawal.startedAt.toFixed(3)} ` +
    `to ${withdrawal.doneAt.toFixed(3)}${context}`;
  expect(fromOldPort.filter(isIke).length, seen).toBeGreaterThanOrEqual(1);
  for (const u of fromOldPort) {
    expect(u.dst, seen).toBe(TOPOLOGY.server.wan);
    if (u.time >= withdrawal.doneAt) expect(isIke(u), seen).toBe(true);
  }
}
