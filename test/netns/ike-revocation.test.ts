/**
 * Revocation reaches live SAs, against `distnat peer` (plain ESP, the
 * router on its default eBPF data path):
 *
 *   dn-h1      distnat host --ike, initiates to the server; curl every 50 ms through the SA
 *   dn-router  distnat router, the local CA; captures on its WAN and LAN
 *   dn-server  distnat peer --ike (CRLs from the router), an HTTP server
 *
 * With traffic on the SA, `distnat withdraw h1 --kind spi`. Then:
 * (a) the peer is told: its IKE SA with h1 goes, "deleted by the peer";
 * (b) no ESP of the old SA crosses the router after the withdrawal: none
 *     with h1's old outbound SPI leaves on the WAN, none with an SPI of the
 *     withdrawn block is tunnelled to h1, and ESP sent to a withdrawn SPI
 *     afterwards, plain or in UDP from port 4500 to h1's IKE port (which the
 *     fast path demultiplexes by port), is dropped and counted as
 *     `spi-withdrawn`, while ESP in UDP for h1's live SA and IKE (the
 *     non-ESP marker) to the same port still reach h1;
 * (c) h1 makes a new SA, its inbound SPI from the new block, with its new
 *     certificate, and the traffic goes over that.
 * Without the host's part, the old SA stays up at the peer and no new one is
 * made; without the router's, the injected ESP is not `spi-withdrawn`, and
 * without the fast path's withdrawn_spis the ESP in UDP reaches h1.
 */
import { describe, expect, it } from 'vitest';
import { daemonLogs, ipv4Of, pseudoRandomBytes, readPcapng, readStatus } from '../helpers/distnat.ts';
import type { DaemonStatus } from '../helpers/distnat.ts';
import {
  hostIkePort,
  readPeerStatus,
  saveHostIdentity,
  startIkeHost,
  startIkePeer,
  startIkeRouter,
  tableRows,
  waitForChildSas,
} from '../helpers/ike.ts';
import { waitUntil } from '../helpers/process.ts';
import {
  childSpis,
  expectDownloadIntact,
  expectWithdrawnSaSilent,
  inBlock,
  sendEspFromServer,
  spiBlockOf,
  waitForTrafficOnNewSa,
  withdrawUnderTraffic,
} from '../helpers/revocation.ts';
import { TOPOLOGY, useTestbed } from '../helpers/testbed.ts';

const bed = useTestbed({ daemons: false });
const SERVER = TOPOLOGY.server.wan;
const H1 = TOPOLOGY.h1.lan;
const FILE = pseudoRandomBytes(200_000, 0x5e7);

const c = (s: DaemonStatus, name: string): number => s.counters[name] ?? 0;

/**
 * What the router tunnelled to h1 (its LAN capture) of UDP from port 4500 to
 * `port` as sendEspFromServer() writes it (sequence number 1 after the SPI,
 * which IKE's own messages do not have there): the SPI, 0 for the non-ESP marker.
 */
function udp4500ToH1(file: string, port: number): number[] {
  const out: number[] = [];
  for (const frame of readPcapng(file)) {
    const outer = ipv4Of(frame);
    if (outer === undefined || outer[9] !== 4 || outer.subarray(16, 20).join('.') !== H1) continue;
    const ip = outer.subarray((outer[0]! & 0x0f) * 4);
    const hl = (ip[0]! & 0x0f) * 4;
    if (ip[9] !== 17 || ip.length < hl + 16 || ip.readUInt32BE(hl + 12) !== 1) continue;
    if (ip.readUInt16BE(hl) === 4500 && ip.readUInt16BE(hl + 2) === port) out.push(ip.readUInt32BE(hl + 8));
  }
  return out;
}

