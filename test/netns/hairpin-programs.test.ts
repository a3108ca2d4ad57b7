/**
 * Hairpin for unmodified programs (docs/host.md, "Hairpin"): `curl` on h1
 * fetches from an HTTP server on h2 at http://198.51.100.30:<a port of h2's
 * block>/, through the router, with h1 translating ports and again with h1
 * in native mode. h2 runs in native mode, where a server may listen on a
 * leased port (translate mode passes inbound only to mapped flows).
 *
 * Without the agent's policy routing h1's own kernel delivers the SYN
 * locally, as the first case shows with --no-hairpin: nothing listens there
 * and curl is refused, the router sees no hairpin. Stopping the agent must
 * leave `ip rule` as it found it.
 *
 * On both data paths in the same namespaces, router and agents on the same
 * one: the default, where the router's eBPF program sees every hairpinned
 * segment and leaves it to the TUN path (`fastpath.pass.lan.hairpin`), then
 * `datapath: tun`, with no fast-path counter.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DataPath, UdpEcho } from '../helpers/distnat.ts';
import {
  DATA_PATHS,
  fastPathCounters,
  startHostAgent,
  startUdpEcho,
  udpExchange,
} from '../helpers/distnat.ts';
import type { Background } from '../helpers/process.ts';
import { ROOT, TOPOLOGY, useTestbed } from '../helpers/testbed.ts';

const bed = useTestbed({ daemons: false });
const DISTNAT = join(ROOT, 'bin', 'distnat');
const SHARED = TOPOLOGY.shared;
const BIG = Buffer.alloc(2_000_000);
for (let i = 0; i < BIG.length; i++) BIG[i] = (i * 2654435761) >>> 24;
const BIG_SHA = createHash('sha256').update(BIG).digest('hex');
const HELLO = 'hello from h2, through the shared address\n';

type HostNode = 'h1' | 'h2';

interface Status {
  summary: Record<string, string | number>;
  tables: { title: string; rows: (string | number)[][] }[];
  counters: Record<string, number>;
}

/** The data path the daemons of the current describe run on: each keeps its own state and control socket. */
let datapath: DataPath = 'ebpf';
const dirOf = (node: 'router' | HostNode, kind: 'state' | 'run'): string =>
  join(bed().scratchDir, `${node}-${kind}-${datapath}`);
const runDir = (node: 'router' | HostNode): string => dirOf(node, 'run');

