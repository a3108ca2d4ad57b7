/**
 * Hostile IKE against a real `distnat peer --ike` (issue #6), in two
 * namespaces of this test's own:
 *
 *   dxh-p   203.0.113.3/24 on dxh-p0, the peer on UDP 500/4500;
 *           192.0.2.0/24 via 203.0.113.10 so its answers to the flood come back
 *   dxh-c   203.0.113.10/24 on dxh-c0 (the legitimate initiator), and
 *           192.0.2.1-200/32 on the same link (the flood's sources)
 *
 * A relay in dxh-c (node:dgram, one socket bound per source address) sends
 * what the test builds and reports every datagram that comes back, so the
 * test sees the peer's answers as the wire carries them. The peer's own
 * view comes from `distnat status peer --run-dir D --json` (counters ike.*).
 *
 * (a) Malformed input: garbage, truncated headers, wrong length fields, bad
 *     payload chains, a valid IKE_SA_INIT cut at every length (with the
 *     length field as sent and as fixed to the cut), on 500 and on 4500
 *     behind the non-ESP marker, and a valid one with bytes changed.
 * (b) A flood of IKE_SA_INIT from 200 addresses: the peer keeps at most its
 *     cookie threshold (16) half open, answers the rest with COOKIE, cookies
 *     are bound to the address they were made for (sources that return
 *     theirs each open one SA, as RFC 7296 2.6 allows), and a legitimate
 *     initiator (a root-issued certificate, as `ca issue-peer` makes)
 *     completes IKE_AUTH during and after the flood. Drops for full socket
 *     buffers (/proc/net/snmp) are read and allowed for, never hidden.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { controlRequest } from '../../src/control/client.ts';
import { controlSocketPath } from '../../src/control/protocol.ts';
import { COOKIE_LENGTH } from '../../src/ike/cookie.ts';
import { ExchangeType, HeaderFlag, NotifyType, PayloadType } from '../../src/ike/constants.ts';
import { IkeDaemon, MemoryNetwork } from '../../src/ike/index.ts';
import { emitIkeMessage, parseIkeMessage, type IkeMessage } from '../../src/ike/message.ts';
import { notify, type Payload } from '../../src/ike/payloads.ts';
import { CertificateAuthority, issuePeerCertificate } from '../../src/pki/index.ts';
import { DISTNAT, pseudoRandomBytes } from '../helpers/distnat.ts';
import type { DaemonStatus } from '../helpers/distnat.ts';
import {
  describe as describeResult,
  execIn,
  onExitCleanup,
  run,
  sleep,
  spawnBackground,
} from '../helpers/process.ts';
import type { Background } from '../helpers/process.ts';

const IS_ROOT = process.getuid?.() === 0;
const ROOT_DIR = new URL('../../', import.meta.url).pathname;
const NS_PEER = 'dxh-p';
const NS_CLIENTS = 'dxh-c';
const PEER = '203.0.113.3';
const LEGIT = '203.0.113.10';
const FLOOD_SOURCES = Array.from({ length: 200 }, (_, i) => `192.0.2.${i + 1}`);
/** The IkeDaemon default `distnat peer` runs with (the IKE file has no knob for it). */
const COOKIE_THRESHOLD = 16;

/** The relay: JSON lines in (bind, send), JSON lines out (answers, and every datagram received). */
const RELAY_JS = `
import { createSocket } from 'node:dgram';
import { createInterface } from 'node:readline';
const sockets = new Map();
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const bind = (address) => new Promise((resolve, reject) => {
  const s = createSocket('udp4');
  s.once('error', reject);
  s.bind(0, address, () => {
    s.off('error', reject);
    s.on('error', (e) => out({ ev: 'error', on: address, message: e.message }));
    s.on('message', (m, r) => out({ ev: 'rx', on: address, from: r.address + ':' + r.port, hex: m.toString('hex') }));
    resolve(s);
  });
});
const send = (s, data, port, to) => new Promise((resolve) => s.send(data, port, to, (e) => resolve(e)));
for await (const line of createInterface({ input: process.stdin })) {
  const c = JSON.parse(line);
  if (c.op === 'bind') {
    for (const a of c.addresses) if (!sockets.has(a)) sockets.set(a, await bind(a));
    out({ op: 'bind', n: sockets.size });
  } else if (c.op === 'send') {
    let errors = 0;
    for (let i = 0; i < c.items.length; i++) {
      const [from, port, hex] = c.items[i];
      if (await send(sockets.get(from), Buffer.from(hex, 'hex'), port, c.to)) errors++;
      // Paced, so that the peer's socket buffer, not the peer, is never what drops.
      if ((i + 1) % c.batch === 0) await new Promise((r) => setTimeout(r, c.pauseMs));
    }
    out({ op: 'send', n: c.items.length, errors });
  }
}
`;