describe('distnat withdraw reaches the SAs that are up (distnat peer, eBPF data path)', () => {
  it('the peer is told, no ESP of the old SA crosses the router afterwards, and a new SA carries the traffic', async () => {
    const b = bed();
    let peerLog = (): string => '';
    try {
      await startIkeRouter(b);
      const peer = await startIkePeer(b);
      peerLog = () => peer.proc.stdout() + peer.proc.stderr();
      const peerStatus = (): Promise<DaemonStatus> => readPeerStatus(peer.runDir);
      await startIkeHost(b, 'h1', { peers: [{ address: SERVER, initiate: true }] });
      const h1 = await waitForChildSas('h1 with a child SA', () => readStatus(b, 'h1'), 1);
      await waitForChildSas('the peer with a child SA', peerStatus, 1);
      const [old] = childSpis(h1);
      const oldBlock = spiBlockOf(await readStatus(b, 'router'), H1)!;
      expect(inBlock(old!.in, oldBlock)).toBe(true);
      const identity = saveHostIdentity(b, 'h1');

      const { http, loop, wan, lan, withdrawnAt } = await withdrawUnderTraffic(b, FILE, identity.serial);

      // (a) h1 deleted its IKE SA with the peer, and said so.
      await waitUntil(
        'the peer hearing the Delete',
        () => /IKE SA down.*deleted by the peer/.test(peerLog()),
        {
          timeoutMs: 10_000,
          intervalMs: 100,
        },
      );
      const after = await readStatus(b, 'h1');
      expect(c(after, 'ike.revocation-withdrawals')).toBe(1);
      expect(c(after, 'ike.revocation-ike-sas-deleted')).toBe(1);

      // (c) a new SA on the new block, with the new certificate, and the traffic on it.
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
      const p = await peerStatus();
      expect(childSpis(p).map((s) => s.out)).toEqual([fresh!.in]);
      expect(tableRows(p, 'IKE SAs')).toHaveLength(1);
      expect(String((await readStatus(b, 'h1')).summary['ike'])).not.toContain(identity.serial.slice(0, 16));
      expect(c(await readStatus(b, 'h1'), 'ike.revocation-resumed')).toBe(1);
      await waitForTrafficOnNewSa(b);
      await expectDownloadIntact(b, http, FILE);

      // ESP to the withdrawn SPI now: plain, the eBPF fast path finds no owner and leaves it
      // to the slow path, which drops it; in UDP to h1's port, the fast path drops it itself.
      const router = await readStatus(b, 'router');
      const ikePort = await hostIkePort(b, 'h1');
      for (let i = 0; i < 3; i++) await sendEspFromServer(b, 'esp', old!.in);
      for (let i = 0; i < 3; i++) await sendEspFromServer(b, 'udp', old!.in, { port: ikePort });
      // The same port, for the live SA and with the non-ESP marker: these go through.
      await sendEspFromServer(b, 'udp', fresh!.in, { port: ikePort });
      await sendEspFromServer(b, 'udp', 0, { port: ikePort });
      await waitUntil(
        'the router counting spi-withdrawn',
        async () =>
          c(await readStatus(b, 'router'), 'drop.spi-withdrawn') >= c(router, 'drop.spi-withdrawn') + 6,
        { timeoutMs: 10_000, intervalMs: 100 },
      );
      await loop.stop();
      await wan.stop();
      await lan.stop();

      // (b) on the wire.
      expectWithdrawnSaSilent(
        { wan: wan.file, lan: lan.file },
        { old: old!, fresh: fresh! },
        oldBlock,
        withdrawnAt,
        6,
      );
      const toH1 = udp4500ToH1(lan.file, ikePort);
      expect(toH1.filter((spi) => inBlock(spi, oldBlock))).toEqual([]);
      expect(toH1.filter((spi) => spi === fresh!.in)).toHaveLength(1);
      expect(toH1.filter((spi) => spi === 0)).toHaveLength(1);
    } catch (e) {
      throw new Error(
        `${(e as Error).message}\n--- peer\n${peerLog().split('\n').slice(-20).join('\n')}\n${daemonLogs(b, 30)}`,
      );
    }
  }, 150_000);
});
