/**
 * Lease timers with real clocks and real daemons (docs/pap.md 6.2, 6.4,
 * 6.5): the router grants 30 s leases, a quarantine of 120 s (RFC 6888's
 * minimum, the default) and 256 ports per host.
 *
 * - h2's agent dies (SIGKILL): its block stays h2's until the lease runs out
 *   and not a second longer, then sits in quarantine: a prober (an
 *   independent PAP client) asking every few seconds is given other blocks
 *   until the quarantine ends, and then that one.
 * - A host floods the router with requests: it gets its 256 ports and then
 *   quota-exceeded (1) for every further request, while the prober still
 *   leases and h1 keeps renewing.
 * - h1 stays busy (ping) through six lease periods on the same block,
 *   renewing at half the lease; once, every renewal from h1 is dropped on
 *   the router until the host gives up T1 and starts T2 at 7/8 of the lease,
 *   a transaction of its own, which is answered and keeps the block.
 *
 * Everything is checked on the wire (a capture on the router's LAN
 * interface decoded by wireshark/pap.lua) and in the router's tables.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestbedLayout } from '../../scripts/lib/testbed/layout.ts';
import { distnatCommand, hostArgs, routerArgs } from '../../scripts/lib/testbed/process-table.ts';
import type { Capture } from '../helpers/capture.ts';
import { daemonLogs, daemonPid, findTable, readStatus } from '../helpers/distnat.ts';
import type { FloodReply, ListedBlock, PapPacket, PapReply } from '../helpers/pap.ts';
import {
  addLanHosts,
  holdingText,
  holdings,
  papExchange,
  papPackets,
  routerBlocks,
  sharedBlocks,
  sharedHoldings,
} from '../helpers/pap.ts';
import { describe as describeResult, sleep, waitUntil } from '../helpers/process.ts';
import { TESTBED_SCRIPT, TOPOLOGY, uniquePrefix, useTestbed } from '../helpers/testbed.ts';
import { PapStatus } from '../../src/wire/pap.ts';

const LEASE = 30;
const QUARANTINE_MS = 120_000;
const QUOTA = 256;
const PROBER = '10.0.0.41';
const FLOODER = '10.0.0.42';
const SERVER = TOPOLOGY.server.wan;
const H1 = TOPOLOGY.h1.lan;
const H2 = TOPOLOGY.h2.lan;

const prefix = uniquePrefix();
const layout = new TestbedLayout(prefix);
const dir = mkdtempSync(join(tmpdir(), 'distnat-pap-timers-'));
const routerConfig = join(dir, 'router.yaml');
writeFileSync(
  routerConfig,
  `pap:\n  leaseSeconds: ${LEASE}\n  maxLeaseSeconds: ${LEASE}\n  maxPortsPerHost: ${QUOTA}\n`,
);
const table = [
  `router router ${distnatCommand(routerArgs(layout, ['--config', routerConfig]))}`,
  `h1 h1 ${distnatCommand(hostArgs(layout, 'h1', ['--log-level', 'debug']))}`,
  `h2 h2 ${distnatCommand(hostArgs(layout, 'h2'))}`,
  '',
].join('\n');

const bed = useTestbed({ prefix, daemons: false });
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The renewal attempts (1 = T1, 2 = T2) h1's agent logged, with when. */
function renewalsLogged(): { at: number; attempt: number; message: string }[] {
  const text = readFileSync(layout.logFile('h1'), 'utf8');
  const out: { at: number; attempt: number; message: string }[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    const l = JSON.parse(line) as { message: string; attempt?: number; timestamp: string };
    if (l.message.startsWith('renewing ') && l.attempt !== undefined)
      out.push({ at: Date.parse(l.timestamp), attempt: l.attempt, message: l.message });
  }
  return out;
}

const sameBlock = (a: { first: number; last: number }, lowest: number, count: number): boolean =>
  a.first < lowest + count && lowest <= a.last;

