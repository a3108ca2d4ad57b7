/**
 * strongSwan as the server on the testbed, against a real `distnat host --ike`:
 *
 *   dn-router   distnat router, the local CA (CSR on 10.0.0.7:7033, CRL on 203.0.113.1:7033)
 *   dn-h1       distnat host --ike, initiates to the server; IKE on a leased UDP port of 198.51.100.30
 *   dn-server   charon 5.9.8 with kernel-libipsec on 203.0.113.3:500/4500, certificate from the root
 *
 * charon trusts only the root: h1's certificate comes from the router's
 * local CA, which h1 sends along in a CERT payload. Both directions of
 * initiation are used (h1 to 203.0.113.3:500; charon from 4500 to
 * 198.51.100.30:<h1's IKE port>). Then the router withdraws h1's SPI block,
 * the server fetches the CRL from the router's WAN address and loads it into
 * charon, and a new IKE_AUTH with h1's old certificate fails at charon; h1
 * has deleted the SAs it authenticated with that certificate.
 *
 * kernel-libipsec in dn-server. There is no xfrm in this kernel, so charon
 * does ESP in user space through a TUN device, ipsec0: tunnel mode and ESP
 * in UDP only (encap = yes makes charon fake a NAT; h1 follows it to 4500
 * from its own IKE port, the only port it has). The child SA runs between
 * the IKE endpoints themselves (203.0.113.3 === 198.51.100.30, h1's side
 * narrowed to its leased ports), and that collides with libipsec's routing
 * three times over:
 *
 * 1. libipsec refuses to route a remote selector that holds the IKE peer
 *    ("can't install route ... conflicts with IKE traffic", the child SA
 *    fails with TS_UNACCEPTABLE) unless plugins.kernel-libipsec.allow_peer_ts.
 * 2. The route it then installs, 198.51.100.30 dev ipsec0 in table 220, is
 *    consulted for all traffic ("from all lookup 220"), so IKE and the
 *    ESP-in-UDP that libipsec itself sends to h1 would go back into ipsec0.
 *    charon marks what its sockets send (socket-default fwmark = 0x2a; ESP
 *    in UDP leaves through the same socket) and kernel-netlink's rule skips
 *    marked packets (fwmark = !0x2a: "not from all fwmark 0x2a lookup 220").
 *    Everything else to the shared address, the server's replies included,
 *    goes into ipsec0. This is startCharon's routes: 'fwmark'.
 * 3. Routing only TCP into ipsec0 by hand (install_routes = no, then
 *    "ip rule add to 198.51.100.30 ipproto tcp lookup 220" and a route in
 *    220) does not work with kernel-libipsec: kernel-netlink still adds its
 *    catch-all rule for table 220, which sends IKE into the hand-made route;
 *    and with that rule gone (routing_table = 0), libipsec still installs
 *    its own route for the child SA, "198.51.100.30 dev ipsec0 src
 *    203.0.113.3", now in the main table, replacing the route via the
 *    router: the IKE_AUTH response never leaves. install_routes does not
 *    govern libipsec's routes; the mark is the way.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ipv4Of, pseudoRandomBytes, readPcapng, readStatus, sha256, sha256File } from '../helpers/distnat.ts';
import { HAVE_CHARON, startCharon } from '../helpers/charon.ts';
import type { Charon } from '../helpers/charon.ts';
import {
  CRL_URL,
  hostIkePort,
  initiateOnce,
  issueServerIdentity,
  saveHostIdentity,
  startIkeHost,
  startIkeRouter,
  tableRows,
  testbedPki,
  waitForChildSas,
  withdraw,
} from '../helpers/ike.ts';
import { describe as describeResult, waitUntil } from '../helpers/process.ts';
import type { Background } from '../helpers/process.ts';
import type { HttpServer } from '../helpers/servers.ts';
import { TOPOLOGY, useTestbed } from '../helpers/testbed.ts';

const bed = useTestbed({ daemons: false });
const SERVER = TOPOLOGY.server.wan;
const SHARED = TOPOLOGY.shared;
const FILE = pseudoRandomBytes(1_000_000);

let swan: Charon | undefined;
let h1Proc: Background | undefined;
let http: HttpServer | undefined;

// Registered after useTestbed's hooks, so it runs before the testbed goes down; also when a test failed.
afterAll(async () => {
  await swan?.stop();
}, 20_000);

/** One connection of charon's with h1: tunnel-mode ESP in UDP between the IKE addresses. */
function connection(name: string, ports: string): string {
  return `  ${name} {
    version = 2
    local_addrs = ${SERVER}
    remote_addrs = ${SHARED}
${ports}    encap = yes
    proposals = aes128gcm16-prfsha256-x25519, aes256-sha256-modp2048
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
        esp_proposals = aes128gcm16, aes256-sha256
        local_ts = dynamic
        remote_ts = dynamic
        start_action = none
      }
    }
  }
`;
}

