/**
 * A TUN reflector: answers every ICMP echo request and bounces every UDP
 * datagram (addresses and ports swapped) straight back into the TUN, in place
 * in the read slots, one write batch per read batch. The smallest loop that
 * exercises batched TUN read + write; the namespace tests and io-micro use it.
 *
 *   npx tsx scripts/bench/io-reflect.ts --name dxr0 [--mtu 1480] [--batch 64] [--seconds N]
 *
 * Prints `ready` once the device is up, and its counters as one JSON line on
 * SIGTERM/SIGINT or after --seconds.
 */
import { parseArgs } from 'node:util';
import { SpanList } from '../../src/io/slots.ts';
import { openTun } from '../../src/io/tun.ts';

const { values } = parseArgs({
  options: {
    name: { type: 'string', default: 'dxr0' },
    mtu: { type: 'string', default: '1480' },
    batch: { type: 'string', default: '64' },
    seconds: { type: 'string' },
  },
});

const tun = openTun({
  name: values.name,
  mtu: Number(values.mtu),
  up: true,
  slotCount: Number(values.batch),
});
const out = new SpanList(tun.slots.slotCount);
const b = tun.slots.bytes;
const lengths = tun.slots.lengths;
let started = 0;
let reflected = 0;

/** One's complement add of a 16-bit delta to the checksum at b[o]. */
function adjust(o: number, add: number): void {
  let c = ((b[o]! << 8) | b[o + 1]!) + add;
  c = (c & 0xffff) + (c >>> 16);
  b[o] = c >>> 8;
  b[o + 1] = c & 0xff;
}

function swap(o: number, p: number, n: number): void {
  for (let k = 0; k < n; k++) {
    const t = b[o + k]!;
    b[o + k] = b[p + k]!;
    b[p + k] = t;
  }
}

tun.onBatch((count) => {
  if (started === 0) started = performance.now();
  out.clear();
  for (let i = 0; i < count; i++) {
    const o = tun.slots.offset(i);
    if (b[o]! >> 4 !== 4) continue;
    const ihl = (b[o]! & 0x0f) * 4;
    const proto = b[o + 9];
    // Swapping source and destination changes no sum: checksums stay valid.
    swap(o + 12, o + 16, 4);
    if (proto === 1 && b[o + ihl] === 8) {
      b[o + ihl] = 0;
      adjust(o + ihl + 2, 0x0800);
    } else if (proto === 17) {
      swap(o + ihl, o + ihl + 2, 2);
    } else {
      continue;
    }
    out.push(o, lengths[i]!);
  }
  reflected += tun.sendBatch(b, out.pairs, out.count);
});

function finish(): void {
  const seconds = started ? (performance.now() - started) / 1000 : 0;
  console.log(JSON.stringify({ ...tun.stats(), reflected, seconds }));
  tun.close();
  process.exit(0);
}
process.on('SIGTERM', finish);
process.on('SIGINT', finish);
if (values.seconds) setTimeout(finish, Number(values.seconds) * 1000);
console.log('ready');
