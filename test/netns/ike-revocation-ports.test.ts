/**
 * Revocation reaches live SAs when the block holding the host's IKE port is
 * withdrawn too (`distnat withdraw h1 --kind all`), against `distnat peer`
 * (plain ESP), the router on its default eBPF data path (the fast path
 * leaves IKE from a port nobody owns to the slow path, which drains; the
 * strongSwan file shows `--kind all` on the TUN path):
 *
 *   dn-h1      distnat host --ike, initiates to the server; curl every 50 ms through the SA
 *   dn-router  distnat router (eBPF data path), the local CA; captures on its WAN and LAN
 *   dn-server  distnat peer --ike (CRLs from the router, liveness check every 60 s), an HTTP server
 *
 * With traffic on the SA, every block of h1 is withdrawn, its IKE port's
 * among them. Then:
 * (a) the peer is told at once: its IKE SA with h1 goes, "deleted by the
 *     peer", long before its 60 s liveness check could notice (that would
 *     say "peer did not answer"). h1's Delete left from its old IKE port,
 *     which it no longer holds: the router let it out as IKE of a port
 *     block withdrawn moments ago (`withdrawn-ike-drain`);
 * (b) no ESP of the old SA crosses the router after the withdrawal, and
 *     ESP sent to a withdrawn SPI afterwards is `spi-withdrawn`;
 * (c) h1 starts IKE over on a port of its new blocks, makes a new SA, its
 *     inbound SPI from the new SPI block, and the traffic goes over that.
 * Then, on the new SA, `--kind port`: h1 keeps its SPI block, loses its
 * ports; the peer hears the Delete from the old IKE port all the same, h1
 * starts over from a new port with a child SA from the SPI block it kept,
 * and none of the old SA's ESP leaves on the WAN afterwards.
 *
 * Without the router's drain the Delete is `spoofed-port` and (a) fails;
 * without the host keeping its old IKE socket (and port) a moment, it never
 * reaches the router.
 */
import { describe, expect, it } from 'vitest';
import { pseudoRandomBytes, readStatus } from '../helpers/distnat.ts';
import type { DaemonStatus } from '../helpers/distnat.ts';
import {
  hostIkePort,
  readPeerStatus,
  saveHostIdentity,
  startIkeHost,
  startIkePeer,
  tableRows,
  testbedPki,
  waitForChildSas,
} from '../helpers/ike.ts';
import { startRouter } from '../helpers/ipsec.ts';
import { waitUntil } from '../helpers/process.ts';
import {
  childSpis,
  describeSeen,
  espInCapture,
  expectDownloadIntact,
  expectOnlyIkeFromOldPort,
  expectWithdrawnSaSilent,
  inBlock,
  sendEspFromServer,
  spiBlockOf,
  waitForTrafficOnNewSa,
  withdrawUnderTraffic,
} from '../helpers/revocation.ts';
import type { SeenEsp } from '../helpers/revocation.ts';
import { TOPOLOGY, useTestbed } from '../helpers/testbed.ts';

const bed = useTestbed({ daemons: false });
const SERVER = TOPOLOGY.server.wan;
const SHARED = TOPOLOGY.shared;
const H1 = TOPOLOGY.h1.lan;
const FILE = pseudoRandomBytes(200_000, 0x5e9);
/** The peer's liveness check: far longer than the Delete may take, so only a Delete can end its SA in time. */
const PEER_DPD_SECONDS = 60;

const c = (s: DaemonStatus, name: string): number => s.counters[name] ?? 0;

// The peer, for the second case (which goes on from where the first left h1).
let peerLog = (): string => '';
let peerRunDir: string | undefined;
let h1Log = (): string => '';
const peerDeletes = (): number => peerLog().match(/IKE SA down.*deleted by the peer/g)?.length ?? 0;