interface Rx {
  on: string;
  from: string;
  data: Buffer;
}

/** Sends datagrams from chosen sources in dxh-c and collects what comes back. */
class Relay {
  readonly received: Rx[] = [];
  readonly #proc: ChildProcess;
  readonly #waiters: { op: string; resolve: (o: Record<string, unknown>) => void }[] = [];
  #stderr = '';

  constructor(script: string) {
    this.#proc = spawn('ip', ['netns', 'exec', NS_CLIENTS, process.execPath, script], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.#proc.stderr!.on('data', (d: Buffer) => (this.#stderr += d.toString()));
    this.#proc.stdin!.on('error', () => undefined);
    createInterface({ input: this.#proc.stdout! }).on('line', (line) => {
      const o = JSON.parse(line) as Record<string, unknown>;
      if (o.ev === 'rx')
        this.received.push({
          on: o.on as string,
          from: o.from as string,
          data: Buffer.from(o.hex as string, 'hex'),
        });
      else if (o.ev === 'error') this.#stderr += `socket error on ${String(o.on)}: ${String(o.message)}\n`;
      else {
        const i = this.#waiters.findIndex((w) => w.op === o.op);
        if (i >= 0) this.#waiters.splice(i, 1)[0]!.resolve(o);
      }
    });
  }

  #call(cmd: Record<string, unknown>, ms = 30_000): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`relay: no answer to ${String(cmd.op)}; ${this.#stderr}`)),
        ms,
      );
      this.#waiters.push({
        op: cmd.op as string,
        resolve: (o) => {
          clearTimeout(t);
          resolve(o);
        },
      });
      this.#proc.stdin!.write(JSON.stringify(cmd) + '\n');
    });
  }

  async bind(addresses: readonly string[]): Promise<void> {
    await this.#call({ op: 'bind', addresses });
  }

  /** Sends [source, port, bytes] in order; resolves once all are handed to the kernel. */
  async send(items: readonly [string, number, Buffer][], pace = { batch: 25, pauseMs: 2 }): Promise<void> {
    const r = await this.#call({
      op: 'send',
      to: PEER,
      ...pace,
      items: items.map(([from, port, data]) => [from, port, data.toString('hex')]),
    });
    expect(r.errors, 'datagrams the relay could not send').toBe(0);
  }

  /** What arrived since `mark` (an index into `received`). */
  since(mark: number): Rx[] {
    return this.received.slice(mark);
  }

  kill(): void {
    if (this.#proc.exitCode === null && this.#proc.pid !== undefined) this.#proc.kill('SIGKILL');
  }
}

let dir: string;
let runDir: string;
let peer: Background | undefined;
let relay: Relay | undefined;
/** A valid IKE_SA_INIT request as src/ike sends it (from LEGIT), the template for everything sent. */
let init: Buffer;
let initMsg: IkeMessage;
let unregisterCleanup: (() => void) | undefined;

