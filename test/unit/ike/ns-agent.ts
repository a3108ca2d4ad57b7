/**
 * An IKE endpoint in a network namespace, driven by the namespace tests
 * over stdin/stdout (one JSON object per line). It runs IkeDaemon on a real
 * UDP socket and can push an ICMP echo through the negotiated child SA as
 * ESP-in-UDP (AES-GCM or AES-CBC + HMAC-SHA-256-128, built here with
 * node:crypto, independently of src/ipsec), to prove that the keys agree
 * with the peer's. Not a test file itself.
 *
 *   ip netns exec dxk-ours node --import tsx test/unit/ike/ns-agent.ts config.json
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import {
  IkeDaemon,
  UdpTransport,
  hostSelector,
  selectorPolicy,
  spiAllocatorFromBlocks,
  type IkeReceiveHandler,
  type IkeSa,
  type IkeTransport,
  type NegotiatedChildSa,
} from '../../../src/ike/index.ts';
import { internetChecksum } from '../../../src/wire/checksum.ts';
import { emitIkeMessage } from '../../../src/ike/message.ts';
import { ExchangeType, HeaderFlag, PayloadType } from '../../../src/ike/constants.ts';

interface AgentConfig {
  address: string;
  port: number;
  nattPort?: number;
  certPem: string;
  keyPem: string;
  chainPem?: string[];
  rootPem: string;
  ike?: string[];
  esp?: string[];
  cookieThreshold?: number;
  signatureHashes?: boolean;
  rsaPss?: boolean;
  fragmentSize?: number;
  inner: { local: string; remote: string };
}

const cfg = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as AgentConfig;
const out = (o: object): void => {
  process.stdout.write(JSON.stringify(o) + '\n');
};

const children = new Map<number, NegotiatedChildSa>();
const espWaiters: ((data: Buffer) => void)[] = [];
const transport = await UdpTransport.open({
  address: cfg.address,
  port: cfg.port,
  nattPort: cfg.nattPort,
  onEsp: (data) => {
    const w = espWaiters.shift();
    if (w) w(data);
    else out({ event: 'esp-unexpected', length: data.length });
  },
});
/**
 * Set by 'armRekeyCollision': the next CREATE_CHILD_SA request from the
 * peer first makes us rekey our child SA, and reaches the daemon only once
 * our own request is on the wire, so that the two rekeys of the same SA cross
 * (RFC 7296 2.8.1). Handing it on at once raced our request: when the answer
 * left first, the peer had finished its rekey before ours arrived.
 */
let collideNextRekey = false;
let heldRequest: (() => void) | undefined;
const isRequest = (data: Uint8Array): boolean =>
  data.length >= 28 && data[18] === ExchangeType.CREATE_CHILD_SA && (data[19]! & 0x20) === 0;
