/**
 * IKEv2 handshakes per second: `npm run bench:ike` (root).
 *
 * One handshake = IKE_SA_INIT + IKE_AUTH with ECDSA P-256 certificates from
 * one src/pki root (what `distnat ca init` and `ca issue-peer` make), X25519,
 * AES-GCM-16-128, PRF-HMAC-SHA-256; "+child" adds the first ESP child SA
 * (AES-GCM-16-128, tunnel mode) in IKE_AUTH. Each case runs N handshakes one
 * at a time, then with C in flight, and prints handshakes per second and the
 * CPU time each side spent per handshake.
 *
 * | case          | responder                                   | initiators                        |
 * |---------------|---------------------------------------------|-----------------------------------|
 * | ours          | `distnat peer --ike` (the real daemon, a    | src/ike daemons in one Node       |
 * |               | process) in dxb-r, 192.0.2.2, UDP 500/4500  | process in dxb-i, 192.0.2.1       |
 * | strongSwan    | charon (kernel-libipsec) in dxb-sb          | charon in dxb-sa, driven by vici  |
 * | in-process    | src/ike initiator and responder on one MemoryNetwork, no sockets (reference) |
 *
 * The responders are configured alike: same proposals, same kind of
 * certificate, no DPD, cookies above 16 half-open SAs (distnat's default,
 * which the IKE file cannot change; charon's per-address threshold is raised
 * to match, since every initiation comes from one address). strongSwan is
 * driven over vici (its control socket) with a small client here, one
 * connection per handshake in flight, so no swanctl process start is counted.
 * Between runs every SA is deleted and the next run waits until the
 * responder's table is empty. Both sides are up at once and their runs
 * alternate, case by case, so that a load that drifts over the minutes of
 * a run on a shared machine weighs on both alike; every figure is printed
 * with the load average over its run.
 *
 * Environment: BENCH_N (handshakes per run, default 300), BENCH_C (in
 * flight, default 16), BENCH_WARMUP (default 30), BENCH_REPEAT (runs of each
 * case, the median by rate shown; default 1), SKIP_SWAN=1, ONLY_SWAN=1,
 * BENCH_PEER_LOG (the peer's --log-level, default info as deployed),
 * BENCH_PEER_PROFILE=DIR (the peer runs with node --cpu-prof, profile into DIR),
 * BENCH_INITIATOR_PROFILE=DIR (our initiators' process likewise),
 * BENCH_NO_BUILD=1 (bin/distnat runs dist/ as it is; otherwise it is built
 * first), BENCH_DEBUG=1 (charon logs kept in /tmp/dxb-charon-[ab].log, the peer's in
 * /tmp/dxb-peer.log).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { controlRequest } from '../../src/control/client.ts';
import { controlSocketPath } from '../../src/control/protocol.ts';
import { IkeDaemon, MemoryNetwork, selectorPolicy, hostSelector } from '../../src/ike/index.ts';
import { CertificateAuthority, issuePeerCertificate } from '../../src/pki/index.ts';
import { onExitCleanup } from '../../test/helpers/process.ts';
import { cpuSeconds } from './lib/counters.ts';
import { summarizeCpuProfile } from './lib/cpuprofile.ts';
import { buildDistnat } from './lib/build.ts';
import { ROOT } from './lib/testbed.ts';
import { Vici } from './lib/vici.ts';
import type { Result } from './ike-initiator.ts';

const N = Number(process.env.BENCH_N ?? 300);
const C = Number(process.env.BENCH_C ?? 16);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 30);
const REPEAT = Math.max(1, Number(process.env.BENCH_REPEAT ?? 1));
const DEBUG = process.env.BENCH_DEBUG === '1';
const IKE_PROPOSAL = 'aes128gcm16-prfsha256-x25519';
const ESP_PROPOSAL = 'aes128gcm16';
/** distnat's IkeDaemon default, which `distnat peer` runs with. */
const COOKIE_THRESHOLD = 16;
const CHARON = '/usr/lib/ipsec/charon';
const DISTNAT = join(ROOT, 'bin', 'distnat');

