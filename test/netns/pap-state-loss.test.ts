/**
 * The router loses its lease state (docs/pap.md 6.3): h1 and h2 hold port
 * and SPI blocks (10 s leases) and send through the shared address (ping,
 * HTTP with curl); the router is killed, its state directory emptied, and a
 * new one started on it without --fresh, as on a replacement machine. A
 * third PAP client (an independent one, from the `lan` namespace) asks for
 * ports and SPIs at once, and again every few seconds.
 *
 * Shown: the new router has a new epoch and holds off (half the longest
 * lease plus the 120 s quarantine); the third client is told to try later,
 * with the seconds left, until the hold-off ends, and only then gets blocks;
 * h1 and h2 reclaim exactly the blocks they held (renewals carrying the old
 * epoch, answered in the new one) and their traffic resumes without a new
 * lease; no two hosts ever hold one port or SPI, neither in any sample of
 * the router's and the hosts' tables nor on the wire (every PAP message
 * captured on the router's LAN interface, decoded by wireshark/pap.lua).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestbedLayout } from '../../scripts/lib/testbed/layout.ts';
import { distnatCommand, hostArgs, routerArgs } from '../../scripts/lib/testbed/process-table.ts';
import type { Capture } from '../helpers/capture.ts';
import { DISTNAT, daemonLog, daemonLogs, daemonPid, readStatus } from '../helpers/distnat.ts';
import type { ListedBlock, PapReply } from '../helpers/pap.ts';
import {
  addLanHosts,
  holdingText,
  holdings,
  hostBlocks,
  papExchange,
  papPackets,
  routerBlocks,
  sharedBlocks,
  sharedHoldings,
} from '../helpers/pap.ts';
import type { Background } from '../helpers/process.ts';
import { sleep, waitUntil } from '../helpers/process.ts';
import { TESTBED_SCRIPT, TOPOLOGY, uniquePrefix, useTestbed } from '../helpers/testbed.ts';
import { PapStatus } from '../../src/wire/pap.ts';

const LEASE = 10;
const QUARANTINE = 120;
const HOLD_OFF_MS = (Math.ceil(LEASE / 2) + QUARANTINE) * 1000;
const THIRD = '10.0.0.41';
const SERVER = TOPOLOGY.server.wan;

const prefix = uniquePrefix();
const layout = new TestbedLayout(prefix);
const dir = mkdtempSync(join(tmpdir(), 'distnat-pap-state-loss-'));
const routerConfig = join(dir, 'router.yaml');
writeFileSync(routerConfig, `pap:\n  leaseSeconds: ${LEASE}\n  maxLeaseSeconds: ${LEASE}\n`);
const routerLine = routerArgs(layout, ['--config', routerConfig]);
const table = [
  `router router ${distnatCommand(routerLine)}`,
  `h1 h1 ${distnatCommand(hostArgs(layout, 'h1', ['--spis', '64']))}`,
  `h2 h2 ${distnatCommand(hostArgs(layout, 'h2', ['--spis', '64']))}`,
  '',
].join('\n');

// Daemons later, once the capture runs: every lease is then on the wire from its grant.
const bed = useTestbed({ prefix, daemons: false });
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Sample = { when: string; at: number; blocks: ListedBlock[] };

describe('router restarted without its lease state', () => {
  let capture: Capture;
  const samples: Sample[] = [];
  const thirdBlocks: ListedBlock[] = [];

  /** Every table there is, now: the router's (if it answers), each host's own, and the third client's grants. */
  const sample = async (when: string): Promise<Sample> => {
    const b = bed();
    // A daemon that does not answer (the router while it is down, agents starting) lists nothing.
    const [router, h1, h2] = await Promise.all(
      (['router', 'h1', 'h2'] as const).map((n) => readStatus(b, n).catch(() => undefined)),
    );
    const s = {
      when,
      at: Date.now(),
      blocks: [
        ...(router === undefined ? [] : routerBlocks(router)),
        ...(h1 === undefined ? [] : hostBlocks(h1)),
        ...(h2 === undefined ? [] : hostBlocks(h2)),
        ...thirdBlocks,
      ],
    };
    samples.push(s);
    return s;
  };

  const curl = async (node: 'h1' | 'h2', port: number): Promise<boolean> => {
    const r = await bed().exec(
      node,
      ['curl', '-sS', '--max-time', '3', `http://${SERVER}:${port}/hello.txt`],
      {
        timeoutMs: 10_000,
      },
    );
    return r.code === 0 && r.stdout === 'hello from distnat\n';
  };

  beforeAll(async () => {
    const b = bed();
    capture = await b.capture('router', TOPOLOGY.lanIf, { filter: `udp port ${TOPOLOGY.papPort}` });
    await b.reconfigure({ prefix, daemonTable: table });
    await addLanHosts(b, [THIRD]);
  }, 180_000);

  it('holds off, lets h1 and h2 reclaim their blocks, never hands a value to two hosts', async () => {
    const b = bed();
    // Both hosts hold ports and SPIs, and send.
    await waitUntil(
      'h1 and h2 to hold ports and SPIs the router lists',
      async () => {
        const s = await sample('start');
        const byHost = (h: string) => s.blocks.filter((x) => x.source === 'router' && x.host === h);
        return [TOPOLOGY.h1.lan, TOPOLOGY.h2.lan].every((h) =>
          ['port', 'spi'].every((k) => byHost(h).some((x) => x.kind === k)),
        );
      },
      { timeoutMs: 40_000, intervalMs: 300 },
    ).catch((e: Error) => {
      throw new Error(`${e.message}\n${daemonLogs(b)}`);
    });
    const http = await b.httpServer('server', { bind: SERVER });
    expect(await curl('h1', http.port)).toBe(true);
    expect(await curl('h2', http.port)).toBe(true);
    const pings = (['h1', 'h2'] as const).map((h) =>
      b.spawn(
        h,
        [TESTBED_SCRIPT, '--prefix', prefix, 'ping', h, SERVER, '-c', '100000', '-i', '0.2', '-W', '1'],
        {
          env: { ...process.env, PYTHONUNBUFFERED: '1' },
        },
      ),
    );
    const replies = (p: Background): number => (p.stdout().match(/: reply from/g) ?? []).length;
    await Promise.all(pings.map((p) => p.waitForOutput(/: reply from/, { timeoutMs: 15_000 })));

    const before = await readStatus(b, 'router');
    const oldEpoch = Number(before.summary['epoch']);
    const held = routerBlocks(before);
    const key = (x: ListedBlock) => `${x.host} ${x.kind} ${x.first}-${x.last}`;
    console.log(`held before the loss: ${held.map(key).join(', ')}`);

    // The machine dies with its disk: SIGKILL, the state directory emptied, a new router on it.
    const pid = daemonPid(b, 'router');
    process.kill(pid, 'SIGKILL');
    await waitUntil('the old router to be gone', () => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    });
    const stateDir = join(layout.nodeDir('router'), 'state');
    rmSync(stateDir, { recursive: true, force: true });
    const lostAt = Date.now();
    const router = b.spawn('router', [DISTNAT, ...routerLine.filter((a) => a !== '--fresh')]);
    await router.waitForOutput(/router started/, { timeoutMs: 30_000 });
    const restartedAt = Date.now();

    // A third client at once: told to try later, with the seconds left.
    const early = (await papExchange(b, THIRD, [
      { op: 'request', kind: 'port', count: 32 },
      { op: 'request', kind: 'spi', count: 64 },
    ])) as PapReply[];
    for (const r of early) {
      expect(r.answer, JSON.stringify(r)).toMatchObject({ success: false, status: PapStatus.TryLater });
      expect(r.answer!.lease).toBeGreaterThan((HOLD_OFF_MS - (Date.now() - lostAt)) / 1000 - 5);
      expect(r.answer!.lease).toBeLessThanOrEqual(HOLD_OFF_MS / 1000);
    }
    const after = await readStatus(b, 'router');
    const newEpoch = Number(after.summary['epoch']);
    expect(newEpoch).not.toBe(oldEpoch);
    expect(String(after.summary['hold-off'])).toMatch(/^until .*reclaims only$/);
    expect(String(after.summary['recovered'])).toBe('no (new epoch)');

    // h1 and h2 reclaim exactly what they held, at their next renewal.
    await waitUntil(
      'h1 and h2 to reclaim every block they held',
      async () => {
        const s = await sample('reclaiming');
        const listed = s.blocks.filter((x) => x.source === 'router').map(key);
        return held.every((x) => listed.includes(key(x)));
      },
      { timeoutMs: 30_000, intervalMs: 300 },
    ).catch((e: Error) => {
      throw new Error(`${e.message}\n${daemonLogs(b)}\n--- new router\n${router.stdout()}${router.stderr()}`);
    });
    const reclaimedAt = Date.now();
    console.log(`reclaimed ${Math.round((reclaimedAt - restartedAt) / 100) / 10} s after the restart`);
    for (const h of ['h1', 'h2'] as const) {
      const log = daemonLog(b, h);
      expect(log, h).toMatch(/reclaiming the blocks held/);
      expect(log, h).not.toMatch(/(lost|released) (ports|SPIs)/);
    }
    // Their traffic resumes on the same blocks.
    const atReclaim = pings.map(replies);
    for (const h of ['h1', 'h2'] as const)
      await waitUntil(`${h}'s HTTP through the shared address`, () => curl(h, http.port), {
        timeoutMs: 15_000,
        intervalMs: 500,
      });
    await waitUntil(
      'both pings to get replies again',
      () => pings.every((p, i) => replies(p) > atReclaim[i]! + 5),
      {
        timeoutMs: 15_000,
      },
    );

    // The third client keeps asking: refused until the hold-off ends, served after it.
    const asks: { at: number; reply: PapReply }[] = [];
    while (Date.now() < lostAt + HOLD_OFF_MS + 20_000) {
      const [reply] = (await papExchange(b, THIRD, [
        { op: 'request', kind: 'port', count: 32 },
      ])) as PapReply[];
      asks.push({ at: Date.now(), reply: reply! });
      const a = reply!.answer!;
      if (a.success) {
        thirdBlocks.push({
          source: THIRD,
          host: THIRD,
          kind: 'port',
          first: a.lowest,
          last: a.lowest + a.count - 1,
        });
        break;
      }
      await sample('holding off');
      await sleep(a.status === PapStatus.TryLater ? Math.min(5_000, a.lease * 1000 + 200) : 5_000);
    }
    const [spi] = (await papExchange(b, THIRD, [{ op: 'request', kind: 'spi', count: 64 }])) as PapReply[];
    expect(spi!.answer).toMatchObject({ success: true, epoch: newEpoch });
    thirdBlocks.push({
      source: THIRD,
      host: THIRD,
      kind: 'spi',
      first: spi!.answer!.lowest,
      last: spi!.answer!.lowest + spi!.answer!.count - 1,
    });
    const granted = asks.at(-1)!;
    expect(granted.reply.answer, JSON.stringify(asks.map((x) => x.reply.answer))).toMatchObject({
      success: true,
    });
    expect(asks.slice(0, -1).every((x) => x.reply.answer?.status === PapStatus.TryLater)).toBe(true);
    expect(granted.reply.answer!.t * 1000).toBeGreaterThanOrEqual(lostAt + HOLD_OFF_MS - 1000);
    console.log(
      `third client: ${asks.length - 1} try-later answers, then ${thirdBlocks.map(key).join(', ')} ` +
        `${Math.round((granted.reply.answer!.t * 1000 - lostAt) / 1000)} s after the loss`,
    );
    for (let i = 0; i < 6; i++) {
      await sample('after the hold-off');
      await sleep(500);
    }
    expect(await curl('h1', http.port)).toBe(true);
    expect(await curl('h2', http.port)).toBe(true);

    // The tables: never one value under two hosts, whoever lists it.
    const clashes = samples.flatMap((s) => sharedBlocks(s.blocks).map((c) => `${s.when}: ${c}`));
    expect(clashes).toEqual([]);
    expect(samples.length).toBeGreaterThan(20);

    // The wire: the same, from every PAP message the router sent and received.
    await capture.stop();
    const packets = await papPackets(capture.file);
    const hs = holdings(packets, Date.now());
    console.log(hs.map(holdingText).join('\n'));
    expect(sharedHoldings(hs)).toEqual([]);
    // The reclaims: renewals naming the old epoch, answered with success in the new one, by h1 and h2 only.
    const reclaims = packets.filter((p) => !p.fromRouter && p.kind.endsWith('renew') && p.epoch === oldEpoch);
    const answered = reclaims.filter((q) =>
      packets.some(
        (p) => p.fromRouter && p.dst === q.src && p.txid === q.txid && p.success && p.epoch === newEpoch,
      ),
    );
    expect(new Set(answered.map((q) => `${q.src} ${q.kind} ${q.lowest}`))).toEqual(
      new Set(held.map((x) => `${x.host} ${x.kind === 'port' ? 'port-renew' : 'spi-renew'} ${x.first}`)),
    );
    // No grant (a success to a request) between the restart and the end of the hold-off.
    const requests = new Map(packets.filter((p) => !p.fromRouter).map((p) => [`${p.src} ${p.txid}`, p]));
    const earlyGrants = packets.filter(
      (p) =>
        p.fromRouter &&
        p.success &&
        p.epoch === newEpoch &&
        requests.get(`${p.dst} ${p.txid}`)?.kind.endsWith('request') === true &&
        p.t < lostAt + HOLD_OFF_MS - 1000,
    );
    expect(earlyGrants).toEqual([]);
    const tryLater = packets.filter((p) => p.fromRouter && p.status === PapStatus.TryLater);
    expect(tryLater.length).toBeGreaterThanOrEqual(asks.length + 1);
    expect(new Set(tryLater.map((p) => p.dst))).toEqual(new Set([THIRD]));
    for (const p of pings) await p.stop();
  }, 400_000);
});