const ip = async (...args: string[]): Promise<void> => {
  const r = await run(['ip', ...args]);
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${describeResult(r)}`);
};

function removeNamespaces(): void {
  for (const ns of [NS_PEER, NS_CLIENTS]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
}

/** The peer's status as the command line prints it. */
async function statusCli(): Promise<DaemonStatus> {
  const r = await run([DISTNAT, 'status', 'peer', '--run-dir', runDir, '--json'], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`distnat status peer: ${describeResult(r)}`);
  return JSON.parse(r.stdout) as DaemonStatus;
}

/** The same from the control socket, without a process start: for polling. */
async function status(): Promise<DaemonStatus> {
  const reply = await controlRequest(controlSocketPath(runDir, 'peer'), { command: 'status' }, 5000);
  if (!reply.ok) throw new Error(`peer status: ${reply.error}`);
  return reply.status as DaemonStatus;
}

const count = (s: DaemonStatus, name: string): number => s.counters[name] ?? 0;
const delta = (after: DaemonStatus, before: DaemonStatus, name: string): number =>
  count(after, name) - count(before, name);
/** Sum of the deltas of the counters whose names start with `prefix`. */
function deltaPrefix(after: DaemonStatus, before: DaemonStatus, prefix: string): number {
  let n = 0;
  for (const k of Object.keys(after.counters)) if (k.startsWith(prefix)) n += delta(after, before, k);
  return n;
}
const peerLog = (): string => (peer ? `\n--- peer log\n${(peer.stdout() + peer.stderr()).slice(-3000)}` : '');

function expectPeerAlive(): void {
  expect(peer?.running(), `distnat peer exited${peerLog()}`).toBe(true);
  expect(peer!.stdout() + peer!.stderr(), 'exceptions in the peer log').not.toMatch(
    /TypeError|RangeError|ReferenceError|uncaught|unhandled/i,
  );
}

/** Waits until the peer has handled every datagram sent (its counters stop moving). */
async function settle(): Promise<DaemonStatus> {
  let last = JSON.stringify((await status()).counters);
  for (let i = 0; i < 50; i++) {
    await sleep(100);
    const s = await status();
    const now = JSON.stringify(s.counters);
    if (now === last) return s;
    last = now;
  }
  throw new Error('the peer did not settle');
}

/** `init` with another SPIi (and optionally a COOKIE notify first), length field fixed. */
function initWith(spiI: bigint, cookie?: Buffer): Buffer {
  const payloads: Payload[] = [...initMsg.payloads];
  if (cookie !== undefined) payloads.unshift(notify(NotifyType.COOKIE, cookie));
  return emitIkeMessage(
    {
      spiI,
      spiR: 0n,
      exchange: ExchangeType.IKE_SA_INIT,
      flags: initMsg.header.flags,
      messageId: 0,
    },
    payloads,
  );
}

const freshSpi = (): bigint => randomBytes(8).readBigUInt64BE(0) | 1n;

/** A relay datagram's answer: a COOKIE request, a real IKE_SA_INIT response (SA payload), or other. */
function classify(d: Buffer): { kind: 'cookie' | 'response' | 'other'; spiI: bigint; cookie?: Buffer } {
  const m = parseIkeMessage(d);
  if (!m.ok) return { kind: 'other', spiI: 0n };
  const first = m.value.payloads[0];
  if (first?.type === PayloadType.NOTIFY && 'notifyType' in first && first.notifyType === NotifyType.COOKIE)
    return { kind: 'cookie', spiI: m.value.header.spiI, cookie: first.data };
  if (m.value.payloads.some((p) => p.type === PayloadType.SA))
    return { kind: 'response', spiI: m.value.header.spiI };
  return { kind: 'other', spiI: m.value.header.spiI };
}

/** UDP datagrams each namespace's kernel dropped for a full receive buffer (/proc/net/snmp, RcvbufErrors). */
async function udpDrops(): Promise<{ peer: number; clients: number }> {
  const read = async (ns: string): Promise<number> => {
    const r = await execIn(ns, ['cat', '/proc/net/snmp']);
    const [names, values] = r.stdout.split('\n').filter((l) => l.startsWith('Udp:'));
    const i = names!.split(/\s+/).indexOf('RcvbufErrors');
    return Number(values!.split(/\s+/)[i]);
  };
  return { peer: await read(NS_PEER), clients: await read(NS_CLIENTS) };
}

/** The notify types of an answer (marker stripped on 4500); ['unparsable'] or ['SA'] otherwise. */
function answerNotifies(r: Rx): (number | string)[] {
  const data = r.from.endsWith(':4500') ? r.data.subarray(4) : r.data;
  const m = parseIkeMessage(data);
  if (!m.ok) return ['unparsable'];
  if (m.value.payloads.some((p) => p.type === PayloadType.SA)) return ['SA'];
  return m.value.payloads.map((p) => ('notifyType' in p ? p.notifyType : p.type));
}

/** One IKE_SA_INIT + IKE_AUTH from LEGIT with its root-issued certificate; the helper's verdict. */
async function legitimate(): Promise<{ ok: boolean; reason?: string }> {
  const r = await execIn(
    NS_CLIENTS,
    [
      process.execPath,
      '--import',
      'tsx',
      join(ROOT_DIR, 'test/helpers/ike-initiate.ts'),
      JSON.stringify({
        address: LEGIT,
        port: 0,
        cert: join(dir, 'legit/cert.pem'),
        key: join(dir, 'legit/key.pem'),
        root: join(dir, 'root.pem'),
        remote: { address: PEER, port: 500 },
      }),
    ],
    { timeoutMs: 30_000, cwd: ROOT_DIR },
  );
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as { ok: boolean; reason?: string };
  } catch {
    return { ok: false, reason: `initiator: ${describeResult(r)}` };
  }
}

/** The IKE_SA_INIT src/ike sends, caught on a memory network. */
async function captureInit(certPem: string, keyPem: string, rootPem: string): Promise<Buffer> {
  const net = new MemoryNetwork();
  let caught: Buffer | undefined;
  net.attach(PEER, 500).onMessage((d) => (caught ??= Buffer.from(d)));
  const daemon = new IkeDaemon({
    transport: net.attach(LEGIT, 500),
    identity: { certificate: certPem, privateKey: keyPem },
    trust: { roots: [rootPem] },
    retransmit: { timeoutMs: 50, base: 1, tries: 1 },
  });
  const attempt = daemon.initiate({ address: PEER, port: 500 }, null).catch(() => undefined);
  for (let i = 0; i < 100 && caught === undefined; i++) await sleep(10);
  await daemon.close();
  await attempt;
  if (caught === undefined) throw new Error('src/ike sent no IKE_SA_INIT');
  return caught;
}

describe.skipIf(!IS_ROOT)('distnat peer --ike under hostile input', () => {
  beforeAll(async () => {
    unregisterCleanup = onExitCleanup(() => {
      relay?.kill();
      if (peer?.pid !== undefined) spawnSync('kill', ['-KILL', String(peer.pid)]);
      removeNamespaces();
    });
    dir = mkdtempSync(join(tmpdir(), 'dxh-ike-'));
    runDir = join(dir, 'run');
    mkdirSync(runDir);

    // The root (`distnat ca init`), the peer's and the initiator's certificates (`ca issue-peer`).
    const root = await CertificateAuthority.initRoot(join(dir, 'ca'));
    const rootPem = root.certificate.toString('pem');
    writeFileSync(join(dir, 'root.pem'), rootPem);
    const issued: Record<string, { chainPem: string; keyPem: string }> = {};
    for (const [name, address] of [
      ['peer', PEER],
      ['legit', LEGIT],
    ] as const) {
      const p = await issuePeerCertificate(root, { address });
      mkdirSync(join(dir, name));
      writeFileSync(join(dir, name, 'cert.pem'), p.chainPem);
      writeFileSync(join(dir, name, 'key.pem'), p.keyPem, { mode: 0o600 });
      issued[name] = p;
    }
    init = await captureInit(issued.legit!.chainPem, issued.legit!.keyPem, rootPem);
    const parsed = parseIkeMessage(init);
    if (!parsed.ok) throw new Error(`captured IKE_SA_INIT does not parse: ${parsed.reason}`);
    initMsg = parsed.value;

    removeNamespaces();
    await sleep(200);
    for (const ns of [NS_PEER, NS_CLIENTS]) {
      await ip('netns', 'add', ns);
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    await ip(
      'link',
      'add',
      'dxh-p0',
      'netns',
      NS_PEER,
      'type',
      'veth',
      'peer',
      'name',
      'dxh-c0',
      'netns',
      NS_CLIENTS,
    );
    await ip('-n', NS_PEER, 'addr', 'add', `${PEER}/24`, 'dev', 'dxh-p0');
    await ip('-n', NS_CLIENTS, 'addr', 'add', `${LEGIT}/24`, 'dev', 'dxh-c0');
    await ip('-n', NS_PEER, 'link', 'set', 'dxh-p0', 'up');
    await ip('-n', NS_CLIENTS, 'link', 'set', 'dxh-c0', 'up');
    const batch = join(dir, 'addresses.ip');
    writeFileSync(batch, FLOOD_SOURCES.map((a) => `addr add ${a}/32 dev dxh-c0`).join('\n') + '\n');
    await ip('-n', NS_CLIENTS, '-batch', batch);
    await ip('-n', NS_PEER, 'route', 'add', '192.0.2.0/24', 'via', LEGIT);

    writeFileSync(
      join(dir, 'peer-ike.yaml'),
      [
        `trust: [${join(dir, 'root.pem')}]`,
        `certificate: ${join(dir, 'peer/cert.pem')}`,
        `key: ${join(dir, 'peer/key.pem')}`,
        '',
      ].join('\n'),
    );
    peer = spawnBackground(NS_PEER, [
      DISTNAT,
      'peer',
      '--ike',
      join(dir, 'peer-ike.yaml'),
      '--wan-if',
      'dxh-p0',
      '--tun',
      'dxht0',
      '--run-dir',
      runDir,
    ]);
    await peer.waitForOutput(/IKE listening/, { timeoutMs: 30_000 });
    for (let i = 0; i < 100; i++) {
      if (
        await status().then(
          () => true,
          () => false,
        )
      )
        break;
      await sleep(100);
    }

    const script = join(dir, 'relay.mjs');
    writeFileSync(script, RELAY_JS);
    relay = new Relay(script);
    await relay.bind([LEGIT, ...FLOOD_SOURCES]);
  }, 90_000);

  afterAll(async () => {
    relay?.kill();
    await peer?.stop();
    removeNamespaces();
    if (dir) rmSync(dir, { recursive: true, force: true });
    unregisterCleanup?.();
  });

  it('answers nothing to a valid IKE_SA_INIT cut at every length, and counts each as truncated', async () => {
    const before = await status();
    const mark = relay!.received.length;
    const items: [string, number, Buffer][] = [];
    // As cut: the length field still says the whole message.
    for (let n = 0; n < init.length; n++) items.push([LEGIT, 500, init.subarray(0, n)]);
    // With the length field made to agree: now the payload chain is what is cut.
    for (let n = 28; n < init.length; n++) {
      const cut = Buffer.from(init.subarray(0, n));
      cut.writeUInt32BE(n, 24);
      items.push([LEGIT, 500, cut]);
    }
    await relay!.send(items);
    const after = await settle();
    expectPeerAlive();
    expect(delta(after, before, 'ike.malformed-truncated'), JSON.stringify(after.counters)).toBe(
      items.length,
    );
    expect(relay!.since(mark), 'answers to truncated messages').toEqual([]);
    expect(count(after, 'ike.sas')).toBe(count(before, 'ike.sas'));
  });

  it('survives garbage, bad lengths and bad payload chains on 500 and 4500', async () => {
    const before = await status();
    const items: [string, number, Buffer][] = [];
    const both = (b: Buffer): void => {
      items.push([LEGIT, 500, b]);
      items.push([LEGIT, 4500, Buffer.concat([Buffer.alloc(4), b])]);
    };
    // Garbage of many lengths, reproducible.
    for (let k = 0; k < 60; k++) both(pseudoRandomBytes(1 + ((k * 97) % 1400), 0x1ce + k));
    // Wrong length fields.
    for (const len of [0, 27, 28, init.length - 1, init.length + 1, 0xffff, 0xffffffff]) {
      const b = Buffer.from(init);
      b.writeUInt32BE(len >>> 0, 24);
      both(b);
    }
    // Bad payload chains, from the first payload's generic header (offset 28).
    const chain = (edit: (b: Buffer) => void): void => {
      const b = Buffer.from(init);
      edit(b);
      both(b);
    };
    chain((b) => b.writeUInt16BE(0, 30)); // payload length 0
    chain((b) => b.writeUInt16BE(3, 30)); // shorter than its own header
    chain((b) => b.writeUInt16BE(0xffff, 30)); // past the end
    chain((b) => b.writeUInt16BE(b.readUInt16BE(30) + 1, 30)); // one too long: the next header misread
    chain((b) => (b[28] = 0)); // chain ends after the SA payload, bytes left over
    chain((b) => (b[16] = PayloadType.SK)); // an SK payload in IKE_SA_INIT
    // A chain of more payloads than anyone sends (empty notifies).
    const many = Array.from({ length: 200 }, () => notify(NotifyType.INVALID_SYNTAX));
    both(
      emitIkeMessage(
        {
          spiI: freshSpi(),
          spiR: 0n,
          exchange: ExchangeType.IKE_SA_INIT,
          flags: HeaderFlag.INITIATOR,
          messageId: 0,
        },
        many,
      ),
    );
    // Header fields an IKE_SA_INIT request must not have.
    const header = (edit: (b: Buffer) => void): void => {
      const b = Buffer.from(init);
      b.writeBigUInt64BE(freshSpi(), 0);
      edit(b);
      both(b);
    };
    header((b) => (b[17] = 0x30)); // major version 3
    header((b) => b.writeUInt32BE(7, 20)); // message id 7
    header((b) => b.writeBigUInt64BE(0x1234n, 8)); // a responder SPI already
    header((b) => b.writeBigUInt64BE(0n, 0)); // no initiator SPI
    header((b) => (b[19] = 0)); // not from the initiator
    header((b) => (b[19] = HeaderFlag.INITIATOR | HeaderFlag.RESPONSE)); // a response
    header((b) => (b[18] = ExchangeType.IKE_AUTH)); // IKE_AUTH for an SA nobody has
    header((b) => (b[18] = 99)); // an unknown exchange
    // IKE_SA_INIT without SA, KE or nonce: answered INVALID_SYNTAX, no state.
    for (const drop of [PayloadType.SA, PayloadType.KE, PayloadType.NONCE])
      both(
        emitIkeMessage(
          {
            spiI: freshSpi(),
            spiR: 0n,
            exchange: ExchangeType.IKE_SA_INIT,
            flags: HeaderFlag.INITIATOR,
            messageId: 0,
          },
          initMsg.payloads.filter((p) => p.type !== drop),
        ),
      );
    // 4500 without the marker (ESP-in-UDP the peer has no SA for) and a keepalive.
    items.push([LEGIT, 4500, Buffer.from(init)], [LEGIT, 4500, Buffer.from([0xff])]);
    // Port 500 with a marker.
    items.push([LEGIT, 500, Buffer.concat([Buffer.alloc(4), init])]);

    const mark = relay!.received.length;
    const drops0 = await udpDrops();
    await relay!.send(items);
    const after = await settle();
    expectPeerAlive();
    const lost = (await udpDrops()).peer - drops0.peer;
    expect(lost, 'datagrams dropped by the kernel: run again on a quieter machine').toBe(0);
    // What came back: INVALID_SYNTAX for the requests without SA, KE or nonce, nothing else.
    const answers = relay!.since(mark).map((r) => answerNotifies(r));
    expect(answers).toEqual(Array.from({ length: 6 }, () => [NotifyType.INVALID_SYNTAX]));
    const established = (s: DaemonStatus): number => count(s, 'ike.sas') - count(s, 'ike.half-open');
    expect(established(after), 'IKE SAs past IKE_SA_INIT').toBe(established(before));
    expect(count(after, 'ike.half-open')).toBe(count(before, 'ike.half-open'));
    expect(deltaPrefix(after, before, 'ike.malformed-'), JSON.stringify(after.counters)).toBeGreaterThan(100);
    expect(delta(after, before, 'ike.bad-version')).toBe(2);
    expect(delta(after, before, 'ike.init-malformed')).toBe(6);
    // On 500 the request with SPIi 0 begins with four zero bytes, a non-ESP marker, which port 500 never carries.
    expect(delta(after, before, 'ike.init-bad-header')).toBe(3 * 2 - 1);
    // Every datagram is counted once, under one reason: in IKE, or where the transport drops it
    // (markerless on 4500, the keepalive, a marker on 500, SPIi 0 on 500).
    expect(delta(after, before, 'ike.transport.not-ike')).toBe(1);
    expect(delta(after, before, 'ike.transport.keepalive')).toBe(1);
    expect(delta(after, before, 'ike.transport.marker-on-500')).toBe(2);
    const gauges = new Set(['ike.sas', 'ike.half-open', 'ike.child-sas']);
    const counted = Object.keys(after.counters)
      .filter((k) => k.startsWith('ike.') && !gauges.has(k) && !k.startsWith('ike.crl'))
      .reduce((n, k) => n + delta(after, before, k), 0);
    expect(counted, JSON.stringify(after.counters)).toBe(items.length);
  });

  it('refuses an IKE_SA_INIT whose first payload is of an unknown type marked critical, keeping no state', async () => {
    const before = await status();
    const mark = relay!.received.length;
    const b = Buffer.from(init);
    b.writeBigUInt64BE(freshSpi(), 0);
    b[16] = 200;
    b[29] = 0x80;
    await relay!.send([[LEGIT, 500, b]]);
    const after = await settle();
    expectPeerAlive();
    expect(count(after, 'ike.sas')).toBe(count(before, 'ike.sas'));
    // RFC 7296 2.5: UNSUPPORTED_CRITICAL_PAYLOAD, naming the payload type.
    const answers = relay!.since(mark).map((r) => answerNotifies(r));
    expect(answers).toEqual([[NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD]]);
    expect(
      count(after, 'ike.init-unsupported-critical') - count(before, 'ike.init-unsupported-critical'),
    ).toBe(1);
  });

  it('answers a flood from 200 addresses with cookies, opens SAs only up to the threshold or for returned cookies, and lets a legitimate initiator in during and after it', async () => {
    const before = await statusCli();
    const halfOpen0 = count(before, 'ike.half-open');
    const mark = relay!.received.length;
    // Wave 1: one IKE_SA_INIT from each address.
    const sent = new Map<bigint, string>();
    const wave = (): [string, number, Buffer][] =>
      FLOOD_SOURCES.map((a) => {
        const spi = freshSpi();
        sent.set(spi, a);
        return [a, 500, initWith(spi)];
      });
    const drops0 = await udpDrops();
    // Slowly enough that the sixteen Diffie-Hellman computations do not fill the peer's socket buffer.
    await relay!.send(wave(), { batch: 5, pauseMs: 5 });
    const s1 = await settle();
    expectPeerAlive();
    const drops1 = await udpDrops();
    const lostAtPeer = drops1.peer - drops0.peer;
    const lostAtClients = drops1.clients - drops0.clients;
    expect(lostAtPeer + lostAtClients, 'datagrams the kernel dropped for full socket buffers').toBeLessThan(
      20,
    );
    const answers1 = relay!.since(mark).map((r) => ({ ...r, ...classify(r.data) }));
    const responses1 = answers1.filter((a) => a.kind === 'response');
    const cookies1 = answers1.filter((a) => a.kind === 'cookie');
    const opened = Math.max(0, COOKIE_THRESHOLD - halfOpen0);
    // The first requests open SAs up to the threshold, every later one is answered with a cookie.
    expect(count(s1, 'ike.half-open')).toBe(Math.max(COOKIE_THRESHOLD, halfOpen0));
    expect(delta(s1, before, 'ike.init-cookie-sent')).toBe(FLOOD_SOURCES.length - lostAtPeer - opened);
    expect(responses1.length + cookies1.length).toBe(FLOOD_SOURCES.length - lostAtPeer - lostAtClients);
    expect(responses1.length, 'full IKE_SA_INIT responses').toBeLessThanOrEqual(opened);
    expect(answers1.filter((a) => a.kind === 'other')).toEqual([]);
    for (const c of cookies1) {
      // Each answer goes back to the address and SPI that asked.
      expect(sent.get(c.spiI)).toBe(c.on);
      expect(c.cookie!.length).toBe(COOKIE_LENGTH);
    }

    // Wave 2 and on: the flood goes on, a wave from every address after another, until a
    // legitimate initiator started with it has its answer.
    const mark2 = relay!.received.length;
    let legitDone = false;
    const legit = legitimate().finally(() => (legitDone = true));
    let waves = 0;
    while ((!legitDone || waves < 2) && waves < 100) {
      await relay!.send(wave(), { batch: 10, pauseMs: 10 });
      waves++;
    }
    const during = await legit;
    const s2 = await settle();
    expectPeerAlive();
    expect(during, `legitimate initiator during the flood${peerLog()}`).toEqual({ ok: true });
    const answers2 = relay!.since(mark2).map((r) => ({ on: r.on, ...classify(r.data) }));
    expect(
      answers2.filter((a) => a.kind === 'response'),
      'SAs opened by the flood beyond the threshold',
    ).toEqual([]);
    const drops2 = await udpDrops();
    const lost2 = drops2.peer - drops1.peer + drops2.clients - drops1.clients;
    expect(lost2, 'datagrams the kernel dropped for full socket buffers').toBeLessThan(waves * 20);
    expect(answers2.filter((a) => a.kind === 'cookie').length).toBe(waves * FLOOD_SOURCES.length - lost2);
    expect(count(s2, 'ike.half-open')).toBeLessThanOrEqual(COOKIE_THRESHOLD);
    // The legitimate initiator was asked for a cookie too, and came back with it.
    expect(delta(s2, s1, 'ike.init-cookie-sent') + (drops2.clients - drops1.clients)).toBeGreaterThan(
      waves * FLOOD_SOURCES.length - (drops2.peer - drops1.peer),
    );
    console.log(
      `flood: ${(waves + 1) * FLOOD_SOURCES.length} IKE_SA_INIT from ${FLOOD_SOURCES.length} addresses, ` +
        `${cookies1.length + answers2.length} COOKIE answers, ${responses1.length} SAs opened; ` +
        `ike.init-cookie-sent ${delta(s2, before, 'ike.init-cookie-sent')}, half-open ${count(s2, 'ike.half-open')}; ` +
        `${waves} waves while the legitimate initiator ran; UDP receive buffer drops ` +
        `${drops2.peer - drops0.peer} at the peer, ${drops2.clients - drops0.clients} at the flood's sockets`,
    );

    // A cookie is good only from the address it was made for, with the same SPI and nonce.
    const c = cookies1[0]!;
    const mark3 = relay!.received.length;
    await relay!.send([
      [FLOOD_SOURCES[FLOOD_SOURCES.indexOf(c.on) === 0 ? 1 : 0]!, 500, initWith(c.spiI, c.cookie)],
      [c.on, 500, initWith(c.spiI, c.cookie)],
    ]);
    const s3 = await settle();
    const answers3 = relay!.since(mark3).map((r) => ({ on: r.on, ...classify(r.data) }));
    expect(answers3.map((a) => [a.on === c.on ? 'owner' : 'other address', a.kind]).sort()).toEqual([
      ['other address', 'cookie'],
      ['owner', 'response'],
    ]);
    expect(count(s3, 'ike.half-open')).toBe(count(s2, 'ike.half-open') + 1);

    // Sources that own their addresses can return their cookies (RFC 7296 2.6 stops only spoofed
    // ones): each such request opens an SA, up to halfOpenLimit (5000), and no further.
    const lastWave = answers2.filter((a) => a.kind === 'cookie').slice(-FLOOD_SOURCES.length);
    const mark4 = relay!.received.length;
    const drops3 = await udpDrops();
    await relay!.send(
      lastWave.map((a) => [a.on, 500, initWith(a.spiI, a.cookie)]),
      { batch: 5, pauseMs: 5 },
    );
    const s4 = await settle();
    expectPeerAlive();
    const lost4 = (await udpDrops()).peer - drops3.peer;
    const answers4 = relay!.since(mark4).map((r) => classify(r.data));
    expect(count(s4, 'ike.half-open')).toBe(count(s3, 'ike.half-open') + lastWave.length - lost4);
    expect(answers4.filter((a) => a.kind === 'cookie')).toEqual([]);
    expect(count(s4, 'ike.init-half-open-limit')).toBe(0);

    const after = await legitimate();
    expect(after, `legitimate initiator after the flood${peerLog()}`).toEqual({ ok: true });
    const final = await statusCli();
    expectPeerAlive();
    // Half-open SAs stay bounded by what the cookies let in: the threshold and the cookies returned.
    expect(count(final, 'ike.half-open')).toBeLessThanOrEqual(COOKIE_THRESHOLD + 1 + lastWave.length);
    expect(count(final, 'ike.init-half-open-limit')).toBe(0);
  });

  it('survives a valid IKE_SA_INIT with bytes changed, and still completes IKE_AUTH with a legitimate initiator', async () => {
    const before = await status();
    const items: [string, number, Buffer][] = [];
    // xorshift32 with a fixed seed: a failure repeats byte for byte.
    let x = 0x6b1d;
    const next = (): number => {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>>= 0);
    };
    for (let k = 0; k < 300; k++) {
      const b = Buffer.from(init);
      b.writeBigUInt64BE((BigInt(next()) << 32n) | BigInt(next()) | 1n, 0);
      for (let flips = 1 + (next() % 3); flips > 0; flips--) {
        const at = 8 + (next() % (b.length - 8));
        b[at] = b[at]! ^ (1 + (next() % 255));
      }
      items.push([LEGIT, k % 2 === 0 ? 500 : 4500, k % 2 === 0 ? b : Buffer.concat([Buffer.alloc(4), b])]);
    }
    await relay!.send(items);
    const after = await settle();
    expectPeerAlive();
    // Some changed messages are still valid requests and open SAs: never more than the cookie threshold lets in.
    expect(count(after, 'ike.half-open')).toBeLessThanOrEqual(
      Math.max(COOKIE_THRESHOLD, count(before, 'ike.half-open')),
    );
    const verdict = await legitimate();
    expect(verdict, peerLog()).toEqual({ ok: true });
  });
});
