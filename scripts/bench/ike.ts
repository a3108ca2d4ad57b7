/**
 * IKEv2 handshakes per second: `npx tsx scripts/bench/ike.ts` (root for the
 * strongSwan part).
 *
 * One handshake = IKE_SA_INIT + IKE_AUTH with ECDSA P-256 certificates from
 * one root, X25519, AES-GCM-16-128, PRF-HMAC-SHA-256, and one ESP child SA
 * (AES-GCM-16-128, tunnel mode) on both sides: the same work strongSwan does
 * below. Each case runs N handshakes either one at a time or with C in
 * flight, and prints handshakes per second.
 *
 * | case                        | what runs                                                    |
 * |-----------------------------|--------------------------------------------------------------|
 * | ours, in-process            | initiator and responder daemons on one MemoryNetwork         |
 * | ours, UDP loopback          | responder in a second Node process, UDP over 127.0.0.1       |
 * | strongSwan, two charons     | two namespaces on a veth, charon (kernel-libipsec) each side, |
 * |                             | vici 'initiate' requests; needs root,                        |
 * |                             | /usr/lib/ipsec/charon and swanctl                            |
 *
 * Cookies are off on both responders (threshold out of reach) so that the
 * concurrent runs measure handshakes, not the cookie round trip. The
 * strongSwan side is driven over vici (its control socket) with a small
 * client here, C connections for C in flight, so that no swanctl process
 * start is counted.
 *
 * BENCH_N (default 300), BENCH_C (default 32), SKIP_SWAN=1, ONLY_SWAN=1,
 * BENCH_SWAN_RTO (charon's retransmit_timeout, default its own 4 s), BENCH_DEBUG=1
 * (logs, charon's copied to /tmp/bench-[ab].log).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createConnection, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import {
  IkeDaemon,
  MemoryNetwork,
  UdpTransport,
  hostSelector,
  selectorPolicy,
  type IkeTransport,
} from '../../src/ike/index.ts';
import { makePki, type Identity } from '../../test/unit/ike/pki-fixture.ts';

const N = Number(process.env.BENCH_N ?? 300);
const C = Number(process.env.BENCH_C ?? 32);
const SELF = fileURLToPath(import.meta.url);

interface Creds {
  rootPem: string;
  a: Identity;
  b: Identity;
}

function daemon(transport: IkeTransport, id: Identity, rootPem: string): IkeDaemon {
  return new IkeDaemon({
    transport,
    identity: { certificate: id.certPem, privateKey: id.keyPem },
    trust: { roots: [rootPem] },
    ikeProposals: ['aes128gcm16-prfsha256-x25519'],
    espProposals: ['aes128gcm16'],
    cookieThreshold: 1_000_000,
    childPolicy: selectorPolicy([hostSelector('10.99.0.1')], [hostSelector('10.99.0.2')]),
    log: process.env.BENCH_DEBUG ? (l, m) => console.log(l, m) : undefined,
  });
}

const child = { localSelectors: [hostSelector('10.99.0.1')], remoteSelectors: [hostSelector('10.99.0.2')] };

/** Runs `n` handshakes with `c` in flight; handshakes per second. */
async function rate(n: number, c: number, one: () => Promise<unknown>): Promise<number> {
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

async function inProcess(creds: Creds, c: number, withChild = true): Promise<number> {
  const net = new MemoryNetwork();
  const a = daemon(net.attach('192.0.2.1', 500, 4500), creds.a, creds.rootPem);
  const b = daemon(net.attach('192.0.2.2', 500, 4500), creds.b, creds.rootPem);
  const req = withChild ? child : null;
  await rate(Math.min(50, N), c, () => a.initiate({ address: '192.0.2.2', port: 500 }, req)); // warm up
  const r = await rate(N, c, () => a.initiate({ address: '192.0.2.2', port: 500 }, req));
  await Promise.all([a.close(), b.close()]);
  return r;
}

/** The responder half of the UDP case, in its own process. */
async function responderMain(configPath: string): Promise<void> {
  const { readFileSync } = await import('node:fs');
  const cfg = JSON.parse(readFileSync(configPath, 'utf8')) as { id: Identity; rootPem: string };
  const t = await UdpTransport.open({ address: '127.0.0.1', port: 0 });
  daemon(t, cfg.id, cfg.rootPem);
  process.stdout.write(`ready ${t.local.port}\n`);
}

async function udpLoopback(creds: Creds, dir: string, c: number, withChild = true): Promise<number> {
  const path = join(dir, 'responder.json');
  writeFileSync(path, JSON.stringify({ id: { ...creds.b, key: undefined }, rootPem: creds.rootPem }));
  const p = spawn(process.execPath, ['--import', 'tsx', SELF, '--responder', path], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve) =>
    createInterface({ input: p.stdout! }).once('line', (l) => resolve(Number(l.split(' ')[1]))),
  );
  const t = await UdpTransport.open({ address: '127.0.0.1', port: 0 });
  const a = daemon(t, creds.a, creds.rootPem);
  const remote = { address: '127.0.0.1', port };
  const req = withChild ? child : null;
  await rate(Math.min(50, N), c, () => a.initiate(remote, req));
  const r = await rate(N, c, () => a.initiate(remote, req));
  await a.close();
  p.kill();
  return r;
}