/** Namespaces and links of this benchmark: a prefix of its own, never the testbed's dn-. */
const NS = { i: 'dxb-i', r: 'dxb-r', sa: 'dxb-sa', sb: 'dxb-sb' } as const;
const ADDR = { i: '192.0.2.1', r: '192.0.2.2' } as const;

interface Pem {
  root: string;
  /** Leaf, then the root. */
  chain: string;
  leaf: string;
  key: string;
}

interface Files {
  rootPem: string;
  dir: string;
  i: Pem;
  r: Pem;
}

/** One measured run: handshakes/s and CPU ms per handshake of each side. */
interface Measured {
  rate: number;
  failed: number;
  responderCpuMs: number;
  initiatorCpuMs: number;
  /** COOKIE notifies the responder sent (ours only: charon does not count them). */
  cookies?: number;
  /** 1-minute load average when the counted handshakes started and ended. */
  load: [number, number];
  /** Run-queue wait per handshake, ms: responder, initiator. */
  waitMs: [number, number];
  note?: string;
}

interface Case {
  child: boolean;
  c: number;
}

const CASES: Case[] = [
  { child: false, c: 1 },
  { child: false, c: C },
  { child: true, c: 1 },
  { child: true, c: C },
];

/** Each case REPEAT times, one after another. */
const RUNS: Case[] = CASES.flatMap((k) => Array.from({ length: REPEAT }, () => k));

/** Every run of each case; the report shows the one with the median rate. */
type Runs = Map<Case, Measured[]>;

function add(runs: Runs, k: Case, m: Measured): void {
  runs.set(k, [...(runs.get(k) ?? []), m]);
}

function median(list: readonly Measured[] | undefined): Measured | undefined {
  if (list === undefined || list.length === 0) return undefined;
  return [...list].sort((a, b) => a.rate - b.rate)[Math.floor(list.length / 2)];
}

const label = (k: Case): string =>
  `${k.child ? '+child ' : 'IKE only'}  ${String(k.c).padStart(3)} in flight`;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function sh(cmd: string, ...args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/**
 * Milliseconds the process's threads spent runnable but waiting for a CPU
 * (/proc/<pid>/task/<tid>/schedstat, second field): on a loaded machine,
 * where the time of a handshake goes beside its CPU time.
 */
function waitMs(pid: number): number {
  let ns = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`))
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[1] ?? 0);
  } catch {
    // Gone: nothing more to count.
  }
  return ns / 1e6;
}

function cpuMs(pid: number): number {
  const c = cpuSeconds(pid);
  return (c.user + c.system) * 1000;
}

// ---- namespaces -------------------------------------------------------------------

/** Two namespaces joined by a veth, 192.0.2.1 and 192.0.2.2, neighbours resolved. */
function makePair(a: string, b: string, extra: (a: string, b: string) => void = () => undefined): void {
  for (const ns of [a, b]) {
    spawnSync('ip', ['netns', 'del', ns]);
    sh('ip', 'netns', 'add', ns);
    sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
  }
  sh('ip', 'link', 'add', `${a}0`, 'netns', a, 'type', 'veth', 'peer', 'name', `${b}0`, 'netns', b);
  sh('ip', '-n', a, 'addr', 'add', `${ADDR.i}/24`, 'dev', `${a}0`);
  sh('ip', '-n', b, 'addr', 'add', `${ADDR.r}/24`, 'dev', `${b}0`);
  sh('ip', '-n', a, 'link', 'set', `${a}0`, 'up');
  sh('ip', '-n', b, 'link', 'set', `${b}0`, 'up');
  extra(a, b);
  // A burst of initiations into an unresolved neighbour entry loses all but a few packets.
  sh('ip', 'netns', 'exec', a, 'ping', '-c', '1', '-W', '2', ADDR.r);
}

function dropNamespaces(): void {
  for (const ns of Object.values(NS)) spawnSync('ip', ['netns', 'del', ns]);
}

// ---- PKI ----------------------------------------------------------------------------

async function makeFiles(dir: string): Promise<Files> {
  const root = await CertificateAuthority.initRoot(join(dir, 'root'));
  const rootPem = root.certificate.toString('pem');
  writeFileSync(join(dir, 'root.pem'), rootPem);
  const issue = async (name: string, address: string): Promise<Pem> => {
    const issued = await issuePeerCertificate(root, { address });
    const pem: Pem = {
      root: join(dir, 'root.pem'),
      chain: join(dir, `${name}-chain.pem`),
      leaf: join(dir, `${name}-cert.pem`),
      key: join(dir, `${name}-key.pem`),
    };
    writeFileSync(pem.chain, issued.chainPem);
    writeFileSync(pem.leaf, issued.certificate.toString('pem'));
    writeFileSync(pem.key, issued.keyPem, { mode: 0o600 });
    return pem;
  };
  return { rootPem, dir, i: await issue('i', ADDR.i), r: await issue('r', ADDR.r) };
}

// ---- ours: distnat peer --ike against src/ike initiators ----------------------------

class LineProcess {
  readonly proc: ChildProcess;
  readonly #lines: Interface;
  readonly #queue: string[] = [];
  #waiter: ((line: string) => void) | undefined;
  #stderr = '';

  constructor(argv: string[]) {
    this.proc = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stderr!.on('data', (d: Buffer) => (this.#stderr += d.toString()));
    this.#lines = createInterface({ input: this.proc.stdout! });
    this.#lines.on('line', (l) => {
      const w = this.#waiter;
      this.#waiter = undefined;
      if (w) w(l);
      else this.#queue.push(l);
    });
  }

  next(timeoutMs: number): Promise<string> {
    const queued = this.#queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.#waiter = undefined;
        reject(new Error(`no answer in ${timeoutMs} ms; stderr: ${this.#stderr.slice(-2000)}`));
      }, timeoutMs);
      this.#waiter = (l) => {
        clearTimeout(t);
        resolve(l);
      };
    });
  }

  send(line: string): void {
    this.proc.stdin!.write(line + '\n');
  }
}

