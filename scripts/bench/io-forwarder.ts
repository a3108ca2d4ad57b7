/**
 * One end of distnat's host <-> router tunnel with nothing but the I/O: the
 * same devices the daemons open (the persistent TUN without offloads, a
 * protocol-4 raw socket, an IPPROTO_RAW sender; batches of 64), and between
 * them only the RFC 2003 header. No PAP, no tables, no translation, no
 * checks beyond the tunnel peer. bench:io runs one in the router and one in
 * h1 to measure the packet I/O path on its own; bench:dnat measures the real
 * daemons on the same path.
 *
 *   npx tsx scripts/bench/io-forwarder.ts --tun dn0 --local 10.0.0.7 --remote 10.0.0.1 [--device lan0] [--offload]
 *
 *   TUN read (batch) -> outer header into the headroom -> sendmmsg     (to --remote)
 *   recvmmsg (protocol 4, from --remote) -> strip -> TUN write          (into the local kernel)
 *
 * --device binds both sockets to the LAN interface, as the router does.
 * --offload opens the TUN as the daemons do by default (vnet header, csum +
 * tso4, behind OffloadTun): TCP super-packets are cut into segments before
 * encapsulation and what is written back is coalesced.
 * Prints `ready`; on SIGUSR2 the packets forwarded so far and the TUN's reads
 * ({"forwarded":{"out","in"},"tunRx":{"packets","batches"}}), and
 * on SIGTERM/SIGINT all its counters, each as one JSON line.
 */
import { parseArgs } from 'node:util';
import { openRawSender, openRawSocket } from '../../src/io/raw.ts';
import { SpanList } from '../../src/io/slots.ts';
import { openTun } from '../../src/io/tun.ts';
import type { PacketDevice } from '../../src/io/types.ts';
import { OffloadTun } from '../../src/io/offload-tun.ts';
import { ipv4FromString } from '../../src/wire/ipv4.ts';

const { values } = parseArgs({
  options: {
    tun: { type: 'string', default: 'dn0' },
    local: { type: 'string' },
    remote: { type: 'string' },
    device: { type: 'string' },
    batch: { type: 'string', default: '64' },
    offload: { type: 'boolean', default: false },
  },
});
const local = ipv4FromString(values.local ?? '');
const remote = ipv4FromString(values.remote ?? '');
if (local === undefined || remote === undefined)
  throw new Error('--local and --remote must be IPv4 addresses');
const batch = Number(values.batch);
const bind = values.device === undefined ? {} : { device: values.device };

const device = openTun({
  name: values.tun,
  mustExist: true,
  slotCount: batch,
  ...(values.offload ? { vnetHdr: true, offload: { csum: true, tso4: true } } : {}),
});
const tun: PacketDevice = values.offload ? new OffloadTun(device) : device;
const rx = openRawSocket(4, { slotCount: batch, ...bind });
const tx = openRawSender(bind);

// The kernel fills in total length, id and header checksum of an IPPROTO_RAW packet.
const outer = new Uint8Array(20);
outer[0] = 0x45;
outer[8] = 64;
outer[9] = 4;
new DataView(outer.buffer).setUint32(12, local);
new DataView(outer.buffer).setUint32(16, remote);

const drops = { notIpv4: 0, notFromPeer: 0 };
/** Packets handed on: encapsulated towards the peer, and decapsulated into the TUN. */
const forwarded = { out: 0, in: 0 };

const out = new SpanList(tun.slots.slotCount);
tun.onBatch((count) => {
  const { bytes, lengths } = tun.slots;
  out.clear();
  for (let i = 0; i < count; i++) {
    const off = tun.slots.offset(i);
    if (bytes[off]! >> 4 !== 4) {
      drops.notIpv4++;
      continue;
    }
    bytes.set(outer, off - 20);
    // DF as the inner header has it (RFC 2003 3.1), so path MTU discovery still works.
    bytes[off - 20 + 6] = bytes[off + 6]! & 0x40;
    out.push(off - 20, lengths[i]! + 20);
  }
  forwarded.out += out.count;
  tx.sendBatch(bytes, out.pairs, out.count);
});

const inner = new SpanList(batch);
rx.onBatch((count) => {
  const { bytes, lengths } = rx.slots;
  inner.clear();
  for (let i = 0; i < count; i++) {
    const off = rx.slots.offset(i);
    const src =
      ((bytes[off + 12]! << 24) | (bytes[off + 13]! << 16) | (bytes[off + 14]! << 8) | bytes[off + 15]!) >>>
      0;
    if (src !== remote) {
      drops.notFromPeer++;
      continue;
    }
    const ihl = (bytes[off]! & 0x0f) * 4;
    inner.push(off + ihl, lengths[i]! - ihl);
  }
  forwarded.in += inner.count;
  tun.sendBatch(bytes, inner.pairs, inner.count);
});

function finish(): void {
  console.log(JSON.stringify({ forwarded, tun: tun.stats(), rx: rx.stats(), tx: tx.stats(), drops }));
  tun.close();
  rx.close();
  tx.close();
  process.exit(0);
}
// The benchmark reads the counters before and after each measurement.
process.on('SIGUSR2', () => {
  const t = device.stats();
  console.log(JSON.stringify({ forwarded, tunRx: { packets: t.rxPackets, batches: t.rxBatches } }));
});
process.on('SIGTERM', finish);
process.on('SIGINT', finish);
console.log('ready');