// ---- strongSwan against strongSwan -------------------------------------------------

const CHARON = '/usr/lib/ipsec/charon';
const sh = (cmd: string, ...args: string[]): void => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
};

interface Swan {
  ns: string;
  dir: string;
  proc: ChildProcess;
}

function swanConfig(
  dir: string,
  self: string,
  peer: string,
  id: Identity,
  rootPem: string,
  inner: [string, string],
): void {
  for (const sub of ['x509', 'x509ca', 'private']) mkdirSync(join(dir, sub), { recursive: true });
  writeFileSync(join(dir, 'x509', 'me.pem'), id.certPem);
  writeFileSync(join(dir, 'private', 'me.key'), id.keyPem);
  writeFileSync(join(dir, 'x509ca', 'root.pem'), rootPem);
  writeFileSync(
    join(dir, 'strongswan.conf'),
    `charon {
  load = random nonce openssl kdf pem pkcs1 pkcs8 x509 revocation constraints pubkey kernel-libipsec kernel-netlink socket-default vici
  install_routes = no
  install_virtual_ip = no
  reuse_ikesa = no
  threads = 64
  retransmit_timeout = ${process.env.BENCH_SWAN_RTO ?? 4}
  cookie_threshold = 1000000
  block_threshold = 1000000
  init_limit_half_open = 0
  ikesa_table_size = 4096
  syslog { daemon { default = -1 } }
${process.env.BENCH_DEBUG ? `filelog { f { path = ${dir}/charon.log\n default = 1\n flush_line = yes\n time_format = %T.%f } }` : ''}
  plugins {
    vici { socket = unix://${dir}/charon.vici }
    revocation { enable_crl = no
      enable_ocsp = no }
  }
}
`,
  );
  writeFileSync(
    join(dir, 'swanctl.conf'),
    `connections {
  bench {
    version = 2
    local_addrs = ${self}
    remote_addrs = ${peer}
    unique = never
    proposals = aes128gcm16-prfsha256-x25519
    local { auth = pubkey
      certs = me.pem }
    remote { auth = pubkey
      cacerts = root.pem }
    children {
      bench { mode = tunnel
        esp_proposals = aes128gcm16
        local_ts = ${inner[0]}/32
        remote_ts = ${inner[1]}/32
        start_action = none }
    }
  }
  benchnc {
    version = 2
    local_addrs = ${self}
    remote_addrs = ${peer}
    unique = never
    childless = force
    proposals = aes128gcm16-prfsha256-x25519
    local { auth = pubkey
      certs = me.pem }
    remote { auth = pubkey
      cacerts = root.pem }
  }
}
`,
  );
}

async function startCharon(ns: string, dir: string): Promise<Swan> {
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
  for (let i = 0; i < 100 && !existsSync(join(dir, 'charon.vici')); i++)
    await new Promise((r) => setTimeout(r, 50));
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
  return { ns, dir, proc };
}

/**
 * A minimal vici client (strongSwan's control protocol: 4-byte length, then
 * packet type, command name and a message of key/value elements), so that a
 * handshake costs charon's work and not a swanctl process start. One request
 * at a time per connection; concurrency is several connections.
 */
