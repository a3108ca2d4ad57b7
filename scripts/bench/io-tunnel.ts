/**
 * One end of a point-to-point IP-in-IP tunnel in userspace, built only from
 * src/io: the smallest version of the distnat data path (TUN -> outer header
 * -> raw socket; raw socket -> strip -> TUN). Two of these in two namespaces
 * carry ping and TCP for the namespace tests and the throughput figures.
 *
 *   npx tsx scripts/bench/io-tunnel.ts --tun dxt0 --local 10.98.0.1 --remote 10.98.0.2
 *        [--mtu 1480] [--tso] [--batch 64] [--seconds N] [--pcap file]
 *
 * --tso opens the TUN with IFF_VNET_HDR and TSO/checksum offloads: the kernel
 * hands over 64 KiB TCP super-packets, which are cut into MSS segments
 * (native segmentation) before encapsulation; packets with a partial
 * checksum get it completed. Inbound, segments are coalesced into
 * super-packets before they go into the TUN (unless --no-coalesce). Prints `ready`, and its counters as JSON on
 * SIGTERM/SIGINT or after --seconds.
 */
import { parseArgs } from 'node:util';
import { capture } from '../../src/io/capture.ts';
import { Ipv4Coalescer } from '../../src/io/coalesce.ts';
import { completeChecksumNative, segmentTcp4Native, vnetAction } from '../../src/io/gso.ts';
import { PcapWriter } from '../../src/io/pcap.ts';
import { openRawSender, openRawSocket } from '../../src/io/raw.ts';
import { SlotBuffer, SpanList } from '../../src/io/slots.ts';
import { openTun } from '../../src/io/tun.ts';
import type { PacketDevice, PacketSink } from '../../src/io/types.ts';
import { newVirtioNetHdr, readVirtioNetHdr, VIRTIO_NET_HDR_LEN } from '../../src/io/virtio.ts';
import { ipv4ToInt } from './io-packets.ts';

const { values } = parseArgs({
  options: {
    tun: { type: 'string', default: 'dxt0' },
    local: { type: 'string' },
    remote: { type: 'string' },
    mtu: { type: 'string', default: '1480' },
    tso: { type: 'boolean', default: false },
    'no-coalesce': { type: 'boolean', default: false },
    batch: { type: 'string', default: '64' },
    seconds: { type: 'string' },
    pcap: { type: 'string' },
  },
});
if (!values.local || !values.remote) throw new Error('--local and --remote are required');
const local = ipv4ToInt(values.local);
const remote = ipv4ToInt(values.remote);
const batch = Number(values.batch);

const rawTun = openTun({
  name: values.tun,
  mtu: Number(values.mtu),
  up: true,
  slotCount: batch,
  vnetHdr: values.tso,
  offload: values.tso ? { csum: true, tso4: true } : undefined,
});
const writer = values.pcap ? PcapWriter.open(values.pcap) : undefined;
const tun: PacketDevice = writer ? capture(rawTun, writer) : rawTun;
const rawRx = openRawSocket(4, { slotCount: batch });
const rx: PacketDevice = writer ? capture(rawRx, writer) : rawRx;
const txRaw = openRawSender();
const tx: PacketSink = writer ? capture(txRaw, writer) : txRaw;

// The outer header (RFC 2003): the kernel fills in total length, id and checksum.
const outer = new Uint8Array(20);
outer[0] = 0x45;
outer[8] = 64;
outer[9] = 4;
new DataView(outer.buffer).setUint32(12, local);
new DataView(outer.buffer).setUint32(16, remote);

const drops = { notIpv4: 0, wrongPeer: 0, gso: 0 };

function encapsulate(b: Uint8Array, off: number): void {
  b.set(outer, off - 20);
  b[off - 20 + 6] = b[off + 6]! & 0x40; // DF follows the inner header, so PMTU discovery keeps working
}

// Outbound: TUN -> (segment) -> encapsulate -> raw sender.
const out = new SpanList(batch);
const segs = new SlotBuffer(128, 2048, 64);
const segOut = new SpanList(segs.slotCount);
const hdr = newVirtioNetHdr();
let segUsed = 0;

function flushSegments(): void {
  if (segOut.count > 0) tx.sendBatch(segs.bytes, segOut.pairs, segOut.count);
  segOut.clear();
  segUsed = 0;
}

tun.onBatch((count) => {
  const slots = tun.slots;
  const b = slots.bytes;
  out.clear();
  for (let i = 0; i < count; i++) {
    const off = slots.offset(i);
    const len = slots.lengths[i]!;
    if (b[off]! >> 4 !== 4) {
      drops.notIpv4++;
      continue;
    }
    if (values.tso) {
      const action = vnetAction(readVirtioNetHdr(b, off - VIRTIO_NET_HDR_LEN, hdr));
      if (action === 'segment') {
        let n = segmentTcp4Native(b, off, len, hdr.gsoSize, segs, segUsed);
        if (n === 'gso-no-room' && segUsed > 0) {
          flushSegments();
          n = segmentTcp4Native(b, off, len, hdr.gsoSize, segs, 0);
        }
        if (typeof n !== 'number') {
          drops.gso++;
          continue;
        }
        for (let k = segUsed; k < segUsed + n; k++) {
          encapsulate(segs.bytes, segs.offset(k));
          segOut.push(segs.offset(k) - 20, segs.lengths[k]! + 20);
        }
        segUsed += n;
        continue;
      }
      if (action === 'checksum') {
        if (completeChecksumNative(b, off, len, hdr.csumStart, hdr.csumOffset) !== true) {
          drops.gso++;
          continue;
        }
      } else if (action !== 'plain') {
        drops.gso++;
        continue;
      }
    }
    encapsulate(b, off);
    out.push(off - 20, len + 20);
  }
  tx.sendBatch(b, out.pairs, out.count);
  flushSegments();
});

// Inbound: raw protocol 4 -> check the outer source -> strip -> TUN.
const inner = new SpanList(batch);
const coalescer = values.tso && !values['no-coalesce'] ? new Ipv4Coalescer(batch) : undefined;
rx.onBatch((count) => {
  const slots = rx.slots;
  const b = slots.bytes;
  inner.clear();
  for (let i = 0; i < count; i++) {
    const off = slots.offset(i);
    const len = slots.lengths[i]!;
    const src = ((b[off + 12]! << 24) | (b[off + 13]! << 16) | (b[off + 14]! << 8) | b[off + 15]!) >>> 0;
    if (src !== remote) {
      drops.wrongPeer++;
      continue;
    }
    const ihl = (b[off]! & 0x0f) * 4;
    inner.push(off + ihl, len - ihl);
  }
  if (coalescer) {
    const n = coalescer.run(b, inner.pairs, inner.count);
    if (writer) writer.writeBatch(coalescer.out.bytes, coalescer.pairs, n);
    rawTun.sendBatchWithVnetHdr(coalescer.out.bytes, coalescer.pairs, n);
  } else {
    tun.sendBatch(b, inner.pairs, inner.count);
  }
});

function finish(): void {
  const result = { tun: tun.stats(), rx: rx.stats(), tx: txRaw.stats(), drops, coalesce: coalescer?.stats() };
  console.log(JSON.stringify(result));
  tun.close();
  rx.close();
  txRaw.close();
  writer?.close();
  process.exit(0);
}
process.on('SIGTERM', finish);
process.on('SIGINT', finish);
if (values.seconds) setTimeout(finish, Number(values.seconds) * 1000);
console.log('ready');