describe('distnat withdraw --kind all reaches the SAs that are up (distnat peer, eBPF data path)', () => {
  it("the peer hears the Delete from h1's withdrawn IKE port, no ESP of the old SA crosses afterwards, and a new SA carries the traffic", async () => {
    const b = bed();
    try {
      await startRouter(b, ['--ca-dir', testbedPki(b).localCa, '--crl-address', TOPOLOGY.router.wan]);
      const peer = await startIkePeer(b, { dpdSeconds: PEER_DPD_SECONDS });
      peerLog = () => peer.proc.stdout() + peer.proc.stderr();
      peerRunDir = peer.runDir;
      const peerStatus = (): Promise<DaemonStatus> => readPeerStatus(peer.runDir);
      const agent = await startIkeHost(b, 'h1', { peers: [{ address: SERVER, initiate: true }] });
      h1Log = () => agent.stdout() + agent.stderr();
      const h1 = await waitForChildSas('h1 with a child SA', () => readStatus(b, 'h1'), 1);
      await waitForChildSas('the peer with a child SA', peerStatus, 1);
      const [old] = childSpis(h1);
      const oldBlock = spiBlockOf(await readStatus(b, 'router'), H1)!;
      expect(inBlock(old!.in, oldBlock)).toBe(true);
      const oldIkePort = await hostIkePort(b, 'h1');
      const identity = saveHostIdentity(b, 'h1');
      const drainedBefore = c(await readStatus(b, 'router'), 'traffic.withdrawn-ike-drain');
      expect(drainedBefore).toBe(0);

      const { http, loop, wan, lan, withdrawStartedAt, withdrawnAt } = await withdrawUnderTraffic(
        b,
        FILE,
        identity.serial,
        'all',
      );

      // (a) the peer was told, by a Delete: its liveness check is 60 s away.
      await waitUntil(
        'the peer hearing the Delete',
        () => /IKE SA down.*deleted by the peer/.test(peerLog()),
        { timeoutMs: 15_000, intervalMs: 100 },
      );
      const heardAfter = Date.now() / 1000 - withdrawnAt;
      expect(peerLog()).not.toMatch(/peer did not answer/);
      expect(c(await readStatus(b, 'h1'), 'ike.revocation-ike-sas-deleted')).toBe(1);
      expect(c(await readStatus(b, 'router'), 'traffic.withdrawn-ike-drain')).toBeGreaterThanOrEqual(1);

      // (c) IKE on a port of the new blocks, a new SA on the new SPI block, the traffic on it.
      let fresh: { in: number; out: number } | undefined;
      await waitUntil(
        'a new child SA on h1 with an SPI of its new block',
        async () => {
          const block = spiBlockOf(await readStatus(b, 'router'), H1);
          fresh = childSpis(await readStatus(b, 'h1')).find(
            (s) => block !== undefined && inBlock(s.in, block) && !inBlock(s.in, oldBlock),
          );
          return fresh !== undefined;
        },
        { timeoutMs: 30_000, intervalMs: 200 },
      );
      expect(await hostIkePort(b, 'h1')).not.toBe(oldIkePort);
      const p = await peerStatus();
      expect(childSpis(p).map((s) => s.out)).toEqual([fresh!.in]);
      expect(tableRows(p, 'IKE SAs')).toHaveLength(1);
      await waitForTrafficOnNewSa(b);
      await expectDownloadIntact(b, http, FILE);

      const router = await readStatus(b, 'router');
      for (let i = 0; i < 3; i++) await sendEspFromServer(b, 'esp', old!.in);
      await waitUntil(
        'the router counting spi-withdrawn',
        async () =>
          c(await readStatus(b, 'router'), 'drop.spi-withdrawn') >= c(router, 'drop.spi-withdrawn') + 3,
        { timeoutMs: 10_000, intervalMs: 100 },
      );
      await loop.stop();
      await wan.stop();
      await lan.stop();
      await http.stop();

      // (a) on the wire: after the withdrawal, IKE from the old port left on the WAN, and only IKE.
      expectOnlyIkeFromOldPort(
        wan.file,
        oldIkePort,
        { startedAt: withdrawStartedAt, doneAt: withdrawnAt },
        `, heard after ${heardAfter.toFixed(1)} s`,
      );
      // (b)
      expectWithdrawnSaSilent(
        { wan: wan.file, lan: lan.file },
        { old: old!, fresh: fresh! },
        oldBlock,
        withdrawnAt,
        3,
      );
    } catch (e) {
      throw new Error(
        `${(e as Error).message}\n--- peer\n${peerLog().split('\n').slice(-20).join('\n')}\n--- h1\n${h1Log().split('\n').slice(-40).join('\n')}`,
      );
    }
  }, 150_000);
  it('with --kind port (the SPI block kept), the peer hears the Delete from the withdrawn IKE port too, and h1 carries on from a new port', async () => {
    const b = bed();
    try {
      if (peerRunDir === undefined) throw new Error('the peer is not running (the case before failed early)');
      const runDir = peerRunDir;
      const peerStatus = (): Promise<DaemonStatus> => readPeerStatus(runDir);
      const h1 = await waitForChildSas('h1 with a child SA', () => readStatus(b, 'h1'), 1);
      const [old] = childSpis(h1);
      const router = await readStatus(b, 'router');
      const spiBlock = spiBlockOf(router, H1)!;
      const oldIkePort = await hostIkePort(b, 'h1');
      const identity = saveHostIdentity(b, 'h1');
      const deletesBefore = peerDeletes();

      const { http, loop, wan, lan, withdrawStartedAt, withdrawnAt } = await withdrawUnderTraffic(
        b,
        FILE,
        identity.serial,
        'port',
      );

      await waitUntil('the peer hearing the Delete', () => peerDeletes() > deletesBefore, {
        timeoutMs: 15_000,
        intervalMs: 100,
      });
      expect(peerLog()).not.toMatch(/peer did not answer/);
      expect(c(await readStatus(b, 'h1'), 'ike.revocation-ike-sas-deleted')).toBe(
        c(h1, 'ike.revocation-ike-sas-deleted') + 1,
      );
      expect(c(await readStatus(b, 'router'), 'traffic.withdrawn-ike-drain')).toBeGreaterThan(
        c(router, 'traffic.withdrawn-ike-drain'),
      );

      // A new IKE SA from a port of the new port block; its child SA's SPI from the SPI block h1 kept
      // (the first free one of it, which may be the old SA's again: told apart by the peer's SPI).
      let fresh: { in: number; out: number } | undefined;
      await waitUntil(
        'a new child SA on h1',
        async () => {
          fresh = childSpis(await readStatus(b, 'h1')).find((s) => s.out !== old!.out);
          return fresh !== undefined;
        },
        { timeoutMs: 30_000, intervalMs: 200 },
      );
      expect(spiBlockOf(await readStatus(b, 'router'), H1)).toEqual(spiBlock);
      expect(inBlock(fresh!.in, spiBlock)).toBe(true);
      expect(await hostIkePort(b, 'h1')).not.toBe(oldIkePort);
      const p = await peerStatus();
      expect(childSpis(p).map((s) => s.out)).toEqual([fresh!.in]);
      expect(tableRows(p, 'IKE SAs')).toHaveLength(1);
      await waitForTrafficOnNewSa(b);
      await loop.stop();
      await wan.stop();
      await lan.stop();
      await http.stop();

      // On the WAN after the withdrawal: only IKE from the old port, none of the old SA's ESP, the new SA's.
      expectOnlyIkeFromOldPort(wan.file, oldIkePort, { startedAt: withdrawStartedAt, doneAt: withdrawnAt });
      const wanEsp = espInCapture(wan.file);
      const out = (spi: number): SeenEsp[] => wanEsp.filter((e) => e.src === SHARED && e.spi === spi);
      const esp = describeSeen(wanEsp);
      expect(out(old!.out).filter((e) => e.time < withdrawnAt).length, esp).toBeGreaterThan(10);
      expect(
        out(old!.out).filter((e) => e.time >= withdrawnAt),
        esp,
      ).toEqual([]);
      expect(out(fresh!.out).length, esp).toBeGreaterThan(10);
    } catch (e) {
      throw new Error(
        `${(e as Error).message}\n--- peer\n${peerLog().split('\n').slice(-20).join('\n')}\n--- h1\n${h1Log().split('\n').slice(-40).join('\n')}`,
      );
    }
  }, 150_000);
});