class Vici {
  readonly #socket: Socket;
  #buffer = Buffer.alloc(0);
  #pending: ((payload: Buffer) => void) | undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (d: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, d]);
      while (this.#buffer.length >= 4 && this.#buffer.length >= 4 + this.#buffer.readUInt32BE(0)) {
        const payload = this.#buffer.subarray(4, 4 + this.#buffer.readUInt32BE(0));
        this.#buffer = this.#buffer.subarray(4 + payload.length);
        // 1 = CMD_RESPONSE; events (7) and confirmations are not asked for.
        if (payload[0] === 1) {
          const p = this.#pending;
          this.#pending = undefined;
          p?.(payload.subarray(1));
        }
      }
    });
  }

  static open(path: string): Promise<Vici> {
    return new Promise((resolve, reject) => {
      const s = createConnection(path, () => resolve(new Vici(s)));
      s.once('error', reject);
    });
  }

  /** Sends a command with string values; resolves with the response's key/values. */
  request(command: string, values: Record<string, string>): Promise<Record<string, string>> {
    const parts: Buffer[] = [Buffer.from([0, command.length]), Buffer.from(command)];
    for (const [k, v] of Object.entries(values)) {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(v.length);
      parts.push(Buffer.from([3, k.length]), Buffer.from(k), len, Buffer.from(v));
    }
    const body = Buffer.concat(parts);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length);
    return new Promise((resolve) => {
      this.#pending = (m) => resolve(parseKeyValues(m));
      this.#socket.write(Buffer.concat([head, body]));
    });
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** Top-level key/value elements of a vici message (sections and lists skipped). */
function parseKeyValues(m: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let depth = 0;
  for (let i = 0; i < m.length;) {
    const type = m[i++]!;
    if (type === 1 || type === 4) {
      i += 1 + m[i]!;
      depth++;
    } else if (type === 2 || type === 6) depth--;
    else if (type === 3) {
      const nameLength = m[i]!;
      const k = m.subarray(i + 1, i + 1 + nameLength).toString();
      i += 1 + nameLength;
      const vl = m.readUInt16BE(i);
      if (depth === 0) out[k] = m.subarray(i + 2, i + 2 + vl).toString();
      i += 2 + vl;
    } else if (type === 5) i += 2 + m.readUInt16BE(i);
    else break;
  }
  return out;
}