function swanctlConf(h1IkePort?: number): string {
  let conf = 'connections {\n' + connection('from-h1', '');
  // charon starting: from 4500 straight to h1's IKE port, so that it does not float to h1's port 4500.
  if (h1IkePort !== undefined)
    conf += connection('to-h1', `    local_port = 4500\n    remote_port = ${h1IkePort}\n`);
  return conf + '}\n';
}

const tail = (text: string, n: number): string => text.split('\n').slice(-n).join('\n');

/** charon's and h1's last words, for failure messages. */
function logs(): string {
  const h1 = (h1Proc?.stdout() ?? '') + (h1Proc?.stderr() ?? '');
  return `--- charon\n${tail(swan?.log() ?? '', 40)}\n--- h1\n${tail(h1, 20)}`;
}

/** Runs `body`; a failure carries charon's and h1's logs. */
async function withLogs<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${logs()}`);
  }
}

/** ESP-in-UDP, IKE on 4500 and clear HTTP in a WAN capture. */
function wanCounts(file: string, httpPort: number): { espInUdp: number; ike4500: number; clearHttp: number } {
  let espInUdp = 0;
  let ike4500 = 0;
  let clearHttp = 0;
  for (const frame of readPcapng(file)) {
    const ip = ipv4Of(frame);
    if (ip === undefined) continue;
    const hl = (ip[0]! & 0x0f) * 4;
    if ((ip.readUInt16BE(6) & 0x1fff) !== 0 || ip.length < hl + 12) continue; // later fragments
    const sport = ip.readUInt16BE(hl);
    const dport = ip.readUInt16BE(hl + 2);
    if (ip[9] === 17 && (sport === 4500 || dport === 4500)) {
      // RFC 3948: a zero non-ESP marker is IKE, anything else is an SPI.
      if (ip.readUInt32BE(hl + 8) === 0) ike4500++;
      else espInUdp++;
    }
    if (ip[9] === 6 && (sport === httpPort || dport === httpPort)) clearHttp++;
  }
  return { espInUdp, ike4500, clearHttp };
}

/** curl from h1 to the server's HTTP server, through the SA; checks the bytes and what the WAN carried. */
async function curlThroughSa(): Promise<void> {
  const b = bed();
  http ??= await b.httpServer('server', { files: { 'file.bin': FILE } });
  const wan = await b.capture('router', TOPOLOGY.wanIf, { filter: `host ${SERVER}` });
  const before = await readStatus(b, 'h1');
  const file = join(b.scratchDir, `h1-${Date.now()}.bin`);
  try {
    const r = await b.exec(
      'h1',
      ['curl', '-sS', '--max-time', '20', '-o', file, http.url(SERVER, 'file.bin')],
      { timeoutMs: 30_000 },
    );
    expect(r.code, `curl on h1: ${r.stderr}`).toBe(0);
    expect(await sha256File(file)).toBe(sha256(FILE));
  } finally {
    await wan.stop();
  }
  const s = await readStatus(b, 'h1');
  const grew = (k: string): number => (s.counters[k] ?? 0) - (before.counters[k] ?? 0);
  expect(grew('ipsec.inbound.accepted')).toBeGreaterThan(300);
  expect(grew('ipsec.outbound.protected')).toBeGreaterThan(5);
  for (const bad of ['no-sa', 'replay', 'auth-failed', 'policy-mismatch'])
    expect(grew(`ipsec.inbound.${bad}`), bad).toBe(0);
  const seen = wanCounts(wan.file, http.port);
  expect(seen.espInUdp).toBeGreaterThan(600);
  expect(seen.clearHttp).toBe(0);
}

/** charon's IKE SAs by connection name, from `swanctl --list-sas`. */
function charonSas(): { name: string; state: string; remote: string }[] {
  const out = swan!.swanctl('--list-sas');
  return [
    ...out.matchAll(/^(\S+): #\d+, (\w+), IKEv2[^\n]*\n\s+local[^\n]*\n\s+remote\s+'[^']*' @ (\S+)/gm),
  ].map((m) => ({ name: m[1]!, state: m[2]!, remote: m[3]! }));
}

describe.skipIf(!HAVE_CHARON)(
  'strongSwan charon as the server on the testbed, distnat host --ike on h1',
  () => {
    it('h1 initiates to charon, which trusts only the root and builds the chain h1 sends', async () => {
      const b = bed();
      await withLogs(async () => {
        await startIkeRouter(b);
        const identity = await issueServerIdentity(b);
        const dir = join(b.scratchDir, 'swan');
        mkdirSync(dir, { recursive: true });
        swan = await startCharon(b.ns('server'), {
          dir,
          routes: 'fwmark',
          crl: true,
          ikeLogLevel: 2,
          cfgLogLevel: 2,
        });
        swan.writeCredential('x509', 'server.pem', readFileSync(identity.cert, 'utf8'));
        swan.writeCredential('private', 'server.key', readFileSync(identity.key, 'utf8'));
        swan.writeCredential('x509ca', 'root.pem', readFileSync(testbedPki(b).root, 'utf8'));
        swan.writeSwanctlConf(swanctlConf());
        swan.loadAll();

        h1Proc = await startIkeHost(b, 'h1', { peers: [{ address: SERVER, initiate: true }] });
        const h1 = await waitForChildSas('h1 with a child SA', () => readStatus(b, 'h1'), 1);
        expect(tableRows(h1, 'IKE SAs').map((r) => r[1])).toEqual(['initiator']);
        const port = await hostIkePort(b, 'h1');
        expect(charonSas()).toEqual([
          { name: 'from-h1', state: 'ESTABLISHED', remote: `${SHARED}[${port}]` },
        ]);
        const list = swan.swanctl('--list-sas');
        expect(list).toContain('INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-128');
        // h1's side narrowed to its leased ports, less the IKE port for UDP.
        expect(list).toMatch(
          /remote 198\.51\.100\.30\/32\[tcp\/\d+-\d+\] 198\.51\.100\.30\/32\[udp\/\d+-\d+\]/,
        );
        // The inbound SPI h1 chose, from its leased block, is charon's outbound SPI.
        const spiIn = Number(tableRows(h1, 'Child SAs (ESP)')[0]![0]);
        expect(list).toMatch(new RegExp(`out\\s+${spiIn.toString(16).padStart(8, '0')},`));

        const log = swan.log();
        expect(log).toMatch(
          /using certificate "O=distnat, OU=198\.51\.100\.30, CN=198\.51\.100\.30 ports \d+-\d+"/,
        );
        expect(log).toContain(
          `using untrusted intermediate certificate "O=distnat, OU=${SHARED}, CN=distnat local CA ${SHARED}"`,
        );
        expect(log).toContain('using trusted ca certificate "O=distnat, CN=distnat root CA"');
        expect(log).toContain('reached self-signed root ca with a path length of 1');
      });
    }, 60_000);

    it('curl from h1 through the child SA: intact, ESP in UDP on the router WAN, no clear HTTP', async () => {
      await withLogs(curlThroughSa);
    }, 60_000);

    it('charon initiates to h1 at 198.51.100.30:<its IKE port>, and traffic flows through that SA too', async () => {
      const b = bed();
      await withLogs(async () => {
        const port = await hostIkePort(b, 'h1');
        swan!.writeSwanctlConf(swanctlConf(port));
        swan!.swanctl('--load-conns', '--file', join(swan!.dir, 'swanctl.conf'));
        const out = swan!.swanctl('--initiate', '--child', 'to-h1', '--timeout', '20');
        expect(out).toContain('initiate completed successfully');
        expect(charonSas()).toContainEqual({
          name: 'to-h1',
          state: 'ESTABLISHED',
          remote: `${SHARED}[${port}]`,
        });
        const h1 = await waitForChildSas('h1 with two child SAs', () => readStatus(b, 'h1'), 2);
        expect(
          tableRows(h1, 'IKE SAs')
            .map((r) => r[1])
            .sort(),
        ).toEqual(['initiator', 'responder']);

        // Both SAs cover the same selectors; libipsec seals with the newest policy, the one charon started.
        const before = swan!.swanctl('--list-sas', '--ike', 'to-h1');
        await curlThroughSa();
        const after = swan!.swanctl('--list-sas', '--ike', 'to-h1');
        const bytes = (text: string, dir: 'in' | 'out'): number =>
          Number(new RegExp(`${dir}\\s+[0-9a-f]{8},\\s+(\\d+) bytes`).exec(text)?.[1] ?? Number.NaN);
        expect(bytes(after, 'out') - bytes(before, 'out'), after).toBeGreaterThan(FILE.length);
        expect(bytes(after, 'in') - bytes(before, 'in'), after).toBeGreaterThan(0);
      });
    }, 60_000);

    it('after distnat withdraw of h1 SPI block, charon with the CRL from the router refuses the old certificate', async () => {
      const b = bed();
      await withLogs(async () => {
        const old = saveHostIdentity(b, 'h1');
        expect(await withdraw(b, TOPOLOGY.h1.lan, 'spi')).toContain(old.serial);
        // h1 deletes every SA resting on the revoked certificate, the one charon started included,
        // and comes back with its new one (docs/ike.md, "Revocation reaches the SAs that are up").
        await waitUntil(
          'h1 back at charon with its new certificate, and to-h1 gone',
          () => {
            const sas = charonSas();
            return (
              !sas.some((s) => s.name === 'to-h1') &&
              sas.some((s) => s.name === 'from-h1' && s.state === 'ESTABLISHED')
            );
          },
          { timeoutMs: 15_000, intervalMs: 200 },
        );

        // The server fetches the CRL from the router's WAN address and hands it to charon.
        const crlFile = join(swan!.dir, 'x509crl', 'local-ca.crl');
        const fetched = await b.exec('server', [
          'curl',
          '-sS',
          '--fail',
          '--max-time',
          '10',
          '-o',
          crlFile,
          CRL_URL,
        ]);
        expect(fetched.code, describeResult(fetched)).toBe(0);
        expect(swan!.loadCreds()).toMatch(/loaded certificate from '[^']*\/x509crl\/local-ca\.crl'/);
        // charon would check the old certificate's status on the copy it cached from h1's new SA
        // (same subject, same key), which is good: forget the cached ones.
        swan!.swanctl('--flush-certs');
        swan!.clearLog();

        // The old certificate, from h1's shared address (port 0: the agent maps it into its block).
        const result = await initiateOnce(b, 'h1', { ...old, remote: { address: SERVER, port: 500 } });
        expect(result.ok, result.output).toBe(false);
        expect(result.reason).toMatch(/AUTHENTICATION_FAILED/);
        const log = swan!.log();
        expect(log).toMatch(/certificate was revoked on .*, reason: /);
        expect(log).toContain('N(AUTH_FAILED)');
      });
    }, 60_000);
  },
);