async function peerCounters(runDir: string): Promise<Record<string, number>> {
  const reply = await controlRequest(controlSocketPath(runDir, 'peer'), { command: 'status' }, 5000);
  if (!reply.ok) throw new Error(`peer status: ${reply.error}`);
  return (reply.status as { counters: Record<string, number> }).counters;
}

/** One side of the comparison, set up once; its cases run interleaved with the other side's. */
interface Side {
  run(k: Case): Promise<Measured>;
  close(): Promise<void>;
}

async function ours(files: Files): Promise<Side | string> {
  const runDir = join(files.dir, 'run');
  mkdirSync(runDir, { recursive: true });
  const ikeFile = join(files.dir, 'peer-ike.json');
  writeFileSync(
    ikeFile,
    JSON.stringify({
      trust: [files.r.root],
      certificate: files.r.chain,
      key: files.r.key,
      proposals: { ike: [IKE_PROPOSAL], esp: [ESP_PROPOSAL] },
      dpdSeconds: 0,
    }),
  );
  makePair(NS.i, NS.r);
  const logPath = join(files.dir, 'peer.log');
  const logFd = openSync(logPath, 'w');
  // --cpu-prof is refused in NODE_OPTIONS: with a profile, node is started here with it, running bin/distnat.
  const profile = process.env.BENCH_PEER_PROFILE;
  const distnat = profile
    ? [process.execPath, '--cpu-prof', `--cpu-prof-dir=${profile}`, DISTNAT]
    : [DISTNAT];
  const peer = spawn(
    'ip',
    [
      'netns',
      'exec',
      NS.r,
      ...distnat,
      'peer',
      '--ike',
      ikeFile,
      '--wan-if',
      `${NS.r}0`,
      '--tun',
      'dxbt0',
      '--run-dir',
      runDir,
      '--log-level',
      process.env.BENCH_PEER_LOG ?? 'info',
    ],
    { stdio: ['ignore', logFd, logFd] },
  );
  closeSync(logFd);
  const unregister = onExitCleanup(() => peer.kill('SIGKILL'));
  let initiator: LineProcess | undefined;
  const close = async (): Promise<void> => {
    initiator?.proc.stdin!.end();
    // Given a moment to end by itself: a profile is written on a normal exit only.
    if (initiator !== undefined && initiator.proc.exitCode === null)
      await Promise.race([new Promise((r) => initiator!.proc.once('exit', r)), sleep(3000)]);
    initiator?.proc.kill('SIGTERM');
    peer.kill('SIGTERM');
    await new Promise((r) => (peer.exitCode !== null ? r(undefined) : peer.once('exit', r)));
    unregister();
    if (DEBUG) copyFileSync(logPath, '/tmp/dxb-peer.log');
  };
  try {
    let counters: Record<string, number> | undefined;
    for (let i = 0; i < 300 && counters === undefined; i++) {
      if (peer.exitCode !== null) break;
      await sleep(100);
      counters = await peerCounters(runDir).catch(() => undefined);
    }
    if (counters === undefined) {
      await close();
      return `distnat peer did not start: ${readFileSync(logPath, 'utf8')
        .trim()
        .split('\n')
        .filter((l) => !l.startsWith('    at '))
        .slice(-3)
        .join(' | ')}`;
    }
    // `ip netns exec` and bin/distnat both exec: the pid is the daemon's.
    const peerPid = peer.pid!;
    const init = new LineProcess([
      'ip',
      'netns',
      'exec',
      NS.i,
      process.execPath,
      ...(process.env.BENCH_INITIATOR_PROFILE
        ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_INITIATOR_PROFILE}`]
        : []),
      '--import',
      'tsx',
      join(ROOT, 'scripts', 'bench', 'ike-initiator.ts'),
      JSON.stringify({
        address: ADDR.i,
        cert: files.i.chain,
        key: files.i.key,
        root: files.i.root,
        remote: { address: ADDR.r, port: 500 },
        ikeProposals: [IKE_PROPOSAL],
        espProposals: [ESP_PROPOSAL],
      }),
    ]);
    initiator = init;
    await init.next(30_000);
    // A first run, not counted, so that the peer's code is compiled before the first case.
    init.send(JSON.stringify({ n: 5 * WARMUP, c: C, warmup: 0, child: true }));
    await init.next(120_000);
    init.send('go');
    await init.next(300_000);
    return {
      close,
      async run(k: Case): Promise<Measured> {
        // The previous run's Deletes first: an empty table, and their cost not charged to this run.
        let c = await peerCounters(runDir);
        for (let i = 0; i < 100 && (c['ike.sas'] ?? 0) > 0; i++) {
          await sleep(100);
          c = await peerCounters(runDir);
        }
        init.send(JSON.stringify({ n: N, c: k.c, warmup: WARMUP, child: k.child }));
        await init.next(120_000); // warm
        const before = await peerCounters(runDir);
        const load0 = loadavg()[0]!;
        const cpu0 = cpuMs(peerPid);
        const w0 = [waitMs(peerPid), waitMs(init.proc.pid!)];
        init.send('go');
        const r = JSON.parse(await init.next(300_000)) as Result;
        const cpu1 = cpuMs(peerPid);
        const w1 = [waitMs(peerPid), waitMs(init.proc.pid!)];
        const after = await peerCounters(runDir);
        const cookies = (after['ike.init-cookie-sent'] ?? 0) - (before['ike.init-cookie-sent'] ?? 0);
        return {
          rate: r.rate,
          failed: r.failed,
          responderCpuMs: (cpu1 - cpu0) / N,
          initiatorCpuMs: r.cpuMs / N,
          cookies,
          load: [load0, loadavg()[0]!],
          waitMs: [(w1[0]! - w0[0]!) / N, (w1[1]! - w0[1]!) / N],
          ...(r.firstError !== undefined ? { note: r.firstError } : {}),
        };
      },
    };
  } catch (e) {
    await close();
    return (e as Error).message;
  }
}

// ---- strongSwan against strongSwan ------------------------------------------------

function swanConfig(dir: string, self: string, peer: string, pem: Pem, inner: [string, string]): void {
  for (const sub of ['x509', 'x509ca', 'private']) mkdirSync(join(dir, sub), { recursive: true });
  copyFileSync(pem.leaf, join(dir, 'x509', 'me.pem'));
  copyFileSync(pem.key, join(dir, 'private', 'me.key'));
  copyFileSync(pem.root, join(dir, 'x509ca', 'root.pem'));
  writeFileSync(
    join(dir, 'strongswan.conf'),
    `charon {
  load = random nonce openssl kdf pem pkcs1 pkcs8 x509 revocation constraints pubkey kernel-libipsec kernel-netlink socket-default vici
  install_routes = no
  install_virtual_ip = no
  reuse_ikesa = no
  threads = 32
  retransmit_timeout = 2
  retransmit_tries = 3
  cookie_threshold = ${COOKIE_THRESHOLD}
  cookie_threshold_ip = ${COOKIE_THRESHOLD}
  block_threshold = 1000000
  init_limit_half_open = 0
  ikesa_table_size = 4096
  syslog { daemon { default = -1 } }
${DEBUG ? `  filelog { f { path = ${dir}/charon.log\n default = 1\n flush_line = yes\n time_format = %T } }` : ''}
  plugins {
    vici { socket = unix://${dir}/charon.vici }
    revocation { enable_crl = no
      enable_ocsp = no }
  }
}
`,
  );
  const conn = (name: string, extra: string): string => `  ${name} {
    version = 2
    local_addrs = ${self}
    remote_addrs = ${peer}
    unique = never
    dpd_delay = 0
    proposals = ${IKE_PROPOSAL}
    local { auth = pubkey
      certs = me.pem }
    remote { auth = pubkey
      cacerts = root.pem }
${extra}  }
`;
  writeFileSync(
    join(dir, 'swanctl.conf'),
    `connections {
${conn(
  'bench',
  `    children {
      bench { mode = tunnel
        esp_proposals = ${ESP_PROPOSAL}
        local_ts = ${inner[0]}/32
        remote_ts = ${inner[1]}/32
        start_action = none }
    }
`,
)}${conn('benchnc', '    childless = force\n')}}
`,
  );
}

async function startCharon(ns: string, dir: string): Promise<ChildProcess> {
  // Its own mount namespace with a private /run: the pid file and the default sockets stay apart.
  const proc = spawn(
    'ip',
    [
      'netns',
      'exec',
      ns,
      'unshare',
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      `mount -t tmpfs none /run && exec ${CHARON}`,
    ],
    { env: { ...process.env, STRONGSWAN_CONF: join(dir, 'strongswan.conf') }, stdio: 'ignore' },
  );
  for (let i = 0; i < 100 && !existsSync(join(dir, 'charon.vici')); i++) await sleep(50);
  sh(
    'ip',
    'netns',
    'exec',
    ns,
    'swanctl',
    '--load-all',
    '--file',
    join(dir, 'swanctl.conf'),
    '--uri',
    `unix://${dir}/charon.vici`,
  );
  return proc;
}

async function openClients(path: string, n: number): Promise<Vici[]> {
  const clients: Vici[] = [];
  // One at a time: charon's vici socket has a short listen backlog.
  for (let i = 0; i < n; i++)
    for (let attempt = 0; ; attempt++) {
      try {
        clients.push(await Vici.open(path));
        break;
      } catch (e) {
        if (attempt > 50) throw e;
        await sleep(20);
      }
    }
  return clients;
}

async function lanes(n: number, c: number, one: () => Promise<void>): Promise<number> {
  let started = 0;
  const t0 = performance.now();
  const lane = async (): Promise<void> => {
    while (started < n) {
      started++;
      await one();
    }
  };
  await Promise.all(Array.from({ length: Math.min(c, n) }, lane));
  return n / ((performance.now() - t0) / 1000);
}

async function strongswan(files: Files): Promise<Side | string> {
  if (!existsSync(CHARON) || spawnSync('which', ['swanctl']).status !== 0)
    return `${CHARON} or swanctl missing`;
  const inner: [string, string] = ['10.99.0.1', '10.99.0.2'];
  makePair(NS.sa, NS.sb, (a, b) => {
    // Child SAs between addresses that are not the IKE endpoints: kernel-libipsec's route cannot swallow IKE.
    sh('ip', '-n', a, 'addr', 'add', `${inner[0]}/32`, 'dev', 'lo');
    sh('ip', '-n', b, 'addr', 'add', `${inner[1]}/32`, 'dev', 'lo');
  });
  const da = join(files.dir, 'swan-a');
  const db = join(files.dir, 'swan-b');
  swanConfig(da, ADDR.i, ADDR.r, files.i, inner);
  swanConfig(db, ADDR.r, ADDR.i, files.r, [inner[1], inner[0]]);
  const procs: ChildProcess[] = [];
  const unregister = onExitCleanup(() => procs.forEach((p) => p.kill('SIGKILL')));
  let vicis: Vici[] = [];
  let control: Vici | undefined;
  const close = async (): Promise<void> => {
    for (const v of vicis) v.close();
    control?.close();
    if (DEBUG) {
      spawnSync('cp', [join(da, 'charon.log'), '/tmp/dxb-charon-a.log']);
      spawnSync('cp', [join(db, 'charon.log'), '/tmp/dxb-charon-b.log']);
    }
    for (const p of procs) p.kill('SIGKILL');
    unregister();
    await Promise.resolve();
  };
  try {
    procs.push(await startCharon(NS.sb, db), await startCharon(NS.sa, da));
    const [b, a] = procs as [ChildProcess, ChildProcess];
    vicis = await openClients(join(da, 'charon.vici'), C);
    const ctl = await Vici.open(join(db, 'charon.vici'));
    control = ctl;
    const free = [...vicis];
    return {
      close,
      async run(k: Case): Promise<Measured> {
        let failed = 0;
        let firstError: string | undefined;
        const one = async (): Promise<void> => {
          const v = free.pop()!;
          const what: Record<string, string> = k.child ? { child: 'bench' } : { ike: 'benchnc' };
          const r = await v.request('initiate', { ...what, timeout: '30000', 'init-limits': 'no' });
          free.push(v);
          if (r.success !== 'yes') {
            failed++;
            firstError ??= r.errmsg ?? 'initiate failed';
          }
        };
        await lanes(WARMUP, k.c, one);
        failed = 0;
        const load0 = loadavg()[0]!;
        const b0 = cpuMs(b.pid!);
        const a0 = cpuMs(a.pid!);
        const w0 = [waitMs(b.pid!), waitMs(a.pid!)];
        const rate = await lanes(N, k.c, one);
        const b1 = cpuMs(b.pid!);
        const a1 = cpuMs(a.pid!);
        const w1 = [waitMs(b.pid!), waitMs(a.pid!)];
        const m: Measured = {
          rate,
          failed,
          responderCpuMs: (b1 - b0) / N,
          initiatorCpuMs: (a1 - a0) / N,
          load: [load0, loadavg()[0]!],
          waitMs: [(w1[0]! - w0[0]!) / N, (w1[1]! - w0[1]!) / N],
          ...(firstError !== undefined ? { note: firstError } : {}),
        };
        // Empty both tables before the next run, as ours does.
        const conn = k.child ? 'bench' : 'benchnc';
        await vicis[0]!.request('terminate', { ike: conn, force: 'yes', timeout: '-1' });
        for (let i = 0; i < 100; i++) {
          const st = await ctl.request('stats', {});
          if (Number(st['ikesas.total'] ?? 0) === 0) break;
          await sleep(100);
        }
        return m;
      },
    };
  } catch (e) {
    await close();
    return (e as Error).message;
  }
}

// ---- in-process reference ------------------------------------------------------------

async function inProcess(files: Files, c: number): Promise<number> {
  const id = (p: Pem) => ({
    certificate: readFileSync(p.leaf, 'utf8'),
    privateKey: readFileSync(p.key, 'utf8'),
  });
  const make = (t: ReturnType<MemoryNetwork['attach']>, p: Pem): IkeDaemon =>
    new IkeDaemon({
      transport: t,
      identity: id(p),
      trust: { roots: [files.rootPem] },
      ikeProposals: [IKE_PROPOSAL],
      espProposals: [ESP_PROPOSAL],
      cookieThreshold: 1_000_000,
      childPolicy: selectorPolicy([hostSelector(ADDR.i)], [hostSelector(ADDR.r)]),
    });
  const net = new MemoryNetwork();
  const a = make(net.attach(ADDR.i, 500, 4500), files.i);
  const b = make(net.attach(ADDR.r, 500, 4500), files.r);
  const one = async (): Promise<void> => void (await a.initiate({ address: ADDR.r, port: 500 }, {}));
  await lanes(WARMUP, c, one);
  const r = await lanes(N, c, one);
  await Promise.all([a.close(), b.close()]);
  return r;
}

// ---- report ----------------------------------------------------------------------------

const loadOf = (m: Measured | undefined): string =>
  m === undefined ? '-' : `${m.load[0].toFixed(1)}-${m.load[1].toFixed(1)}`;

function report(ourRuns: Runs | string | undefined, swanRuns: Runs | string | undefined): void {
  const num = (x: number | undefined, digits: number, width: number): string =>
    (x === undefined ? '-' : x.toFixed(digits)).padStart(width);
  console.log('');
  console.log(
    '                             handshakes/s        ratio  | CPU ms per handshake          | run-queue wait ms per handshake | ours    | load 1-min',
  );
  console.log(
    'case                        ours  strongSwan  ours/sS  | peer  init  charon-r charon-i | peer  init  charon-r charon-i    | cookies | ours, strongSwan',
  );
  for (const k of CASES) {
    const o = typeof ourRuns === 'object' ? median(ourRuns.get(k)) : undefined;
    const s = typeof swanRuns === 'object' ? median(swanRuns.get(k)) : undefined;
    const ratio = o !== undefined && s !== undefined ? o.rate / s.rate : undefined;
    console.log(
      `${label(k).padEnd(24)} ${num(o?.rate, 0, 7)} ${num(s?.rate, 0, 11)} ${num(ratio, 2, 8)}  |` +
        `${num(o?.responderCpuMs, 2, 5)} ${num(o?.initiatorCpuMs, 2, 5)} ${num(s?.responderCpuMs, 2, 9)}` +
        ` ${num(s?.initiatorCpuMs, 2, 8)} |${num(o?.waitMs[0], 2, 5)} ${num(o?.waitMs[1], 2, 5)} ${num(s?.waitMs[0], 2, 9)}` +
        ` ${num(s?.waitMs[1], 2, 8)}    | ${String(o?.cookies ?? '-').padStart(7)} | ${loadOf(o)}, ${loadOf(s)}`,
    );
    for (const [who, m] of [
      ['ours', o],
      ['strongSwan', s],
    ] as const)
      if (m !== undefined && m.failed > 0) console.log(`  ${who}: ${m.failed} of ${N} failed (${m.note})`);
  }
  if (REPEAT > 1) {
    console.log(`median of ${REPEAT} runs each; every run's handshakes/s:`);
    for (const k of CASES) {
      const rates = (runs: Runs | string | undefined): string =>
        typeof runs === 'object' ? (runs.get(k) ?? []).map((m) => m.rate.toFixed(0)).join(' ') : '-';
      console.log(`  ${label(k).padEnd(24)} ours ${rates(ourRuns)}; strongSwan ${rates(swanRuns)}`);
    }
    // The rates swing with the machine's load; the CPU per handshake much less, and it is what a change moves.
    console.log("every run's CPU ms per handshake, responder/initiator (median):");
    for (const k of CASES) {
      const cpu = (runs: Runs | string | undefined): string => {
        if (typeof runs !== 'object') return '-';
        const list = runs.get(k) ?? [];
        const mid = (xs: number[]): string =>
          [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!.toFixed(2);
        return (
          list.map((m) => `${m.responderCpuMs.toFixed(2)}/${m.initiatorCpuMs.toFixed(2)}`).join(' ') +
          (list.length > 0
            ? ` (${mid(list.map((m) => m.responderCpuMs))}/${mid(list.map((m) => m.initiatorCpuMs))})`
            : '')
        );
      };
      console.log(`  ${label(k).padEnd(24)} ours ${cpu(ourRuns)}; strongSwan ${cpu(swanRuns)}`);
    }
  }
  if (typeof ourRuns === 'string') console.log(`ours: not measured (${ourRuns})`);
  if (typeof swanRuns === 'string') console.log(`strongSwan: not measured (${swanRuns})`);
  console.log(
    `load average after: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
}

/**
 * Where a profiled process's busy time went over the whole benchmark
 * (`count` handshakes, the uncounted warm-ups and the Deletes included):
 * self time by function, and inclusive time of the project's own functions.
 */
function profileReport(who: string, dir: string | undefined, count: number): void {
  if (dir === undefined || !existsSync(dir)) return;
  const newest = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(dir, f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
  if (newest === undefined) return;
  const p = summarizeCpuProfile(newest);
  const row = ([f, x]: [string, number]): string =>
    `  ${(x * 100).toFixed(1).padStart(5)}%  ${((x * p.busyMs) / count).toFixed(3)} ms  ${f}`;
  console.log(
    `${who} (${newest}): ${p.busyMs.toFixed(0)} ms busy, ${(p.busyMs / count).toFixed(2)} ms per handshake over ${count}, profiled`,
  );
  console.log('  self, by function:');
  for (const r of p.self.slice(0, 15)) console.log(row(r));
  // The peer runs the bundle (dist/), the initiators the sources (src/).
  console.log('  inclusive, distnat code:');
  for (const r of [...p.inclusive]
    .filter(([f]) => f.includes(' src/') || f.includes(' dist/'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, 25))
    console.log(row(r));
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error('bench:ike needs root (namespaces, the peer TUN device, charon)');
    process.exit(77);
  }
  if (process.env.ONLY_SWAN !== '1') buildDistnat();
  const dir = mkdtempSync(join(tmpdir(), 'dxb-ike-'));
  const unregister = onExitCleanup(() => {
    dropNamespaces();
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    const files = await makeFiles(dir);
    console.log(
      `IKEv2 handshakes: IKE_SA_INIT + IKE_AUTH, ECDSA P-256 certificates, ${IKE_PROPOSAL}` +
        ` (+child: one ESP ${ESP_PROPOSAL} child SA); N=${N} per run after ${WARMUP} warm-up, C=${C}, ${REPEAT} run(s) per case;` +
        ` load average before: ${loadavg()
          .map((x) => x.toFixed(2))
          .join(' ')}`,
    );
    let ourRuns: Runs | string | undefined;
    let swanRuns: Runs | string | undefined;
    if (process.env.ONLY_SWAN !== '1') {
      const one = await inProcess(files, 1);
      const many = await inProcess(files, C);
      console.log(
        `reference, src/ike both ends in one process (no sockets), +child: ${one.toFixed(0)}/s one at a time, ${many.toFixed(0)}/s with ${C} in flight`,
      );
    }
    // Both sides up at once, their runs interleaved case by case: on a shared machine the load
    // drifts over minutes, and a comparison of two blocks run one after the other would measure that.
    const oursSide = process.env.ONLY_SWAN !== '1' ? await ours(files) : undefined;
    const swanSide = process.env.SKIP_SWAN !== '1' ? await strongswan(files) : undefined;
    if (typeof oursSide === 'string') ourRuns = oursSide;
    else if (oursSide !== undefined) ourRuns = new Map();
    if (typeof swanSide === 'string') swanRuns = swanSide;
    else if (swanSide !== undefined) swanRuns = new Map();
    try {
      for (const [n, k] of RUNS.entries())
        for (const [side, runs] of (n % 2 === 0
          ? [
              [oursSide, ourRuns],
              [swanSide, swanRuns],
            ]
          : [
              [swanSide, swanRuns],
              [oursSide, ourRuns],
            ]) as [Side | string | undefined, Runs | string | undefined][])
          if (typeof side === 'object' && typeof runs === 'object') add(runs, k, await side.run(k));
    } finally {
      if (typeof oursSide === 'object') await oursSide.close();
      if (typeof swanSide === 'object') await swanSide.close();
    }
    report(ourRuns, swanRuns);
    // Every handshake the initiators made: the start-up run, then each run's warm-up and counted ones.
    const handshakes = 5 * WARMUP + RUNS.length * (WARMUP + N);
    profileReport('peer', process.env.BENCH_PEER_PROFILE, handshakes);
    profileReport('initiator', process.env.BENCH_INITIATOR_PROFILE, handshakes);
  } finally {
    dropNamespaces();
    rmSync(dir, { recursive: true, force: true });
    unregister();
  }
}

await main();