async function strongswan(
  creds: Creds,
  dir: string,
): Promise<{ seq: number; conc: number; ikeSeq: number; ikeConc: number; failed: number } | string> {
  if (process.getuid?.() !== 0) return 'not root';
  if (!existsSync(CHARON)) return `${CHARON} missing`;
  const nsA = 'dxk-bench-a';
  const nsB = 'dxk-bench-b';
  const swans: Swan[] = [];
  try {
    for (const ns of [nsA, nsB]) {
      spawnSync('ip', ['netns', 'del', ns]);
      sh('ip', 'netns', 'add', ns);
      sh('ip', '-n', ns, 'link', 'set', 'lo', 'up');
    }
    sh('ip', 'link', 'add', 'dxkb-a', 'netns', nsA, 'type', 'veth', 'peer', 'name', 'dxkb-b', 'netns', nsB);
    sh('ip', '-n', nsA, 'addr', 'add', '192.0.2.1/24', 'dev', 'dxkb-a');
    sh('ip', '-n', nsB, 'addr', 'add', '192.0.2.2/24', 'dev', 'dxkb-b');
    sh('ip', '-n', nsA, 'addr', 'add', '10.99.0.1/32', 'dev', 'lo');
    sh('ip', '-n', nsB, 'addr', 'add', '10.99.0.2/32', 'dev', 'lo');
    sh('ip', '-n', nsA, 'link', 'set', 'dxkb-a', 'up');
    sh('ip', '-n', nsB, 'link', 'set', 'dxkb-b', 'up');
    swanConfig(join(dir, 'a'), '192.0.2.1', '192.0.2.2', creds.a, creds.rootPem, ['10.99.0.1', '10.99.0.2']);
    swanConfig(join(dir, 'b'), '192.0.2.2', '192.0.2.1', creds.b, creds.rootPem, ['10.99.0.2', '10.99.0.1']);
    // Resolve the neighbours first: a burst of initiations into an unresolved ARP
    // entry loses all but three packets, and charon retransmits only after 4 s.
    sh('ip', 'netns', 'exec', nsA, 'ping', '-c', '1', '-W', '1', '192.0.2.2');
    swans.push(await startCharon(nsA, join(dir, 'a')), await startCharon(nsB, join(dir, 'b')));
    // One at a time: charon's vici socket has a short listen backlog.
    const clients: Vici[] = [];
    for (let i = 0; i < C; i++)
      for (let attempt = 0; ; attempt++) {
        try {
          clients.push(await Vici.open(join(dir, 'a', 'charon.vici')));
          break;
        } catch (e) {
          if (attempt > 50) throw e;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    const free = [...clients];
    let failed = 0;
    const initiate = (what: Record<string, string>) => async (): Promise<void> => {
      const v = free.pop()!;
      const r = await v.request('initiate', { ...what, timeout: '30000', 'init-limits': 'no' });
      free.push(v);
      if (r.success !== 'yes') failed++;
    };
    // IKE only first (no child SA: no kernel-libipsec policy per handshake), then with one child SA.
    const ike = initiate({ ike: 'benchnc' });
    await rate(Math.min(20, N), Math.min(4, C), ike);
    const ikeSeq = await rate(N, 1, ike);
    const ikeConc = await rate(N, C, ike);
    const withChild = initiate({ child: 'bench' });
    const seq = await rate(N, 1, withChild);
    const conc = await rate(N, C, withChild);
    for (const v of clients) v.close();
    return { seq, conc, ikeSeq, ikeConc, failed };
  } catch (e) {
    return (e as Error).message;
  } finally {
    if (process.env.BENCH_DEBUG)
      spawnSync('sh', [
        '-c',
        `cp ${dir}/a/charon.log /tmp/bench-a.log; cp ${dir}/b/charon.log /tmp/bench-b.log`,
      ]);
    for (const s of swans)
      if (s.proc.pid !== undefined && s.proc.exitCode === null) process.kill(s.proc.pid, 'SIGKILL');
    spawnSync('ip', ['netns', 'del', nsA]);
    spawnSync('ip', ['netns', 'del', nsB]);
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'dxk-bench-'));
  const pki = await makePki();
  try {
    const creds: Creds = {
      rootPem: pki.rootPem,
      a: await pki.issuePlain('192.0.2.1'),
      b: await pki.issuePlain('192.0.2.2'),
    };
    const fmt = (x: number): string => x.toFixed(0).padStart(6);
    console.log(`IKE_SA_INIT + IKE_AUTH (ECDSA P-256, X25519, AES-GCM-16-128) + 1 child SA; N=${N}`);
    let udpSeq = NaN;
    let udpConc = NaN;
    let ikeSeq = NaN;
    let ikeConc = NaN;
    if (process.env.ONLY_SWAN !== '1') {
      const memSeq = await inProcess(creds, 1);
      const memConc = await inProcess(creds, C);
      console.log(
        `ours, in-process, +child      1 in flight: ${fmt(memSeq)} /s   ${C} in flight: ${fmt(memConc)} /s`,
      );
      ikeSeq = await udpLoopback(creds, dir, 1, false);
      ikeConc = await udpLoopback(creds, dir, C, false);
      console.log(
        `ours, UDP, IKE only           1 in flight: ${fmt(ikeSeq)} /s   ${C} in flight: ${fmt(ikeConc)} /s`,
      );
      udpSeq = await udpLoopback(creds, dir, 1);
      udpConc = await udpLoopback(creds, dir, C);
      console.log(
        `ours, UDP, +child             1 in flight: ${fmt(udpSeq)} /s   ${C} in flight: ${fmt(udpConc)} /s`,
      );
    }
    if (process.env.SKIP_SWAN === '1') {
      console.log('strongSwan: skipped (SKIP_SWAN=1)');
      return;
    }
    const swan = await strongswan(creds, dir);
    if (typeof swan === 'string') {
      console.log(`strongSwan, two charons: not measured (${swan})`);
      return;
    }
    console.log(
      `strongSwan, IKE only          1 in flight: ${fmt(swan.ikeSeq)} /s   ${C} in flight: ${fmt(swan.ikeConc)} /s`,
    );
    console.log(
      `strongSwan, +child            1 in flight: ${fmt(swan.seq)} /s   ${C} in flight: ${fmt(swan.conc)} /s` +
        (swan.failed ? `   (${swan.failed} initiations failed)` : ''),
    );
    const r = (a: number, b: number): string => (a / b).toFixed(2);
    console.log(
      `ratio ours / strongSwan, IKE only: ${r(ikeSeq, swan.ikeSeq)} one at a time, ${r(ikeConc, swan.ikeConc)} with ${C} in flight;` +
        ` with a child SA: ${r(udpSeq, swan.seq)}, ${r(udpConc, swan.conc)}`,
    );
  } finally {
    pki.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--responder') await responderMain(process.argv[3]!);
else await main();
