/**
 * The router killed with SIGKILL in the middle of things and started again
 * by `scripts/testbed up`: h1 pings and holds a TCP connection open, h2
 * streams UDP and opens new flows fast enough to need further port blocks
 * (a lease request is answered just before the kill, more are sent while
 * the router is gone). The router comes back with the same epoch and every
 * lease from its journal; at no sample do two hosts hold one port, every
 * block a host holds is the router's record of that host; the hosts never
 * notice (no new epoch, no lost block), and the ping, the UDP stream and the
 * TCP connection opened before the kill carry on.
 *
 * On both data paths in one testbed: first the default, where the restarted
 * router's eBPF programs take over the flows again, then with the router and
 * the agents on `datapath: tun` (the restart by `scripts/testbed up` keeps
 * the flag), with no fast-path counter.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Leases, PortBlock, UdpEcho } from '../helpers/distnat.ts';
import {
  DATA_PATHS,
  PYTHON,
  blockText,
  daemonLog,
  daemonLogs,
  daemonPid,
  dataPathOf,
  fastPathCounters,
  fastPathForwarded,
  hostPortBlocks,
  overlaps,
  readStatus,
  restartDaemonsOn,
  routerPortBlocks,
  startUdpEcho,
  waitForLeases,
  writeScript,
} from '../helpers/distnat.ts';
import type { Background } from '../helpers/process.ts';
import { describe as describeResult, sleep, waitUntil } from '../helpers/process.ts';
import { TESTBED_SCRIPT, TOPOLOGY, useTestbed } from '../helpers/testbed.ts';

const bed = useTestbed();
const SERVER = TOPOLOGY.server.wan;

const UDP_STREAM = `
import select, socket, sys, time
dst, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', 0))
print('local %d' % s.getsockname()[1], flush=True)
seq, due = 0, time.time()
while True:
    if time.time() >= due:
        s.sendto(('stream %d %.3f' % (seq, time.time())).encode(), (dst, port))
        seq, due = seq + 1, due + 0.1
    if select.select([s], [], [], max(0.0, due - time.time()))[0]:
        print('reply ' + s.recv(2048).decode(), flush=True)
`;

const TCP_ECHO = `
import socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(('0.0.0.0', int(sys.argv[1])))
srv.listen()
print('listening', flush=True)
def serve(c, peer):
    print('accepted %s %d' % peer, flush=True)
    while True:
        d = c.recv(4096)
        if not d:
            break
        c.sendall(d)
while True:
    c, peer = srv.accept()
    threading.Thread(target=serve, args=(c, peer), daemon=True).start()
`;

/** One TCP connection for the whole run: a line every 0.2 s, each echo awaited (TCP retransmits across the outage). */
const TCP_CLIENT = `
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
print('connected %d' % s.getsockname()[1], flush=True)
s.settimeout(90)
f = s.makefile('rb')
seq = 0
try:
    while True:
        s.sendall(('%d %.3f\\n' % (seq, time.time())).encode())
        line = f.readline()
        if not line:
            print('closed', flush=True)
            break
        print('echo ' + line.decode().strip(), flush=True)
        seq += 1
        time.sleep(0.2)
except Exception as e:
    print('error %r' % e, flush=True)
`;

/** New UDP flows, one every 60 ms, each from its own socket: enough to need more port blocks. */
const CHURN = `
import socket, sys, time
socks = []
for i in range(int(sys.argv[3])):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b'churn %d' % i, (sys.argv[1], int(sys.argv[2])))
    socks.append(s)
    time.sleep(0.06)
print('done', flush=True)
time.sleep(600)
`;

/** Lines "<word> <seq> <unix time>" as [seq, time in ms]. */
function stamped(out: string, word: string): [number, number][] {
  return [...out.matchAll(new RegExp(`^${word} (?:stream )?(\\d+) ([\\d.]+)$`, 'gm'))].map((m) => [
    Number(m[1]),
    Number(m[2]) * 1000,
  ]);
}

let echo: UdpEcho;

beforeAll(async () => {
  const b = bed();
  echo = await startUdpEcho(b, 'server', 7000);
  const tcp = b.spawn('server', [PYTHON, writeScript(b, 'tcp-echo.py', TCP_ECHO), '7001']);
  await tcp.waitForOutput(/^listening$/m, { timeoutMs: 15_000 });
});

