/**
 * The initiating side of `npm run bench:ike` against `distnat peer --ike`:
 * IKEv2 initiators built on src/ike, in a process of their own inside the
 * initiators' namespace, driven by scripts/bench/ike.ts over stdin/stdout.
 *
 *   ip netns exec dxb-i node --import tsx scripts/bench/ike-initiator.ts '<json Args>'
 *
 * Protocol (one JSON object per line): it prints {"ready":true} at start;
 * each line read is a Run: warm-up handshakes, then {"warm":true}, then on
 * the next line read ("go") the counted ones, then the Result. The driver
 * reads the peer's CPU time at "go" and at the Result, so only the counted
 * handshakes are charged to it. Then the run's daemon closes (one Delete per
 * IKE SA, not waited for); the driver waits until the peer's table is empty
 * before the next run.
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { IkeDaemon, UdpTransport } from '../../src/ike/index.ts';
import { loadCertificates } from '../../src/ike/certs.ts';

interface Args {
  /** Our address in the initiators' namespace. */
  address: string;
  /** PEM: our certificate (then its CAs), our key, the root. */
  cert: string;
  key: string;
  root: string;
  remote: { address: string; port: number };
  ikeProposals: string[];
  espProposals: string[];
}

interface Run {
  /** Handshakes to count, after `warmup` uncounted ones. */
  n: number;
  /** In flight at once. */
  c: number;
  warmup: number;
  /** Ask for the first child SA in IKE_AUTH. */
  child: boolean;
}

export interface Result {
  rate: number;
  ms: number;
  failed: number;
  firstError?: string;
  /** This process's CPU time for the counted handshakes, ms. */
  cpuMs: number;
}

const a = JSON.parse(process.argv[2]!) as Args;
const [certificate, ...chain] = loadCertificates(readFileSync(a.cert, 'utf8'));
const identity = { certificate: certificate!, chain, privateKey: readFileSync(a.key, 'utf8') };
const roots = [readFileSync(a.root, 'utf8')];

async function lanes(n: number, c: number, one: () => Promise<void>): Promise<void> {
  let started = 0;
  const lane = async (): Promise<void> => {
    while (started < n) {
      started++;
      await one();
    }
  };
  await Promise.all(Array.from({ length: Math.min(c, n) }, lane));
}

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function nextLine(): Promise<string | undefined> {
  const l = await lines.next();
  return l.done ? undefined : (l.value as string);
}

async function run(r: Run): Promise<void> {
  const transport = await UdpTransport.open({ address: a.address, port: 0 });
  const daemon = new IkeDaemon({
    transport,
    identity,
    trust: { roots },
    ikeProposals: a.ikeProposals,
    espProposals: a.espProposals,
    // Ours stays far from its own threshold: we measure the responder.
    cookieThreshold: 1_000_000,
    retransmit: { timeoutMs: 2000, base: 2, tries: 3 },
  });
  let failed = 0;
  let firstError: string | undefined;
  const one = async (): Promise<void> => {
    try {
      await daemon.initiate(a.remote, r.child ? {} : null);
    } catch (e) {
      failed++;
      firstError ??= (e as Error).message;
    }
  };
  await lanes(r.warmup, r.c, one);
  failed = 0;
  firstError = undefined;
  // The driver reads the peer's CPU time now, then says go.
  process.stdout.write(JSON.stringify({ warm: true }) + '\n');
  await nextLine();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await lanes(r.n, r.c, one);
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const result: Result = {
    rate: r.n / (ms / 1000),
    ms,
    failed,
    ...(firstError !== undefined ? { firstError } : {}),
    cpuMs: (cpu.user + cpu.system) / 1000,
  };
  // The result before the Deletes, so that the driver does not charge them to the run.
  process.stdout.write(JSON.stringify(result) + '\n');
  await daemon.close();
}

process.stdout.write(JSON.stringify({ ready: true }) + '\n');
for (let line = await nextLine(); line !== undefined; line = await nextLine())
  if (line.trim() !== '') await run(JSON.parse(line) as Run);
