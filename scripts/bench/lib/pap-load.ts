/**
 * Simulated PAP clients for bench:routers: many LAN hosts (addresses the
 * caller put on the LAN bridge), each asking its router for port blocks one
 * request after the other, all hosts at once, as a closed loop: the rate is
 * what the routers sustain, not what the clients offer.
 *
 *   node --import tsx scripts/bench/lib/pap-load.ts --hosts 10.0.0.100,10.0.0.101,...
 *        --routers 10.0.0.7[,10.0.0.8] [--requests 20] [--count 8] [--timeout-ms 1000]
 *
 * Host i asks routers[i % routers.length]. A request unanswered after
 * --timeout-ms is sent again under the same transaction id (the router
 * answers a repeat from its cache), at most 3 times. Latency is from the
 * first send to the answer, so a retransmission shows in it. Prints one
 * JSON line: grants, failures by status, lost requests, the run's seconds
 * and every grant's latency in ms.
 */
import { createSocket, type Socket } from 'node:dgram';
import { parseArgs } from 'node:util';
import { emitPap, PAP_MESSAGE_LENGTH, PAP_UDP_PORT, parsePap } from '../../../src/wire/pap.ts';

const { values } = parseArgs({
  options: {
    hosts: { type: 'string' },
    routers: { type: 'string' },
    requests: { type: 'string', default: '20' },
    count: { type: 'string', default: '8' },
    'timeout-ms': { type: 'string', default: '1000' },
  },
});
const HOSTS = (values.hosts ?? '').split(',').filter((h) => h !== '');
const ROUTERS = (values.routers ?? '').split(',').filter((r) => r !== '');
if (HOSTS.length === 0 || ROUTERS.length === 0) throw new Error('--hosts and --routers are needed');
const REQUESTS = Number(values.requests);
const COUNT = Number(values.count);
const TIMEOUT_MS = Number(values['timeout-ms']);
const ATTEMPTS = 3;

interface Tally {
  grants: number;
  failures: Record<string, number>;
  lost: number;
  latenciesMs: number[];
}

function bound(address: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    s.once('error', reject);
    s.bind({ address, port: 0 }, () => resolve(s));
  });
}

/** One host's requests, one after the other. */
async function host(socket: Socket, router: string, firstTxid: number, tally: Tally): Promise<void> {
  const out = Buffer.alloc(PAP_MESSAGE_LENGTH);
  let waiting: ((answer: Buffer) => void) | undefined;
  socket.on('message', (m) => waiting?.(m));
  for (let i = 0; i < REQUESTS; i++) {
    const txid = (firstTxid + i) >>> 0;
    emitPap(
      {
        kind: 'port-request',
        highPorts: false,
        portsRequested: COUNT,
        status: 0,
        transactionId: txid,
        epoch: 0,
        leaseTime: 0,
      },
      out,
    );
    const started = performance.now();
    let answer: ReturnType<typeof parsePap> | undefined;
    for (let attempt = 0; attempt < ATTEMPTS && answer === undefined; attempt++) {
      socket.send(out, PAP_UDP_PORT, router);
      answer = await new Promise<ReturnType<typeof parsePap> | undefined>((resolve) => {
        const timer = setTimeout(() => resolve(undefined), TIMEOUT_MS);
        waiting = (m) => {
          const p = parsePap(m);
          if (!p.ok || p.value.transactionId !== txid || p.value.kind !== 'port-response') return;
          clearTimeout(timer);
          resolve(p);
        };
      });
    }
    waiting = undefined;
    if (answer === undefined || !answer.ok) {
      tally.lost++;
      continue;
    }
    const m = answer.value;
    if (m.kind === 'port-response' && m.success) {
      tally.grants++;
      tally.latenciesMs.push(performance.now() - started);
    } else {
      const key = `status ${m.status}`;
      tally.failures[key] = (tally.failures[key] ?? 0) + 1;
    }
  }
}

const sockets = await Promise.all(HOSTS.map(bound));
const tally: Tally = { grants: 0, failures: {}, lost: 0, latenciesMs: [] };
// Transaction ids differ between runs and hosts, so no router's answer cache repeats an old answer.
const base = (Date.now() & 0x3fffffff) >>> 0;
const started = performance.now();
await Promise.all(
  sockets.map((s, i) => host(s, ROUTERS[i % ROUTERS.length]!, base + i * (REQUESTS + 1), tally)),
);
const seconds = (performance.now() - started) / 1000;
for (const s of sockets) s.close();
console.log(JSON.stringify({ ...tally, seconds, hosts: HOSTS.length, requests: REQUESTS * HOSTS.length }));
