/**
 * Revocation reaches live SAs, against strongSwan (charon 5.9.8 with
 * kernel-libipsec, started as ike-testbed-strongswan.test.ts starts it: ESP
 * in UDP, routes by fwmark), the router on its TUN data path:
 *
 *   dn-h1      distnat host --ike, initiates to charon; curl every 50 ms through the SA
 *   dn-router  distnat router --datapath tun, the local CA; captures on its WAN and LAN
 *   dn-server  charon, an HTTP server
 *
 * With traffic on the SA, `distnat withdraw h1 --kind spi`. Then:
 * (a) charon receives the Delete for its IKE SA and lists the old SA no more;
 * (b) no ESP of the old SA crosses the router afterwards: none with h1's old
 *     outbound SPI leaves on the WAN, none with an SPI of the withdrawn block
 *     is tunnelled to h1 (charon's own late packets included: ESP in UDP is
 *     demultiplexed by h1's port, and the router drops it by SPI), and ESP,
 *     plain or in UDP, sent to a withdrawn SPI afterwards is `spi-withdrawn`;
 * (c) h1 makes a new SA with charon, its inbound SPI from the new block,
 *     and the traffic goes over that.
 *
 * Then, on the new SA, `distnat withdraw h1 --kind all`, which takes h1's IKE
 * port too: charon (which runs no liveness check here) still receives the
 * Delete, from h1's old IKE port, let out by the router's drain of a
 * withdrawn port block (only IKE leaves from that port), and h1 starts over
 * from a port of its new blocks, as above. Without the drain charon keeps
 * the old SA.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { daemonLogs, pseudoRandomBytes, readStatus } from '../helpers/distnat.ts';
import type { DaemonStatus } from '../helpers/distnat.ts';
import { HAVE_CHARON, startCharon } from '../helpers/charon.ts';
import type { Charon } from '../helpers/charon.ts';
import {
  hostIkePort,
  issueServerIdentity,
  saveHostIdentity,
  startIkeHost,
  testbedPki,
  waitForChildSas,
} from '../helpers/ike.ts';
import { startRouter } from '../helpers/ipsec.ts';
import { waitUntil } from '../helpers/process.ts';
import {
  childSpis,
  expectDownloadIntact,
  expectOnlyIkeFromOldPort,
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
const SHARED = TOPOLOGY.shared;
const H1 = TOPOLOGY.h1.lan;
const FILE = pseudoRandomBytes(200_000, 0x5e8);

let swan: Charon | undefined;

// Registered after useTestbed's hooks, so it runs before the testbed goes down; also when a test failed.
afterAll(async () => {
  await swan?.stop();
}, 20_000);

const CONF = `connections {
  from-h1 {
    version = 2
    local_addrs = ${SERVER}
    remote_addrs = ${SHARED}
    encap = yes
    proposals = aes128gcm16-prfsha256-x25519
    local {
      auth = pubkey
      certs = server.pem
      id = ${SERVER}
    }
    remote {
      auth = pubkey
      cacerts = root.pem
    }
    children {
      from-h1 {
        mode = tunnel
        esp_proposals = aes128gcm16
        local_ts = dynamic
        remote_ts = dynamic
        start_action = none
      }
    }
  }
}
`;

const c = (s: DaemonStatus, name: string): number => s.counters[name] ?? 0;
const hex8 = (spi: number): string => spi.toString(16).padStart(8, '0');

describe.skipIf(!HAVE_CHARON)(
  'distnat withdraw reaches the SAs that are up (strongSwan, TUN data path)',
  () => {
    it('charon hears the Delete, no ESP of the old SA crosses the router afterwards, and a new SA carries the traffic', async () => {
      const b = bed();
      try {
        await startRouter(b, [
          '--ca-dir',
          testbedPki(b).localCa,
          '--crl-address',
          TOPOLOGY.router.wan,
          '--datapath',
          'tun',
        ]);
        const identity = await issueServerIdentity(b);
        const dir = join(b.scratchDir, 'swan');
        mkdirSync(dir, { recursive: true });
        swan = await startCharon(b.ns('server'), { dir, routes: 'fwmark', ikeLogLevel: 1 });
        swan.writeCredential('x509', 'server.pem', readFileSync(identity.cert, 'utf8'));
        swan.writeCredential('private', 'server.key', readFileSync(identity.key, 'utf8'));
        swan.writeCredential('x509ca', 'root.pem', readFileSync(testbedPki(b).root, 'utf8'));
        swan.writeSwanctlConf(CONF);
        swan.loadAll();

        await startIkeHost(b, 'h1', { peers: [{ address: SERVER, initiate: true }] });
        const h1 = await waitForChildSas('h1 with a child SA', () => readStatus(b, 'h1'), 1);
        const [old] = childSpis(h1);
        const oldBlock = spiBlockOf(await readStatus(b, 'router'), H1)!;
        expect(inBlock(old!.in, oldBlock)).toBe(true);
        expect(swan.swanctl('--list-sas')).toMatch(new RegExp(`out\\s+${hex8(old!.in)},`));
        const ikePort = await hostIkePort(b, 'h1');
        const cert = saveHostIdentity(b, 'h1');

        const { http, loop, wan, lan, withdrawnAt } = await withdrawUnderTraffic(b, FILE, cert.serial);

        // (a) charon was told, and its old SA is gone.
        await waitUntil(
          'charon receiving the Delete',
          () => /received DELETE for IKE_SA from-h1/.test(swan!.log()),
          {
            timeoutMs: 10_000,
            intervalMs: 100,
          },
        );
        expect(c(await readStatus(b, 'h1'), 'ike.revocation-ike-sas-deleted')).toBe(1);

        // (c) a new SA on the new block, charon's side of it too, and the traffic on it.
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
        const list = swan.swanctl('--list-sas');
        expect(list).toMatch(new RegExp(`out\\s+${hex8(fresh!.in)},`));
        expect(list).not.toContain(hex8(old!.in));
        expect(list).not.toContain(hex8(old!.out));
        await waitForTrafficOnNewSa(b);
        await expectDownloadIntact(b, http, FILE);

        // ESP to the withdrawn SPI now, plain and in UDP to h1's IKE port: dropped by SPI.
        const router = await readStatus(b, 'router');
        // Marked as charon marks its own, or its routes would take them into its TUN device.
        await sendEspFromServer(b, 'esp', old!.in, { mark: 0x2a });
        await sendEspFromServer(b, 'udp', old!.in, { port: ikePort, mark: 0x2a });
        await waitUntil(
          'the router counting spi-withdrawn',
          async () =>
            c(await readStatus(b, 'router'), 'drop.spi-withdrawn') >= c(router, 'drop.spi-withdrawn') + 2,
          { timeoutMs: 10_000, intervalMs: 100 },
        );
        await loop.stop();
        await wan.stop();
        await lan.stop();
        await http.stop();

        // (b) on the wire.
        expectWithdrawnSaSilent(
          { wan: wan.file, lan: lan.file },
          { old: old!, fresh: fresh! },
          oldBlock,
          withdrawnAt,
          2,
        );
      } catch (e) {
        const log = swan?.log() ?? '';
        throw new Error(
          `${(e as Error).message}\n--- charon\n${log.split('\n').slice(-30).join('\n')}\n${daemonLogs(b, 30)}`,
        );
      }
    }, 150_000);

    it("with --kind all, charon hears the Delete from h1's withdrawn IKE port, and a new SA from a port of the new blocks carries the traffic", async () => {
      const b = bed();
      try {
        if (swan === undefined) throw new Error('charon is not running (the case before failed early)');
        const deletes = (): number => swan!.log().match(/received DELETE for IKE_SA from-h1/g)?.length ?? 0;
        const h1 = await waitForChildSas('h1 with a child SA', () => readStatus(b, 'h1'), 1);
        const [old] = childSpis(h1);
        const router = await readStatus(b, 'router');
        const oldBlock = spiBlockOf(router, H1)!;
        expect(inBlock(old!.in, oldBlock)).toBe(true);
        const oldIkePort = await hostIkePort(b, 'h1');
        const cert = saveHostIdentity(b, 'h1');
        const deletesBefore = deletes();

        const { http, loop, wan, lan, withdrawStartedAt, withdrawnAt } = await withdrawUnderTraffic(
          b,
          FILE,
          cert.serial,
          'all',
        );

        // (a) charon was told; it runs no liveness check, so only the Delete can have done it.
        await waitUntil('charon receiving the Delete', () => deletes() > deletesBefore, {
          timeoutMs: 10_000,
          intervalMs: 100,
        });
        expect(c(await readStatus(b, 'h1'), 'ike.revocation-ike-sas-deleted')).toBe(
          c(h1, 'ike.revocation-ike-sas-deleted') + 1,
        );
        expect(c(await readStatus(b, 'router'), 'traffic.withdrawn-ike-drain')).toBeGreaterThan(
          c(router, 'traffic.withdrawn-ike-drain'),
        );

        // (c) IKE from a port of the new blocks, a new SA on the new SPI block, the traffic on it.
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
        const ikePort = await hostIkePort(b, 'h1');
        expect(ikePort).not.toBe(oldIkePort);
        const list = swan.swanctl('--list-sas');
        expect(list).toMatch(new RegExp(`out\\s+${hex8(fresh!.in)},`));
        expect(list).not.toContain(hex8(old!.in));
        await waitForTrafficOnNewSa(b);

        // ESP to the withdrawn SPI, plain and in UDP to h1's new IKE port: dropped by SPI.
        const routerNow = await readStatus(b, 'router');
        await sendEspFromServer(b, 'esp', old!.in, { mark: 0x2a });
        await sendEspFromServer(b, 'udp', old!.in, { port: ikePort, mark: 0x2a });
        await waitUntil(
          'the router counting spi-withdrawn',
          async () =>
            c(await readStatus(b, 'router'), 'drop.spi-withdrawn') >= c(routerNow, 'drop.spi-withdrawn') + 2,
          { timeoutMs: 10_000, intervalMs: 100 },
        );
        await loop.stop();
        await wan.stop();
        await lan.stop();
        await http.stop();

        // (a) on the wire: after the withdrawal only IKE left from the old port (to 4500, marked).
        expectOnlyIkeFromOldPort(wan.file, oldIkePort, { startedAt: withdrawStartedAt, doneAt: withdrawnAt });
        // (b)
        expectWithdrawnSaSilent(
          { wan: wan.file, lan: lan.file },
          { old: old!, fresh: fresh! },
          oldBlock,
          withdrawnAt,
          2,
        );
      } catch (e) {
        const log = swan?.log() ?? '';
        throw new Error(
          `${(e as Error).message}\n--- charon\n${log.split('\n').slice(-30).join('\n')}\n${daemonLogs(b, 30)}`,
        );
      }
    }, 150_000);
  },
);