async function status(node: 'router' | HostNode): Promise<Status> {
  const r = await bed().exec(node, [
    DISTNAT,
    'status',
    node === 'router' ? 'router' : 'host',
    '--json',
    '--run-dir',
    runDir(node),
  ]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Status;
}

const blockOf = (s: Status): [number, number] => {
  const [lo, hi] = String(s.tables[0]!.rows[0]![1]).split('-').map(Number);
  return [lo!, hi!];
};

const startAgent = (node: HostNode, extra: string[]): Promise<Background> =>
  startHostAgent(bed(), node, { stateDir: dirOf(node, 'state'), runDir: runDir(node) }, [
    '--datapath',
    datapath,
    ...extra,
  ]);

/** `ip rule` and the hairpin table of a node, as text. */
async function routing(node: HostNode): Promise<{ rules: string; table: string }> {
  const rules = await bed().exec(node, ['ip', '-4', 'rule', 'show']);
  const table = await bed().exec(node, ['ip', '-4', 'route', 'show', 'table', '7032']);
  // An empty table does not exist until a route is put in it: "FIB table does not exist".
  return { rules: rules.stdout.trim(), table: table.code === 0 ? table.stdout.trim() : '' };
}

const routerHairpins = async (): Promise<number> =>
  (await status('router')).counters['traffic.hairpin-packets'] ?? 0;

/** Hairpinned packets the router's eBPF program left to the TUN path (NaN without a fast path). */
const fastPassedHairpins = async (): Promise<number> =>
  (await status('router')).counters['fastpath.pass.lan.hairpin'] ?? NaN;

interface Fetch {
  code: number | null;
  stderr: string;
  body: Buffer;
  localPort: number;
}

async function curl(node: HostNode, url: string): Promise<Fetch> {
  const file = join(bed().scratchDir, `${node}-${Date.now()}.out`);
  const r = await bed().exec(
    node,
    ['curl', '-sS', '--max-time', '20', '-w', '%{local_port}', '-o', file, url],
    { timeoutMs: 30_000 },
  );
  let body = Buffer.alloc(0);
  try {
    body = readFileSync(file);
  } catch {
    // nothing written: curl failed
  }
  return { code: r.code, stderr: r.stderr, body, localPort: Number(r.stdout.trim()) };
}

describe.for(DATA_PATHS)(
  'hairpin: curl on h1 to a server on h2 through the shared address, datapath: %s',
  (path) => {
    let router: Background;
    let h2: Background;
    let h1: Background | undefined;
    let server: Background;
    let serverPort = 0;
    let echo: UdpEcho;
    let pristine: { rules: string; table: string };

    beforeAll(async () => {
      const b = bed();
      datapath = path;
      pristine = await routing('h1');
      router = b.spawn('router', [
        DISTNAT,
        'router',
        '--shared-address',
        SHARED,
        '--lan-address',
        TOPOLOGY.router.lan,
        '--datapath',
        datapath,
        '--state-dir',
        dirOf('router', 'state'),
        '--run-dir',
        runDir('router'),
        '--fresh',
      ]);
      await router.waitForOutput(/router started/, { timeoutMs: 30_000 });
      h2 = await startAgent('h2', ['--mode', 'native']);
      await h2.waitForOutput(/hairpin: other hosts/, { timeoutMs: 10_000 });
      // The server listens on the last port of h2's block: a port the router demultiplexes to h2.
      serverPort = blockOf(await status('h2'))[1];
      const http = await b.httpServer('h2', {
        port: serverPort,
        files: { 'hello.txt': HELLO, 'big.bin': BIG },
      });
      server = http;
      // And a UDP echo on the port below it.
      echo = await startUdpEcho(b, 'h2', serverPort - 1);
    });

    afterAll(async () => {
      await h1?.stop();
      await h2?.stop();
      await router?.stop();
      await Promise.all([server?.stop(), echo?.stop()]);
    });

    it('without the rules (--no-hairpin) h1 delivers the SYN to itself: refused, no hairpin at the router', async () => {
      h1 = await startAgent('h1', ['--no-hairpin']);
      expect((await status('h1')).summary['hairpin']).toBe('off (hairpin.enabled: false)');
      expect(await routing('h1')).toEqual(pristine);
      const before = await routerHairpins();
      const r = await curl('h1', `http://${SHARED}:${serverPort}/hello.txt`);
      expect(r.code, r.stderr).toBe(7); // could not connect: nothing listens on h1's own port
      const udp = await udpExchange(bed(), 'h1', {
        dst: SHARED,
        port: echo.port,
        tag: 'h1-off',
        flows: 1,
        count: 1,
      });
      expect(udp.answered).toBe(0);
      expect(echo.seen().filter((d) => d.data.startsWith('h1-off '))).toEqual([]);
      expect(await routerHairpins()).toBe(before);
      await h1.stop();
      h1 = undefined;
    });

    for (const mode of ['translate', 'native'] as const) {
      describe(`h1 in ${mode} mode`, () => {
        let h1Block: [number, number];

        it('the agent routes other hosts’ ports of the shared address into the tunnel, its own here', async () => {
          h1 = await startAgent('h1', ['--mode', mode]);
          await h1.waitForOutput(/hairpin: other hosts/, { timeoutMs: 10_000 });
          const s = await status('h1');
          h1Block = blockOf(s);
          const [lo, hi] = h1Block;
          expect(String(s.summary['hairpin'])).toContain(`own ports ${lo}-${hi} here`);
          const { rules, table } = await routing('h1');
          expect(rules.split('\n').slice(0, 4)).toEqual([
            `0:\tfrom all to ${SHARED} iif lo dport ${lo}-${hi} lookup local proto 100`,
            `0:\tfrom all to ${SHARED} iif lo ipproto tcp lookup 7032 proto 100`,
            `0:\tfrom all to ${SHARED} iif lo ipproto udp lookup 7032 proto 100`,
            '0:\tfrom all lookup local proto 100',
          ]);
          expect(table).toBe(`${SHARED} dev ${TOPOLOGY.tun} proto 100 scope link src ${SHARED}`);
          const viaTunnel = await bed().exec('h1', [
            'ip',
            'route',
            'get',
            SHARED,
            'ipproto',
            'tcp',
            'dport',
            String(serverPort),
          ]);
          expect(viaTunnel.stdout).toContain(`dev ${TOPOLOGY.tun} table 7032`);
          const own = await bed().exec('h1', [
            'ip',
            'route',
            'get',
            SHARED,
            'ipproto',
            'tcp',
            'dport',
            String(lo),
          ]);
          expect(own.stdout).toMatch(/^local /);
        });

        it('curl fetches from h2 through the router, contents intact', async () => {
          const before = await routerHairpins();
          const fastBefore = await fastPassedHairpins();
          const hello = await curl('h1', `http://${SHARED}:${serverPort}/hello.txt`);
          expect(hello.code, hello.stderr).toBe(0);
          expect(hello.body.toString()).toBe(HELLO);
          const big = await curl('h1', `http://${SHARED}:${serverPort}/big.bin`);
          expect(big.code, big.stderr).toBe(0);
          expect(createHash('sha256').update(big.body).digest('hex')).toBe(BIG_SHA);
          // Every segment both ways turned around by the router: 2 MB is well over a thousand.
          const hairpins = (await routerHairpins()) - before;
          expect(hairpins).toBeGreaterThan(1000);
          // On ebpf the router's program saw each of them and left it to the TUN path; on tun there is no program.
          if (path === 'ebpf') expect((await fastPassedHairpins()) - fastBefore).toBe(hairpins);
          else
            for (const node of ['router', 'h1'] as const)
              expect(fastPathCounters(await status(node)), node).toEqual({});
          // h2's server saw the shared address as the client.
          expect(server.stderr()).toMatch(
            new RegExp(`^${SHARED.replaceAll('.', '\\.')} - - .*"GET /big.bin HTTP/1.1" 200`, 'm'),
          );

          const s = await status('h1');
          const [lo, hi] = h1Block;
          if (mode === 'translate') {
            // curl's port went through FIG. 11 to one of h1's leased ports.
            const row = s.tables[1]!.rows.find((r) => r[0] === big.localPort && r[2] === '6 (TCP)');
            expect(row, `no translation row for curl's port ${big.localPort}`).toBeDefined();
            expect(Number(row![1])).toBeGreaterThanOrEqual(lo);
            expect(Number(row![1])).toBeLessThanOrEqual(hi);
          } else {
            expect(big.localPort).toBeGreaterThanOrEqual(lo);
            expect(big.localPort).toBeLessThanOrEqual(hi);
          }
          expect(s.counters['drop.inbound.no-mapping']).toBe(0);
        });

        it('a UDP program on h1 gets its answers from h2 the same way', async () => {
          const tag = `h1-${mode}`;
          const r = await udpExchange(bed(), 'h1', { dst: SHARED, port: echo.port, tag, flows: 2, count: 3 });
          expect(r.answered).toBe(6);
          const seen = echo.seen().filter((d) => d.data.startsWith(`${tag} `));
          expect(seen.length).toBeGreaterThanOrEqual(6);
          // h2 saw the shared address and one of h1's leased ports (translated, or the kernel's own in native mode).
          const [lo, hi] = h1Block;
          for (const d of seen) {
            expect(d.src).toBe(SHARED);
            expect(d.port).toBeGreaterThanOrEqual(lo);
            expect(d.port).toBeLessThanOrEqual(hi);
          }
        });

        it('stopping the agent removes its rules and route', async () => {
          const exit = await h1!.stop();
          h1 = undefined;
          expect(exit.code).toBe(0);
          expect(await routing('h1')).toEqual(pristine);
        });
      });
    }
  },
);
