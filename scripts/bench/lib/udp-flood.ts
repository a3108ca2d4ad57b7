/**
 * Small-UDP generator for the topology benchmarks: one prepared datagram,
 * sent in batches through an IPPROTO_RAW socket with sendmmsg (src/io), so
 * one process offers 200-250k packets per second on this machine where
 * iperf3 -u (one send() per datagram) tops out near 150k.
 *
 *   node --import tsx scripts/bench/lib/udp-flood.ts --src A --dst B [--sport 40000] [--dport 9]
 *        [--size 64] [--seconds 5] [--pps 0] [--wait-signal] [--batch 64]
 *        [--tunnel-src H --tunnel-dst R]
 *
 * --size is the whole IPv4 datagram (64: 20 IP + 8 UDP + 36 payload). The
 * datagram goes wherever the kernel routes B from A (into a TUN device for
 * the shared address, out of the LAN for the host's own). --pps paces the
 * offered load (0: as fast as the socket takes it). With --wait-signal it
 * starts on SIGUSR1, so that several generators start together and counters
 * can be read just before. With --tunnel-src/--tunnel-dst each datagram is
 * sent inside an IP-in-IP header H -> R, as a host sends it to the distnat
 * router (the router's own rate, without a host agent). Prints `ready`,
 * then one JSON line.
 */
import { parseArgs } from 'node:util';
import { openRawSender } from '../../../src/io/raw.ts';
import { SpanList } from '../../../src/io/slots.ts';
import { emitIpv4, Ipv4Flag, ipv4FromString } from '../../../src/wire/ipv4.ts';
import { emitUdp } from '../../../src/wire/udp.ts';
import { encapsulate, IPIP_OUTER_LENGTH } from '../../../src/wire/ipip.ts';

const { values } = parseArgs({
  options: {
    src: { type: 'string' },
    dst: { type: 'string' },
    sport: { type: 'string', default: '40000' },
    dport: { type: 'string', default: '9' },
    size: { type: 'string', default: '64' },
    seconds: { type: 'string', default: '5' },
    pps: { type: 'string', default: '0' },
    'wait-signal': { type: 'boolean', default: false },
    batch: { type: 'string', default: '64' },
    'tunnel-src': { type: 'string' },
    'tunnel-dst': { type: 'string' },
  },
});
const src = ipv4FromString(values.src ?? '');
const dst = ipv4FromString(values.dst ?? '');
if (src === undefined || dst === undefined) throw new Error('--src and --dst must be IPv4 addresses');
const size = Number(values.size);
if (!(size >= 28 && size <= 1500)) throw new Error('--size must be 28..1500');
const batch = Number(values.batch);
const pps = Number(values.pps);

const datagram = new Uint8Array(size);
emitIpv4(
  {
    tos: 0,
    identification: 0,
    flags: Ipv4Flag.DF,
    fragmentOffset: 0,
    ttl: 64,
    protocol: 17,
    src,
    dst,
    options: [],
    payloadLength: size - 20,
  },
  datagram,
  0,
);
const payload = new Uint8Array(size - 28).fill(0x5a);
emitUdp(
  { srcPort: Number(values.sport), dstPort: Number(values.dport), hasChecksum: true, payload },
  datagram,
  20,
  src,
  dst,
);

// Around it, the tunnel's outer header when asked for.
let wire = datagram;
if (values['tunnel-src'] !== undefined || values['tunnel-dst'] !== undefined) {
  const outerSrc = ipv4FromString(values['tunnel-src'] ?? '');
  const outerDst = ipv4FromString(values['tunnel-dst'] ?? '');
  if (outerSrc === undefined || outerDst === undefined)
    throw new Error('--tunnel-src and --tunnel-dst must both be IPv4 addresses');
  wire = new Uint8Array(IPIP_OUTER_LENGTH + size);
  wire.set(datagram, IPIP_OUTER_LENGTH);
  encapsulate(wire, IPIP_OUTER_LENGTH, size, outerSrc, outerDst);
}

// One buffer holding `batch` copies, re-sent every round.
const SLOT = 2048;
const buf = new Uint8Array(batch * SLOT);
const spans = new SpanList(batch);
for (let i = 0; i < batch; i++) {
  buf.set(wire, i * SLOT);
  spans.push(i * SLOT, wire.length);
}
const sender = openRawSender();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const yieldNow = (): Promise<void> => new Promise((r) => setImmediate(r));

const go = values['wait-signal'] ? new Promise((r) => process.once('SIGUSR1', r)) : Promise.resolve();
// A signal listener does not keep Node's event loop alive; a timer does.
const keepAlive = setInterval(() => {}, 60_000);
console.log('ready');
await go;
clearInterval(keepAlive);

const cpu0 = process.cpuUsage();
const t0 = performance.now();
const deadline = t0 + Number(values.seconds) * 1000;
let offered = 0;
let rounds = 0;
for (;;) {
  const now = performance.now();
  if (now >= deadline) break;
  let n = batch;
  if (pps > 0) {
    // Whole batches as the schedule allows; when ahead, a 1 ms nap. The
    // bursts this makes (a few batches) are far below any queue's length.
    const due = Math.floor(((now - t0) / 1000) * pps) - offered;
    if (due <= 0) {
      await sleep(1);
      continue;
    }
    n = Math.min(batch, due);
  }
  sender.sendBatch(buf, spans.pairs, n);
  offered += n;
  // Let the timer and signal handlers run now and then.
  if (++rounds % 256 === 0) await yieldNow();
}
const seconds = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
const s = sender.stats();
sender.close();
console.log(
  JSON.stringify({
    offered,
    sent: s.txPackets,
    txDropped: s.txDropped,
    txErrors: s.txErrors,
    lastErrno: s.lastErrno,
    seconds,
    pps: s.txPackets / seconds,
    // The sender's CPU, kernel time included: with kernel forwarding much of
    // the path runs in its system calls (softirq on the sending CPU).
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    cpuSystemSeconds: cpu.system / 1e6,
  }),
);