describe.for(DATA_PATHS)(
  'router SIGKILL and restart while hosts lease and send, datapath: %s',
  (datapath) => {
    let leases: Leases;
    /** Where each daemon's log of this data path's run begins. */
    const logFrom = { router: 0, h1: 0, h2: 0 };
    const logOf = (node: keyof typeof logFrom): string => daemonLog(bed(), node).slice(logFrom[node]);

    beforeAll(async () => {
      const b = bed();
      if (datapath === 'tun') await restartDaemonsOn(b, 'tun');
      leases = await waitForLeases(b);
      for (const node of ['router', 'h1', 'h2'] as const) logFrom[node] = daemonLog(b, node).length;
    }, 120_000);

    it('comes back with epoch and leases; no port is ever held twice; ping, UDP and an open TCP connection carry on', async () => {
      const b = bed();
      const env = { ...process.env, PYTHONUNBUFFERED: '1' };
      const ping = b.spawn(
        'h1',
        [TESTBED_SCRIPT, '--prefix', b.prefix, 'ping', 'h1', SERVER, '-c', '100000', '-i', '0.1', '-W', '1'],
        { env },
      );
      const stream = b.spawn('h2', [
        PYTHON,
        writeScript(b, 'stream.py', UDP_STREAM),
        SERVER,
        String(echo.port),
      ]);
      const tcp = b.spawn('h1', [PYTHON, writeScript(b, 'tcp-client.py', TCP_CLIENT), SERVER, '7001']);
      const replies = (p: Background): number => (p.stdout().match(/: reply from/g) ?? []).length;
      await Promise.all([
        ping.waitForOutput(/: reply from/, { timeoutMs: 15_000 }),
        stream.waitForOutput(/^reply /m, { timeoutMs: 15_000 }),
        tcp.waitForOutput(/^echo /m, { timeoutMs: 15_000 }),
      ]);

      // Every sample of who holds what: the router's FIG. 8 and each host's own blocks.
      const samples: { when: string; router?: PortBlock[]; hosts: PortBlock[] }[] = [];
      const sample = async (when: string): Promise<void> => {
        const [router, h1, h2] = await Promise.all([
          readStatus(b, 'router').catch(() => undefined),
          readStatus(b, 'h1'),
          readStatus(b, 'h2'),
        ]);
        samples.push({
          when,
          ...(router === undefined ? {} : { router: routerPortBlocks(router) }),
          hosts: [...hostPortBlocks(h1), ...hostPortBlocks(h2)],
        });
      };
      const before = await readStatus(b, 'router');
      const epoch = before.summary['epoch'];
      const hostEpochs = await Promise.all([readStatus(b, 'h1'), readStatus(b, 'h2')]).then((s) =>
        s.map((x) => x.summary['epoch']),
      );

      // h2 opens flows until it holds a second block, then the router dies at once.
      const churn = b.spawn('h2', [
        PYTHON,
        writeScript(b, 'churn.py', CHURN),
        SERVER,
        String(echo.port),
        '90',
      ]);
      await waitUntil(
        'h2 to lease a second block',
        async () => {
          await sample('before the kill');
          return hostPortBlocks(await readStatus(b, 'h2')).length >= 2;
        },
        { timeoutMs: 30_000, intervalMs: 100 },
      );
      const rowsAtKill = routerPortBlocks(await readStatus(b, 'router'));
      console.log(`router rows at the kill: ${rowsAtKill.map(blockText).join(', ')}`);
      const pid = daemonPid(b, 'router');
      process.kill(pid, 'SIGKILL');
      const killedAt = Date.now();
      await waitUntil('the router process to be gone', () => {
        try {
          return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.startsWith('Z');
        } catch {
          return true;
        }
      });
      const atKill = { ping: replies(ping), stream: stamped(stream.stdout(), 'reply').length };
      // Hosts keep leasing (h2's churn goes on) while nobody answers.
      while (Date.now() - killedAt < 1500) {
        await sample('router down');
        await sleep(200);
      }

      const up = await b.script(['up']);
      expect(up.code, describeResult(up)).toBe(0);
      await waitUntil(
        'the restarted router to answer',
        async () => (await readStatus(b, 'router').catch(() => undefined)) !== undefined,
        { timeoutMs: 30_000, intervalMs: 200 },
      );
      const restartedAt = Date.now();
      expect(daemonPid(b, 'router')).not.toBe(pid);
      const after = await readStatus(b, 'router');
      expect(after.summary['epoch']).toBe(epoch);
      expect(after.summary['recovered']).toBe('yes');
      expect(logOf('router')).toMatch(/took over the lock of a router that is gone/);
      if (datapath === 'ebpf') expect(dataPathOf(after)).toMatch(/^eBPF \(/);
      else expect(dataPathOf(after)).toBe('TUN (datapath: tun)');
      // Every row at the moment of the kill, including the block granted just before it, is back.
      const rowsAfter = routerPortBlocks(after);
      for (const r of rowsAtKill) expect(rowsAfter.map(blockText)).toContain(blockText(r));

      // The flows carry on: replies to what was sent after the restart.
      await Promise.all([
        waitUntil('ping replies after the restart', () => replies(ping) >= atKill.ping + 5, {
          timeoutMs: 30_000,
        }),
        waitUntil(
          'UDP stream replies to datagrams sent after the restart',
          () => stamped(stream.stdout(), 'reply').some(([, t]) => t > restartedAt),
          { timeoutMs: 30_000 },
        ),
        waitUntil(
          'the TCP connection opened before the kill to echo a line sent after the restart',
          () => stamped(tcp.stdout(), 'echo').some(([, t]) => t > restartedAt),
          { timeoutMs: 45_000 },
        ),
        churn.waitForOutput(/^done$/m, { timeoutMs: 30_000 }),
      ]).catch((e: Error) => {
        throw new Error(
          `${e.message}\nping: ${ping.stdout().slice(-600)}\ntcp: ${tcp.stdout().slice(-300)}\n${daemonLogs(b)}`,
        );
      });
      expect(tcp.stdout()).not.toMatch(/^(closed|error)/m);
      expect(tcp.stdout().match(/^connected /gm)).toHaveLength(1);

      // Leases settle (h2's requests sent during the outage answered); sample once more.
      leases = await waitForLeases(b);
      await sample('after the restart');
      for (const s of samples) {
        expect(
          overlaps(s.hosts).map(([x, y]) => `${blockText(x)} / ${blockText(y)}`),
          s.when,
        ).toEqual([]);
        if (s.router === undefined) continue;
        expect(
          overlaps(s.router).map(([x, y]) => `${blockText(x)} / ${blockText(y)}`),
          s.when,
        ).toEqual([]);
      }
      // Finally, every block a host holds is the router's record of that host.
      const last = samples.at(-1)!;
      for (const h of last.hosts)
        expect(
          last.router!.some((r) => r.host === h.host && r.first <= h.first && h.last <= r.last),
          blockText(h),
        ).toBe(true);
      expect(leases.h2.length).toBeGreaterThanOrEqual(2);

      // The hosts noticed nothing.
      const hostsAfter = await Promise.all([readStatus(b, 'h1'), readStatus(b, 'h2')]);
      expect(hostsAfter.map((x) => x.summary['epoch'])).toEqual(hostEpochs);
      for (const n of ['h1', 'h2'] as const) expect(logOf(n)).not.toMatch(/new epoch|lost ports/);
      // Which path carried the flows after the restart: the new router's programs, or no fast path at all.
      // The streams are still running: on a loaded machine the new programs may take over a moment
      // after the replies above, so the first forwarded packet is waited for, not sampled once.
      if (datapath === 'ebpf')
        await waitUntil(
          "the restarted router's programs to forward",
          async () => fastPathForwarded(after, await readStatus(b, 'router')) > 0,
          { timeoutMs: 15_000, intervalMs: 250 },
        );
      else {
        const final = await readStatus(b, 'router');
        for (const s of [final, ...hostsAfter]) expect(fastPathCounters(s)).toEqual({});
      }

      const lostPings = (ping.stdout().match(/no reply within/g) ?? []).length;
      await Promise.all([ping, stream, tcp, churn].map((p) => p.stop()));
      // What h2's agent did about leases from the kill on (JSON log lines).
      const h2Leasing = logOf('h2')
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { message: string; timestamp: string })
        .filter((l) => Date.parse(l.timestamp) >= killedAt && /asking router|leased ports/.test(l.message))
        .map((l) => `${((Date.parse(l.timestamp) - killedAt) / 1000).toFixed(1)} s ${l.message}`);
      console.log(
        `h2 after the kill (router answering again at ${((restartedAt - killedAt) / 1000).toFixed(1)} s): ${h2Leasing.join('; ')}`,
      );
      console.log(
        `${datapath}: router down ${((restartedAt - killedAt) / 1000).toFixed(1)} s (SIGKILL to answering again); ` +
          `${lostPings} echo requests unanswered meanwhile; router rows after: ${rowsAfter.map(blockText).join(', ')}; ` +
          `${samples.length} samples, no overlap`,
      );
    });
  },
);