describe('lease timers with real clocks', () => {
  let capture: Capture;

  beforeAll(async () => {
    const b = bed();
    capture = await b.capture('router', TOPOLOGY.lanIf, { filter: `udp port ${TOPOLOGY.papPort}` });
    await b.reconfigure({ prefix, daemonTable: table });
    await addLanHosts(b, [PROBER, FLOODER]);
  }, 180_000);

  it('expiry, quarantine, quota and T1/T2 renewal, with real daemons', async () => {
    const b = bed();
    let start: ListedBlock[] = [];
    await waitUntil(
      'h1 and h2 to hold port blocks',
      async () => {
        const s = await readStatus(b, 'router').catch(() => undefined);
        start = s === undefined ? [] : routerBlocks(s);
        return [H1, H2].every((h) => start.some((x) => x.host === h));
      },
      { timeoutMs: 40_000, intervalMs: 300 },
    ).catch((e: Error) => {
      throw new Error(`${e.message}\n${daemonLogs(b)}`);
    });
    const h1Block = start.find((x) => x.host === H1)!;
    const h2Block = start.find((x) => x.host === H2)!;
    const B = { lowest: h2Block.first, count: h2Block.last - h2Block.first + 1 };
    console.log(`h1 holds ${h1Block.first}-${h1Block.last}, h2 ${h2Block.first}-${h2Block.last}`);

    // h1 is busy the whole time.
    const ping = b.spawn(
      'h1',
      [TESTBED_SCRIPT, '--prefix', prefix, 'ping', 'h1', SERVER, '-c', '100000', '-i', '0.2', '-W', '1'],
      {
        env: { ...process.env, PYTHONUNBUFFERED: '1' },
      },
    );
    await ping.waitForOutput(/: reply from/, { timeoutMs: 15_000 });
    const t0 = Date.now();

    // Every renewal of h1's ports is dropped on the router until h1 starts T2 (then lifted).
    const nft = async (script: string) => {
      const r = await b.exec('router', ['nft', '-f', '-'], { input: script });
      if (r.code !== 0) throw new Error(`nft: ${describeResult(r)}`);
    };
    await nft(
      [
        'table inet pap_t2 {',
        '  chain input {',
        '    type filter hook input priority -10; policy accept;',
        `    ip saddr ${H1} udp dport ${TOPOLOGY.papPort} @th,64,16 0x2003 counter drop`,
        '  }',
        '}',
        '',
      ].join('\n'),
    );
    const dropFrom = Date.now();
    const t2Watch = (async () => {
      await waitUntil("h1's T2", () => renewalsLogged().some((r) => r.attempt === 2 && r.at >= dropFrom), {
        timeoutMs: 2 * LEASE * 1000,
        intervalMs: 100,
      });
      await nft('delete table inet pap_t2\n');
      return Date.now();
    })();

    // h2 dies.
    const h2Pid = daemonPid(b, 'h2');
    process.kill(h2Pid, 'SIGKILL');
    const killedAt = Date.now();

    // The router's view of B, every second, until well after its quarantine.
    const views: { at: number; leased: boolean; quarantinedUntil: number | undefined }[] = [];
    const samples: ListedBlock[][] = [];
    let watching = true;
    const watch = (async () => {
      while (watching) {
        const s = await readStatus(b, 'router');
        const blocks = routerBlocks(s);
        samples.push(blocks);
        const q = findTable(s, 'QUARANTINE').rows.find((r) => Number(r[2]) === B.lowest && r[1] === H2);
        views.push({
          at: Date.now(),
          leased: blocks.some((x) => x.host === H2),
          quarantinedUntil:
            q === undefined ? undefined : Date.now() + Number(String(q[4]).replace('s', '')) * 1000,
        });
        await sleep(500);
      }
    })();

    // A host floods: its quota, then quota-exceeded, while the prober leases normally.
    const [flood] = (await papExchange(b, FLOODER, [
      { op: 'flood', kind: 'port', n: 1500, count: 32, gap: 0.002, wait: 3 },
    ])) as FloodReply[];
    const [probe] = (await papExchange(b, PROBER, [
      { op: 'request', kind: 'port', count: 32 },
    ])) as PapReply[];
    expect(probe!.answer).toMatchObject({ success: true, count: 32 });
    const granted = flood!.answers.filter((a) => a.success);
    const refused = flood!.answers.filter((a) => !a.success);
    console.log(
      `flood: ${flood!.sent} requests, ${flood!.answers.length} answers seen: ${granted.length} grants ` +
        `(${granted.reduce((n, a) => n + a.count, 0)} ports), ${refused.length} refusals`,
    );
    expect(granted.reduce((n, a) => n + a.count, 0)).toBe(QUOTA);
    expect(new Set(refused.map((a) => a.status))).toEqual(new Set([PapStatus.QuotaExceeded]));
    expect(refused.length).toBeGreaterThan(1000);
    const routerAfterFlood = await readStatus(b, 'router');
    expect(
      routerBlocks(routerAfterFlood)
        .filter((x) => x.host === FLOODER)
        .reduce((n, x) => n + x.last - x.first + 1, 0),
    ).toBe(QUOTA);
    expect(routerAfterFlood.counters['pap.refused.quota-exceeded']).toBeGreaterThanOrEqual(refused.length);
    // Given back at once, so that the prober's quota never runs out below.
    await papExchange(b, PROBER, [{ op: 'invalidate', kind: 'port', value: probe!.answer!.lowest }]);

    // The prober asks every few seconds, gives back what is not B, and stops once it is given part of B.
    const asks: { at: number; lowest: number; count: number }[] = [];
    while (Date.now() < killedAt + (LEASE + 20) * 1000 + QUARANTINE_MS) {
      const [r] = (await papExchange(b, PROBER, [{ op: 'request', kind: 'port', count: 32 }])) as PapReply[];
      const a = r!.answer;
      expect(a, JSON.stringify(r)).toMatchObject({ success: true });
      asks.push({ at: a!.t * 1000, lowest: a!.lowest, count: a!.count });
      if (sameBlock({ first: B.lowest, last: B.lowest + B.count - 1 }, a!.lowest, a!.count)) break;
      await papExchange(b, PROBER, [{ op: 'invalidate', kind: 'port', value: a!.lowest }]);
      await sleep(3_000);
    }
    const t2At = await t2Watch;
    // Six lease periods in all, at least.
    while (Date.now() < t0 + 6 * LEASE * 1000) await sleep(1000);
    watching = false;
    await watch;
    await capture.stop();
    await ping.stop();

    // --- h2's block: held until its lease ran out, then quarantined for 120 s, then granted again.
    const packets = await papPackets(capture.file);
    const hs = holdings(packets, Date.now());
    console.log(
      hs
        .filter((h) => h.host !== FLOODER)
        .slice(-12)
        .map(holdingText)
        .join('\n'),
    );
    expect(sharedHoldings(hs)).toEqual([]);
    const h2Holding = hs.filter((h) => h.host === H2).at(-1)!;
    expect(h2Holding.end).toBe('expired');
    expect(h2Holding.to).toBeGreaterThan(killedAt);
    expect(h2Holding.to - killedAt).toBeLessThanOrEqual(LEASE * 1000 + 1000);
    const lastSeen = views.filter((v) => v.leased).at(-1)!.at;
    const firstGone = views.find((v) => v.at > lastSeen)!.at;
    console.log(
      `h2 killed; its lease ran out ${Math.round((h2Holding.to - killedAt) / 100) / 10} s later on the wire; ` +
        `the router listed it until ${Math.round((lastSeen - h2Holding.to) / 100) / 10} s from then`,
    );
    // Listed right up to its expiry, gone at it (samples every ~0.5 s, status reads take some time).
    expect(lastSeen).toBeGreaterThan(h2Holding.to - 2_000);
    expect(firstGone).toBeLessThan(h2Holding.to + 3_000);
    const until = views.find((v) => v.quarantinedUntil !== undefined)!.quarantinedUntil!;
    expect(Math.abs(until - (h2Holding.to + QUARANTINE_MS))).toBeLessThan(3_000);
    const regrant = asks.at(-1)!;
    expect(sameBlock({ first: B.lowest, last: B.lowest + B.count - 1 }, regrant.lowest, regrant.count)).toBe(
      true,
    );
    const beforeIt = asks.slice(0, -1);
    expect(beforeIt.length).toBeGreaterThan(20);
    expect(
      beforeIt.every((a) => !sameBlock({ first: B.lowest, last: B.lowest + B.count - 1 }, a.lowest, a.count)),
    ).toBe(true);
    // Not a moment before the quarantine ended; the prober asks every ~3-4 s, so soon after.
    expect(regrant.at).toBeGreaterThanOrEqual(h2Holding.to + QUARANTINE_MS - 500);
    expect(regrant.at).toBeLessThan(h2Holding.to + QUARANTINE_MS + 10_000);
    console.log(
      `B granted again ${Math.round((regrant.at - h2Holding.to) / 100) / 10} s after h2's lease ran out`,
    );

    // --- h1: the same block all along, renewed at half the lease; T2 once, as a transaction of its own.
    for (const s of samples) expect(sharedBlocks(s)).toEqual([]);
    expect(samples.every((s) => s.some((x) => x.host === H1 && x.first === h1Block.first))).toBe(true);
    const h1Final = hs.filter((h) => h.host === H1 && h.kind === 'port');
    expect(new Set(h1Final.map((h) => h.lowest))).toEqual(new Set([h1Block.first]));
    // Back to back: each renewal answered before the lease it renews ran out.
    for (let i = 1; i < h1Final.length; i++) expect(h1Final[i]!.from).toBeLessThanOrEqual(h1Final[i - 1]!.to);
    expect(h1Final.at(-1)!.to - h1Final[0]!.from).toBeGreaterThan(6 * LEASE * 1000 - LEASE * 1000);

    const renews = packets.filter((p) => p.src === H1 && p.kind === 'port-renew');
    const byTxid = new Map<number, PapPacket[]>();
    for (const p of renews) byTxid.set(p.txid, [...(byTxid.get(p.txid) ?? []), p]);
    const answered = (txid: number) =>
      packets.some((p) => p.fromRouter && p.dst === H1 && p.txid === txid && p.success);
    const exchanges = [...byTxid.entries()].map(([txid, ps]) => ({
      txid,
      first: ps[0]!.t,
      copies: ps.length,
      ok: answered(txid),
    }));
    const t1 = exchanges.find((x) => !x.ok && x.first >= dropFrom)!;
    const t2 = exchanges.find((x) => x.first > t1.first)!;
    expect(t1, JSON.stringify(exchanges)).toBeDefined();
    // T1: sent at 0, 1, 3 and 7 s, never answered; abandoned when T2 began.
    expect(t1.copies).toBe(4);
    expect(t2.ok).toBe(true);
    expect(t2.copies).toBeGreaterThanOrEqual(2);
    // T1 is due at 1/2 and T2 at 7/8 of the lease, which began with the first send of h1's last
    // answered request or renewal before T1.
    const leaseStart = packets
      .filter((p) => p.src === H1 && (p.kind === 'port-renew' || p.kind === 'port-request') && p.t < t1.first)
      .filter((p) => answered(p.txid))
      .reduce(
        (m, p) => (m === undefined || p.txid !== m.txid ? p : m),
        undefined as PapPacket | undefined,
      )!.t;
    expect(Math.abs(t1.first - leaseStart - LEASE * 500)).toBeLessThan(1_000);
    expect(Math.abs(t2.first - leaseStart - LEASE * 875)).toBeLessThan(1_000);
    console.log(
      `T1 at ${((t1.first - leaseStart) / 1000).toFixed(2)} s (${t1.copies} copies, dropped), ` +
        `T2 at ${((t2.first - leaseStart) / 1000).toFixed(2)} s (${t2.copies} copies, answered); lifted at ` +
        `${((t2At - leaseStart) / 1000).toFixed(2)} s`,
    );
    // Outside that one period, each renewal is one transaction, answered, half a lease after the last.
    const normal = exchanges.filter((x) => x.first < t1.first - 1000 || x.first > t2.first + 1000);
    expect(normal.length).toBeGreaterThanOrEqual(8);
    expect(normal.every((x) => x.ok)).toBe(true);
  }, 420_000);
});
