/**
 * Raw IPv4 socket tool for the I/O benchmarks and namespace tests.
 *
 *   send  --src A --dst B [--count N] [--seconds T] [--size 64] [--batch 64] [--pace-us U]
 *         IP-in-IP packets A -> B (inner UDP 198.51.100.30 -> 203.0.113.3) through
 *         an IPPROTO_RAW socket with sendmmsg; as fast as possible unless paced.
 *         --plain sends the inner UDP packet A -> B alone.
 *   recv  [--protocol 4] [--device IF] [--count N] [--seconds T] [--show K]
 *         counts packets of a protocol with recvmmsg; prints the first K in hex.
 *   ping  --dst B [--src A] [--count N] [--timeout-ms 1000]
 *         ICMP echo through a raw ICMP socket (there is no ping binary here).
 *
 * Each prints `ready` when its socket is open and one JSON line when done
 * (`recv` also when sent SIGTERM).
 */
import { parseArgs } from 'node:util';
import { openRawSender, openRawSocket } from '../../src/io/raw.ts';
import { SpanList } from '../../src/io/slots.ts';
import { buildIcmpEcho, buildIpip, buildUdp4, intToIpv4 } from './io-packets.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    src: { type: 'string', default: '0.0.0.0' },
    dst: { type: 'string' },
    count: { type: 'string' },
    seconds: { type: 'string' },
    size: { type: 'string', default: '64' },
    batch: { type: 'string', default: '64' },
    'pace-us': { type: 'string', default: '0' },
    plain: { type: 'boolean', default: false },
    protocol: { type: 'string', default: '4' },
    device: { type: 'string' },
    show: { type: 'string', default: '0' },
    'timeout-ms': { type: 'string', default: '1000' },
  },
});
const mode = positionals[0];
const count = values.count ? Number(values.count) : Infinity;
const seconds = values.seconds ? Number(values.seconds) : Infinity;
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function send(): Promise<void> {
  if (!values.dst) throw new Error('send needs --dst');
  const batch = Number(values.batch);
  // --size is that of the UDP packet; IP-in-IP adds 20 bytes around it.
  const innerPayload = Math.max(0, Number(values.size) - 28);
  const sender = openRawSender();
  // One buffer of `batch` ready packets, re-sent each round.
  const packet = values.plain
    ? buildUdp4(values.src, values.dst, 40000, 9, innerPayload)
    : buildIpip(values.src, values.dst, buildUdp4('198.51.100.30', '203.0.113.3', 40000, 9, innerPayload));
  const buf = new Uint8Array(batch * 2048);
  const spans = new SpanList(batch);
  for (let i = 0; i < batch; i++) {
    buf.set(packet, i * 2048);
    spans.push(i * 2048, packet.length);
  }
  console.log('ready');
  const pace = Number(values['pace-us']);
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  let offered = 0;
  while (offered < count && performance.now() < deadline) {
    const n = Math.min(batch, count - offered);
    sender.sendBatch(buf, spans.pairs, n);
    offered += n;
    if (pace > 0) await sleep(pace / 1000);
    else if ((offered / batch) % 256 === 0) await new Promise((r) => setImmediate(r));
  }
  const elapsed = (performance.now() - t0) / 1000;
  const s = sender.stats();
  sender.close();
  console.log(
    JSON.stringify({ mode, offered, ...s, seconds: elapsed, pps: Math.round(s.txPackets / elapsed) }),
  );
}

async function recv(): Promise<void> {
  const sock = openRawSocket(Number(values.protocol), values.device ? { device: values.device } : {});
  const show = Number(values.show);
  const shown: string[] = [];
  const sources = new Set<string>();
  let got = 0;
  let t0 = 0;
  let tLast = 0;
  const done = new Promise<void>((resolve) => {
    sock.onBatch((n) => {
      if (t0 === 0) t0 = performance.now();
      tLast = performance.now();
      for (let i = 0; i < n; i++) {
        const o = sock.slots.offset(i);
        const b = sock.slots.bytes;
        if (sources.size < 16)
          sources.add(
            intToIpv4(((b[o + 12]! << 24) | (b[o + 13]! << 16) | (b[o + 14]! << 8) | b[o + 15]!) >>> 0),
          );
        if (shown.length < show) shown.push(toHex(sock.slots.packet(i)));
      }
      got += n;
      if (got >= count) resolve();
    });
    // Stopped from outside (SIGTERM): report what arrived so far.
    process.once('SIGTERM', () => resolve());
  });
  console.log('ready');
  const timer = Number.isFinite(seconds) ? sleep(seconds * 1000) : new Promise(() => {});
  await Promise.race([done, timer]);
  const s = sock.stats();
  sock.close();
  const span = (tLast - t0) / 1000;
  console.log(
    JSON.stringify({
      mode,
      received: got,
      sources: [...sources],
      packets: shown,
      ...s,
      pps: span > 0 ? Math.round(got / span) : 0,
    }),
  );
}

async function ping(): Promise<void> {
  if (!values.dst) throw new Error('ping needs --dst');
  const sock = openRawSocket(1);
  const ident = process.pid & 0xffff;
  const timeout = Number(values['timeout-ms']);
  const n = Number.isFinite(count) ? count : 3;
  const rtts: number[] = [];
  let waiting: { seq: number; sent: number; resolve: (ok: boolean) => void } | undefined;
  sock.onBatch((k) => {
    const b = sock.slots.bytes;
    for (let i = 0; i < k; i++) {
      const o = sock.slots.offset(i);
      const ihl = (b[o]! & 0x0f) * 4;
      const seq = (b[o + ihl + 6]! << 8) | b[o + ihl + 7]!;
      const id = (b[o + ihl + 4]! << 8) | b[o + ihl + 5]!;
      if (b[o + ihl] === 0 && id === ident && waiting && seq === waiting.seq) {
        rtts.push(performance.now() - waiting.sent);
        waiting.resolve(true);
      }
    }
  });
  let received = 0;
  for (let seq = 1; seq <= n; seq++) {
    const req = buildIcmpEcho(values.src, values.dst, ident, seq);
    const ok = await new Promise<boolean>((resolve) => {
      waiting = { seq, sent: performance.now(), resolve };
      sock.send(req);
      setTimeout(() => resolve(false), timeout);
    });
    if (ok) received++;
  }
  const s = sock.stats();
  sock.close();
  console.log(JSON.stringify({ mode, sent: n, received, rtts, ...s }));
}

const run = { send, recv, ping }[mode ?? ''];
if (!run) {
  console.error('usage: io-raw.ts send|recv|ping [options]');
  process.exit(2);
}
await run();
process.exit(0);