const releaseHeld = (): void => {
  const h = heldRequest;
  heldRequest = undefined;
  h?.();
};
let deliver: IkeReceiveHandler = () => undefined;
const tapped: IkeTransport = {
  get local() {
    return transport.local;
  },
  get nattPort() {
    return transport.nattPort;
  },
  send: (d, r, n) => {
    transport.send(d, r, n);
    // Before any I/O: a setImmediate let the peer's answer in first on a busy machine.
    if (heldRequest && isRequest(d)) queueMicrotask(releaseHeld);
  },
  onMessage: (h) => {
    deliver = h;
  },
  close: () => transport.close(),
};
transport.onMessage((data, remote, natt) => {
  if (collideNextRekey && isRequest(data)) {
    collideNextRekey = false;
    heldRequest = () => deliver(data, remote, natt);
    // Should our request never leave, the peer's still gets an answer.
    setTimeout(releaseHeld, 2000).unref();
    const sa = daemon.sas.find((s) => s.state === 'established' && s.children.length > 0)!;
    daemon.rekeyChild(sa, sa.children[0]!).then(
      (c) => out({ event: 'collision-rekey', ok: true, child: describeChild(c.negotiated) }),
      (e: Error) => out({ event: 'collision-rekey', ok: false, error: e.message }),
    );
    return;
  }
  deliver(data, remote, natt);
});
const daemon = new IkeDaemon({
  transport: tapped,
  identity: { certificate: cfg.certPem, chain: cfg.chainPem ?? [], privateKey: cfg.keyPem },
  trust: { roots: [cfg.rootPem] },
  spis: spiAllocatorFromBlocks([{ lowest: 256, count: 64 }]),
  ikeProposals: cfg.ike,
  espProposals: cfg.esp,
  cookieThreshold: cfg.cookieThreshold,
  signatureHashes: cfg.signatureHashes,
  rsaPss: cfg.rsaPss,
  fragmentSize: cfg.fragmentSize,
  childPolicy: selectorPolicy([hostSelector(cfg.inner.remote)], [hostSelector(cfg.inner.local)]),
  sad: {
    install: (c) => {
      children.set(c.id, c);
      out({ event: 'install', child: describeChild(c) });
    },
    remove: (c, reason) => {
      children.delete(c.id);
      out({ event: 'remove', id: c.id, reason });
    },
  },
  log: (level, message) => {
    if (level !== 'debug') out({ event: 'log', level, message });
  },
});
daemon.on((e) => out({ event: e.type, reason: 'reason' in e ? e.reason : undefined }));

const hex = (b: Buffer): string => b.toString('hex');
const spi8 = (n: number): string => n.toString(16).padStart(8, '0');

function describeChild(c: NegotiatedChildSa): object {
  return {
    id: c.id,
    mode: c.mode,
    encryption: c.encryption,
    bits: c.encryptionKeyBits,
    integrity: c.integrity,
    inSpi: spi8(c.inbound.spi),
    outSpi: spi8(c.outbound.spi),
    encap: c.encap,
  };
}

function describeSa(sa: IkeSa): object {
  return {
    spiI: sa.spiI.toString(16).padStart(16, '0'),
    spiR: sa.spiR.toString(16).padStart(16, '0'),
    role: sa.role,
    state: sa.state,
    remote: sa.remote,
    natt: sa.natt,
    scheme: sa.peer?.scheme,
    keys: sa.keys && Object.fromEntries(Object.entries(sa.keys).map(([k, v]) => [k, hex(v as Buffer)])),
    children: sa.children.map((c) => describeChild(c.negotiated)),
  };
}

const ip4 = (a: string): Buffer => Buffer.from(a.split('.').map(Number));

/** An IPv4 ICMP echo request from the inner local address to the inner remote one. */
function echoRequest(id: number, seq: number): Buffer {
  const p = Buffer.alloc(20 + 8 + 32);
  p[0] = 0x45;
  p.writeUInt16BE(p.length, 2);
  p[8] = 64;
  p[9] = 1;
  ip4(cfg.inner.local).copy(p, 12);
  ip4(cfg.inner.remote).copy(p, 16);
  p.writeUInt16BE(internetChecksum(p, 0, 20), 10);
  p[20] = 8;
  p.writeUInt16BE(id, 24);
  p.writeUInt16BE(seq, 26);
  p.fill(0x61, 28);
  p.writeUInt16BE(internetChecksum(p, 20, p.length), 22);
  return p;
}

