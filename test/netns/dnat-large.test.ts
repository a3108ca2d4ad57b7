/**
 * Large TCP transfers through the 20-byte tunnel header: 20 MB downloaded
 * (curl) and 20 MB uploaded (curl -T to a small PUT server that answers
 * with the SHA-256 of what it read) on both hosts, intact. Path MTU and MSS:
 * the hosts' TUN MTU of 1480 makes their stacks announce MSS 1440, the
 * agent clamps the server's 1460 in the SYN-ACK to 1440, and a capture on
 * the router's LAN that takes only tunnel frames over 1514 bytes, outer or
 * inner fragments, and TCP SYNs, holds the SYNs and nothing else.
 *
 * On both data paths in one testbed: first the default, where the eBPF
 * programs of the router and the agents carry part of the transfers, then
 * with all three restarted on `datapath: tun`, with no fast-path counter.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { DaemonStatus, HostNode } from '../helpers/distnat.ts';
import {
  DATA_PATHS,
  HOSTS,
  PYTHON,
  counter,
  dataPathOf,
  fastPathCounters,
  fastPathForwarded,
  pseudoRandomBytes,
  readStatus,
  restartDaemonsOn,
  sha256,
  sha256File,
  waitForLeases,
  writeScript,
} from '../helpers/distnat.ts';
import { describe as describeResult } from '../helpers/process.ts';
import type { HttpServer } from '../helpers/servers.ts';
import { waitForListen } from '../helpers/servers.ts';
import { TOPOLOGY, useTestbed } from '../helpers/testbed.ts';
import { writeFileSync } from 'node:fs';

const bed = useTestbed();
const SERVER = TOPOLOGY.server.wan;
const SIZE = 20 * 1024 * 1024;
const DATA = pseudoRandomBytes(SIZE, 0x5eed0007);
const DATA_SHA = sha256(DATA);
const PUT_PORT = 8081;

const PUT_SERVER = `
import hashlib, http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_PUT(self):
        left = int(self.headers['Content-Length'])
        h, n = hashlib.sha256(), 0
        while left > 0:
            chunk = self.rfile.read(min(1 << 16, left))
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
            left -= len(chunk)
        body = ('%s %d\\n' % (h.hexdigest(), n)).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, fmt, *args):
        sys.stderr.write('%s %s\\n' % (self.client_address[0], fmt % args))
http.server.ThreadingHTTPServer(('0.0.0.0', int(sys.argv[1])), Handler).serve_forever()
`;

const mbyte = (bytesPerS: number): string => `${(bytesPerS / 1e6).toFixed(1)} MB/s`;

let http: HttpServer;

beforeAll(async () => {
  const b = bed();
  const file = join(b.scratchDir, 'data.bin');
  writeFileSync(file, DATA);
  const put = b.spawn('server', [PYTHON, writeScript(b, 'put-server.py', PUT_SERVER), String(PUT_PORT)]);
  [http] = await Promise.all([
    b.httpServer('server', { bind: SERVER, files: { 'data.bin': DATA } }),
    waitForListen(b.ns('server'), PUT_PORT, put),
  ]);
});

describe.for(DATA_PATHS)('20 MB each way through the tunnel, datapath: %s', (datapath) => {
  let before: Record<'router' | HostNode, DaemonStatus>;

  beforeAll(async () => {
    const b = bed();
    if (datapath === 'tun') await restartDaemonsOn(b, 'tun');
    await waitForLeases(b);
    const [router, h1, h2] = await Promise.all([
      readStatus(b, 'router'),
      readStatus(b, 'h1'),
      readStatus(b, 'h2'),
    ]);
    before = { router, h1, h2 };
  }, 120_000);

  it('downloads and uploads 20 MB on h1 and h2 intact; no oversized or fragmented tunnel frame; MSS 1440', async () => {
    const b = bed();
    const lan = await b.capture('router', TOPOLOGY.lanIf, {
      // Outer and inner IHL are 5 (no options anywhere here): inner protocol at 29, inner TCP flags at 53.
      filter:
        'ip proto 4 and (greater 1515 or ip[6:2] & 0x3fff != 0 or ip[26:2] & 0x3fff != 0 or (ip[29] == 6 and ip[53] & 2 != 0))',
    });
    const download = async (node: HostNode) => {
      const out = join(b.scratchDir, `${node}-down.bin`);
      const r = await b.exec(
        node,
        [
          'curl',
          '-sS',
          '--max-time',
          '90',
          '-w',
          '%{speed_download}',
          '-o',
          out,
          http.url(SERVER, 'data.bin'),
        ],
        { timeoutMs: 100_000 },
      );
      expect(r.code, `${node}: ${describeResult(r)}`).toBe(0);
      return { sha: await sha256File(out), speed: Number(r.stdout) };
    };
    const upload = async (node: HostNode) => {
      const r = await b.exec(
        node,
        [
          'curl',
          '-sS',
          '--max-time',
          '90',
          '-H',
          'Expect:',
          '-T',
          join(b.scratchDir, 'data.bin'),
          '-w',
          ' %{speed_upload}',
          `http://${SERVER}:${PUT_PORT}/${node}.bin`,
        ],
        { timeoutMs: 100_000 },
      );
      expect(r.code, `${node}: ${describeResult(r)}`).toBe(0);
      const [sha, length, speed] = r.stdout.trim().split(/\s+/);
      return { sha, length: Number(length), speed: Number(speed) };
    };

    const downs = await Promise.all(HOSTS.map(download));
    const ups = await Promise.all(HOSTS.map(upload));
    for (const [i, node] of HOSTS.entries()) {
      expect(downs[i]!.sha, `${node} download`).toBe(DATA_SHA);
      expect(ups[i]!.length, `${node} upload length`).toBe(SIZE);
      expect(ups[i]!.sha, `${node} upload`).toBe(DATA_SHA);
      console.log(
        `${datapath}: 20 MB on ${node}, both hosts at once: download ${mbyte(downs[i]!.speed)}, upload ${mbyte(ups[i]!.speed)}`,
      );
    }

    // Four connections, each with a SYN and a SYN-ACK in the tunnel.
    await lan.stop({ packets: 8, timeoutMs: 15_000 });
    const rows = await lan.fields([
      'frame.len',
      'ip.flags.mf',
      'ip.frag_offset',
      'tcp.flags',
      'tcp.options.mss_val',
      'ip.src',
    ]);
    for (const [len, mf, offset, flags] of rows) {
      expect(Number(len)).toBeLessThanOrEqual(1514);
      expect(mf).toBe('0,0');
      expect(offset).toBe('0,0');
      expect(Number(flags) & 0x02, `only SYNs beyond that: ${rows.join(' | ')}`).toBe(0x02);
    }
    // The hosts' SYNs (ip.src: outer host, inner shared) announce 1440; the server's SYN-ACKs 1460 before the agent.
    const mss = (from: string): string[] =>
      rows.filter((r) => r[5]!.startsWith(`${from},`)).map((r) => r[4]!);
    expect(new Set([...mss(TOPOLOGY.h1.lan), ...mss(TOPOLOGY.h2.lan)])).toEqual(new Set(['1440']));
    expect(new Set(mss(TOPOLOGY.router.lan))).toEqual(new Set(['1460']));

    const [router, h1, h2] = await Promise.all([
      readStatus(b, 'router'),
      readStatus(b, 'h1'),
      readStatus(b, 'h2'),
    ]);
    const delta = (s: DaemonStatus, was: DaemonStatus, name: string): number =>
      counter(s, name) - counter(was, name);
    // Which path carried it: the programs of all three forwarded some of it, or none of them exists.
    for (const [node, s] of [
      ['router', router],
      ['h1', h1],
      ['h2', h2],
    ] as const) {
      if (datapath === 'ebpf') {
        expect(dataPathOf(s), node).toMatch(/^eBPF \(/);
        expect(fastPathForwarded(before[node], s), node).toBeGreaterThan(0);
      } else {
        expect(dataPathOf(s), node).toBe('TUN (datapath: tun)');
        expect(fastPathCounters(s), node).toEqual({});
      }
    }
    for (const name of ['drop.too-big', 'drop.tunnel-fragment', 'drop.spoofed-port', 'drop.no-owner'])
      expect(delta(router, before.router, name), name).toBe(0);
    for (const [node, s] of [
      ['h1', h1],
      ['h2', h2],
    ] as const) {
      expect(
        delta(s, before[node], 'packets.mss-clamped-inbound'),
        `${node}: SYN-ACKs clamped`,
      ).toBeGreaterThanOrEqual(2);
      for (const name of ['drop.outbound.too-big', 'packets.fragmented', 'packets.fragmentation-needed'])
        expect(delta(s, before[node], name), `${node} ${name}`).toBe(0);
    }
  });
});
