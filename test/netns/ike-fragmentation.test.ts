/**
 * IKE fragmentation (RFC 7383) against strongSwan's charon on the testbed,
 * on a path that drops IP fragments:
 *
 *   dn-h1      distnat host --ike, RSA-3072 key, fragmentSize 576
 *   dn-router  distnat router; its WAN link has an MTU of 600
 *   dn-server  charon 5.9.8, fragment_size 576; nftables on its WAN device
 *              drops every IP fragment, in and out (netdev ingress/egress)
 *
 * h1's IKE_AUTH carries its RSA-3072 certificate and the local CA's, about
 * 2.5 KB: it can cross only in IKE fragments. First the control: h1 without
 * fragmentation never gets its SA up, and the nftables counter shows the
 * IP fragments it died of. Then h1 with fragmentation initiates to charon
 * (`fragmentation = yes`) and charon initiates to h1 (`fragmentation =
 * force`); both come up, charon logs the fragments it reassembled and sent,
 * h1 counts them, and no IP fragment was dropped on the way.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readStatus } from '../helpers/distnat.ts';
import { HAVE_CHARON, startCharon, type Charon } from '../helpers/charon.ts';
import {
  hostIkePort,
  issueServerIdentity,
  startIkeHost,
  startIkeRouter,
  tableRows,
  testbedPki,
  waitForChildSas,
} from '../helpers/ike.ts';
import type { Background } from '../helpers/process.ts';
import { TOPOLOGY, useTestbed } from '../helpers/testbed.ts';

const bed = useTestbed({ daemons: false });
const SERVER = TOPOLOGY.server.wan;
const SHARED = TOPOLOGY.shared;
const WAN_MTU = 600;
const DATAGRAM = 576;

let swan: Charon | undefined;
let h1: Background | undefined;

afterAll(async () => {
  await swan?.stop();
}, 20_000);

function connection(name: string, fragmentation: 'yes' | 'force', ports: string): string {
  return `  ${name} {
    version = 2
    local_addrs = ${SERVER}
    remote_addrs = ${SHARED}
${ports}    encap = yes
    fragmentation = ${fragmentation}
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
      ${name} {
        mode = tunnel
        esp_proposals = aes128gcm16
        local_ts = dynamic
        remote_ts = dynamic
        start_action = none
      }
    }
  }
`;
}

const swanctlConf = (h1IkePort?: number): string =>
  'connections {\n' +
  connection('from-h1', 'yes', '') +
  (h1IkePort === undefined
    ? ''
    : connection('to-h1', 'force', `    local_port = 4500\n    remote_port = ${h1IkePort}\n`)) +
  '}\n';

/** IP fragments nftables dropped on the server's WAN device so far, in and out. */
async function fragmentsDropped(): Promise<number> {
  const r = await bed().exec('server', ['nft', 'list', 'table', 'netdev', 'dxfrag']);
  return [...r.stdout.matchAll(/counter packets (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
}

const tail = (text: string, n: number): string => text.split('\n').slice(-n).join('\n');

async function withLogs<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (e) {
    const h = (h1?.stdout() ?? '') + (h1?.stderr() ?? '');
    throw new Error(
      `${(e as Error).message}\n--- charon\n${tail(swan?.log() ?? '', 40)}\n--- h1\n${tail(h, 20)}`,
    );
  }
}

const ikeCounters = async (): Promise<Record<string, number>> => {
  const s = await readStatus(bed(), 'h1');
  return Object.fromEntries(Object.entries(s.counters).filter(([k]) => k.startsWith('ike.')));
};

describe.skipIf(!HAVE_CHARON)('IKE fragmentation with charon across a path that drops IP fragments', () => {
  it('the path: WAN MTU 600, IP fragments dropped in dn-server; charon with fragment_size 576', async () => {
    const b = bed();
    for (const node of ['router', 'server'] as const) {
      const r = await b.exec(node, ['ip', 'link', 'set', 'dev', TOPOLOGY.wanIf, 'mtu', String(WAN_MTU)]);
      expect(r.code, r.stderr).toBe(0);
    }
    const nft = await b.sh(
      'server',
      `nft -f - <<'EOF'
table netdev dxfrag {
  chain in { type filter hook ingress device ${TOPOLOGY.wanIf} priority -500; ip frag-off & 0x3fff != 0 counter drop; }
  chain out { type filter hook egress device ${TOPOLOGY.wanIf} priority -500; ip frag-off & 0x3fff != 0 counter drop; }
}
EOF`,
    );
    expect(nft.code, nft.stderr).toBe(0);
    // The filter works: a 1000-byte ping leaves dn-server in IP fragments, which are dropped.
    expect(await fragmentsDropped()).toBe(0);
    const big = await b.exec('server', ['ping', '-c', '1', '-W', '1', '-s', '1000', TOPOLOGY.router.wan]);
    expect(big.code).not.toBe(0);
    expect(await fragmentsDropped()).toBeGreaterThanOrEqual(2);

    await startIkeRouter(b);
    const identity = await issueServerIdentity(b);
    const dir = join(b.scratchDir, 'swan');
    mkdirSync(dir, { recursive: true });
    swan = await startCharon(b.ns('server'), {
      dir,
      routes: 'fwmark',
      ikeLogLevel: 2,
      fragmentSize: DATAGRAM,
    });
    swan.writeCredential('x509', 'server.pem', readFileSync(identity.cert, 'utf8'));
    swan.writeCredential('private', 'server.key', readFileSync(identity.key, 'utf8'));
    swan.writeCredential('x509ca', 'root.pem', readFileSync(testbedPki(b).root, 'utf8'));
    swan.writeSwanctlConf(swanctlConf());
    swan.loadAll();
  }, 60_000);

  it('control: h1 without IKE fragmentation never gets its SA up; its IKE_AUTH dies in IP fragments', async () => {
    const b = bed();
    await withLogs(async () => {
      const dropped = await fragmentsDropped();
      h1 = await startIkeHost(b, 'h1', {
        peers: [{ address: SERVER, initiate: true }],
        keyType: 'rsa-3072',
        fragmentation: false,
      });
      await new Promise((r) => setTimeout(r, 8000));
      const s = await readStatus(b, 'h1');
      expect(tableRows(s, 'Child SAs (ESP)')).toEqual([]);
      expect(s.counters['ike.retransmit'] ?? 0).toBeGreaterThanOrEqual(1);
      expect(s.counters['ike.fragments-sent'] ?? 0).toBe(0);
      expect(await fragmentsDropped()).toBeGreaterThan(dropped);
      expect(swan!.log()).not.toMatch(/IKE_SA from-h1\[\d+\] established/);
      await h1.stop();
    });
  }, 60_000);

  it('h1 initiates with fragmentation to charon (fragmentation = yes): IKE_AUTH in fragments both ways', async () => {
    const b = bed();
    await withLogs(async () => {
      swan!.clearLog();
      const dropped = await fragmentsDropped();
      h1 = await startIkeHost(b, 'h1', {
        peers: [{ address: SERVER, initiate: true }],
        keyType: 'rsa-3072',
        fragmentSize: DATAGRAM,
      });
      const s = await waitForChildSas('h1 with a child SA', () => readStatus(b, 'h1'), 1, 30_000);
      expect(tableRows(s, 'IKE SAs').map((r) => r[1])).toEqual(['initiator']);
      const log = swan!.log();
      // charon put h1's IKE_AUTH together from fragments, and split its answer.
      expect(log).toMatch(/received fragment #1 of \d+, waiting for complete IKE message/);
      expect(log).toMatch(/reassembled fragmented IKE message \(\d+ bytes\)/);
      expect(log).toMatch(/splitting IKE message \(\d+ bytes\) into \d+ fragments/);
      expect(swan!.swanctl('--list-sas')).toContain('INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-128');
      const c = await ikeCounters();
      expect(c['ike.fragmented-messages-sent']).toBeGreaterThanOrEqual(1);
      expect(c['ike.fragmented-messages-received']).toBeGreaterThanOrEqual(1);
      expect(c['ike.fragment-bytes-held']).toBe(0);
      expect(await fragmentsDropped()).toBe(dropped);
    });
  }, 60_000);

  it('charon initiates to h1 with fragmentation = force: h1 reassembles charon IKE_AUTH and answers in fragments', async () => {
    const b = bed();
    await withLogs(async () => {
      const port = await hostIkePort(b, 'h1');
      swan!.writeSwanctlConf(swanctlConf(port));
      swan!.swanctl('--load-conns', '--file', join(swan!.dir, 'swanctl.conf'));
      swan!.clearLog();
      const before = await ikeCounters();
      const dropped = await fragmentsDropped();
      const out = swan!.swanctl('--initiate', '--child', 'to-h1', '--timeout', '30');
      expect(out).toContain('initiate completed successfully');
      const s = await waitForChildSas('h1 with two child SAs', () => readStatus(b, 'h1'), 2);
      expect(
        tableRows(s, 'IKE SAs')
          .map((r) => r[1])
          .sort(),
      ).toEqual(['initiator', 'responder']);
      const log = swan!.log();
      expect(log).toMatch(/splitting IKE message \(\d+ bytes\) into \d+ fragments/);
      expect(log).toMatch(/reassembled fragmented IKE message/);
      const after = await ikeCounters();
      const grew = (k: string): number => (after[k] ?? 0) - (before[k] ?? 0);
      expect(grew('ike.fragmented-messages-received')).toBeGreaterThanOrEqual(1);
      expect(grew('ike.fragmented-messages-sent')).toBeGreaterThanOrEqual(1);
      for (const bad of Object.keys(after).filter((k) => /fragment-(?!bytes)/.test(k)))
        expect(after[bad], bad).toBe(0);
      expect(await fragmentsDropped()).toBe(dropped);
    });
  }, 60_000);
});