let seq = 0;
/** ESP (RFC 4303) in tunnel mode: SPI, sequence, IV, encrypted (packet, padding, pad length, next header 4), ICV. */
function seal(c: NegotiatedChildSa, inner: Buffer): Buffer {
  const gcm = c.encryption === 'aes-gcm-16';
  const block = gcm ? 4 : 16;
  const pad = (block - ((inner.length + 2) % block)) % block;
  const plain = Buffer.concat([
    inner,
    Buffer.from(Array.from({ length: pad }, (_, i) => i + 1)),
    Buffer.from([pad, 4]),
  ]);
  const head = Buffer.alloc(8);
  head.writeUInt32BE(c.outbound.spi, 0);
  head.writeUInt32BE(++seq, 4);
  const key = c.outbound.encryptionKey;
  if (gcm) {
    const iv = randomBytes(8);
    const k = key.subarray(0, key.length - 4);
    const cipher = createCipheriv(
      `aes-${k.length * 8}-gcm` as 'aes-128-gcm',
      k,
      Buffer.concat([key.subarray(key.length - 4), iv]),
    );
    cipher.setAAD(head);
    const ct = Buffer.concat([cipher.update(plain), cipher.final()]);
    return Buffer.concat([head, iv, ct, cipher.getAuthTag()]);
  }
  const iv = randomBytes(16);
  const cipher = createCipheriv(`aes-${key.length * 8}-cbc`, key, iv);
  cipher.setAutoPadding(false);
  const body = Buffer.concat([head, iv, cipher.update(plain), cipher.final()]);
  const icv = createHmac('sha256', c.outbound.integrityKey).update(body).digest().subarray(0, 16);
  return Buffer.concat([body, icv]);
}

/** The inner packet of an ESP datagram for one of our inbound SAs, or a reason it is not. */
function open(data: Buffer): { ok: true; inner: Buffer; spi: string } | { ok: false; why: string } {
  const spi = data.readUInt32BE(0);
  const c = [...children.values()].find((x) => x.inbound.spi === spi);
  if (!c) return { ok: false, why: `no SA for SPI ${spi8(spi)}` };
  const key = c.inbound.encryptionKey;
  let plain: Buffer;
  try {
    if (c.encryption === 'aes-gcm-16') {
      const k = key.subarray(0, key.length - 4);
      const d = createDecipheriv(
        `aes-${k.length * 8}-gcm` as 'aes-128-gcm',
        k,
        Buffer.concat([key.subarray(key.length - 4), data.subarray(8, 16)]),
      );
      d.setAAD(data.subarray(0, 8));
      d.setAuthTag(data.subarray(data.length - 16));
      plain = Buffer.concat([d.update(data.subarray(16, data.length - 16)), d.final()]);
    } else {
      const icv = createHmac('sha256', c.inbound.integrityKey)
        .update(data.subarray(0, data.length - 16))
        .digest()
        .subarray(0, 16);
      if (!icv.equals(data.subarray(data.length - 16))) return { ok: false, why: 'ICV mismatch' };
      const d = createDecipheriv(`aes-${key.length * 8}-cbc`, key, data.subarray(8, 24));
      d.setAutoPadding(false);
      plain = Buffer.concat([d.update(data.subarray(24, data.length - 16)), d.final()]);
    }
  } catch (e) {
    return { ok: false, why: (e as Error).message };
  }
  const padLength = plain[plain.length - 2]!;
  return { ok: true, inner: plain.subarray(0, plain.length - 2 - padLength), spi: spi8(spi) };
}

async function ping(): Promise<object> {
  const sa = daemon.sas.find((s) => s.state === 'established' && s.children.length > 0);
  const child = sa?.children[sa.children.length - 1];
  if (!sa || !child) return { ok: false, why: 'no child SA' };
  const c = child.negotiated;
  const reply = new Promise<Buffer | undefined>((resolve) => {
    espWaiters.push(resolve);
    setTimeout(() => resolve(undefined), 3000);
  });
  const id = 0x4242;
  transport.sendEsp(seal(c, echoRequest(id, seq + 1)), sa.remote);
  const data = await reply;
  if (!data) return { ok: false, why: 'no ESP came back', outSpi: spi8(c.outbound.spi) };
  const r = open(data);
  if (!r.ok) return { ok: false, why: r.why };
  const inner = r.inner;
  const src = [...inner.subarray(12, 16)].join('.');
  const isEchoReply = inner[9] === 1 && inner[20] === 0 && inner.readUInt16BE(24) === id;
  return { ok: isEchoReply, src, spi: r.spi, outSpi: spi8(c.outbound.spi) };
}

/** IKE_SA_INIT requests from `count` fresh source ports (plus malformed and truncated ones). */
async function flood(remote: { address: string; port: number }, count: number): Promise<object> {
  const sockets = [];
  let sent = 0;
  for (let i = 0; i < count; i++) {
    const s = createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, cfg.address, () => r()));
    sockets.push(s);
    const payloads = [
      {
        type: PayloadType.SA,
        proposals: [
          {
            number: 1,
            protocol: 1,
            spi: Buffer.alloc(0),
            transforms: [
              { type: 1, id: 20, attributes: [{ type: 14, tv: true as const, value: 128 }] },
              { type: 2, id: 5, attributes: [] },
              { type: 4, id: 31, attributes: [] },
            ],
          },
        ],
      },
      { type: PayloadType.KE, group: 31, data: randomBytes(32) },
      { type: PayloadType.NONCE, data: randomBytes(32) },
    ] as const;
    const m = emitIkeMessage(
      {
        spiI: randomBytes(8).readBigUInt64BE(),
        spiR: 0n,
        exchange: ExchangeType.IKE_SA_INIT,
        flags: HeaderFlag.INITIATOR,
        messageId: 0,
      },
      payloads,
    );
    // Every tenth source sends garbage instead, plain and behind the non-ESP marker (so that
    // a shared IKE/ESP port hands it to the IKE parser rather than to the ESP side).
    const marker = Buffer.alloc(4);
    const bad = [m.subarray(0, 40), randomBytes(100), Buffer.concat([m, Buffer.alloc(5)])];
    const variants = i % 10 === 0 ? [...bad, ...bad.map((b) => Buffer.concat([marker, b]))] : [m];
    for (const v of variants) {
      s.send(v, remote.port, remote.address);
      sent++;
    }
  }
  await new Promise((r) => setTimeout(r, 500));
  for (const s of sockets) s.close();
  return { sent };
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  void (async () => {
    const cmd = JSON.parse(line) as {
      op: string;
      remote?: { address: string; port: number };
      count?: number;
    };
    try {
      switch (cmd.op) {
        case 'initiate': {
          const sa = await daemon.initiate(cmd.remote!, {
            localSelectors: [hostSelector(cfg.inner.local)],
            remoteSelectors: [hostSelector(cfg.inner.remote)],
          });
          out({ op: 'initiate', ok: true, sa: describeSa(sa) });
          break;
        }
        case 'sas':
          out({ op: 'sas', sas: daemon.sas.map(describeSa) });
          break;
        case 'rekeyChild': {
          const sa = daemon.sas.find((s) => s.state === 'established')!;
          const c = await daemon.rekeyChild(sa, sa.children[0]!);
          out({ op: 'rekeyChild', ok: true, child: describeChild(c.negotiated) });
          break;
        }
        case 'rekeyIke': {
          const sa = daemon.sas.find((s) => s.state === 'established')!;
          const n = await daemon.rekeyIke(sa);
          out({ op: 'rekeyIke', ok: true, sa: describeSa(n) });
          break;
        }
        case 'dpd': {
          const sa = daemon.sas.find((s) => s.state === 'established')!;
          out({ op: 'dpd', ok: await daemon.checkLiveness(sa) });
          break;
        }
        case 'ping':
          out({ op: 'ping', ...(await ping()) });
          break;
        case 'flood':
          out({ op: 'flood', ...(await flood(cmd.remote!, cmd.count ?? 100)) });
          break;
        case 'armRekeyCollision':
          collideNextRekey = true;
          out({ op: 'armRekeyCollision', ok: true });
          break;
        case 'counters':
          out({
            op: 'counters',
            counters: Object.fromEntries(daemon.counters),
            halfOpen: daemon.halfOpenCount,
          });
          break;
        case 'close':
          await daemon.close();
          out({ op: 'close', ok: true });
          process.exit(0);
      }
    } catch (e) {
      out({ op: cmd.op, ok: false, error: (e as Error).message });
    }
  })();
});
out({ event: 'ready', local: transport.local, nattPort: transport.nattPort });
