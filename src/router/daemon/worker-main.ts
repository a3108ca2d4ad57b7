/**
 * One forwarding worker of the router's TUN path (docs/router.md,
 * "Workers"), run in a worker_thread by workers.ts. It opens its own
 * devices (one queue of the multi-queue TUN, its own protocol-4 raw socket
 * with the share filter of worker-share.ts, its own IPPROTO_RAW sender),
 * runs its own RouterForwarder with its own IAPTT, fragment tables and
 * outbound SA table, and reads the lease index the main thread writes in
 * shared memory. What it hears from the main thread by message is only what
 * its own tables beside the index need (IAPTT rows and fragments of a
 * withdrawn block, the withdrawn ports and SPIs); whether a block forwards
 * is the shared index's alone.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openRawSender, openRawSocket, type RawSocket } from '../../io/raw.ts';
import { FORWARDED_WRITES, OffloadTun } from '../../io/offload-tun.ts';
import { openTun, type TunDevice } from '../../io/tun.ts';
import type { PacketDevice } from '../../io/types.ts';
import { loadNative } from '../../io/native.ts';
import { SystemClock } from '../../util/clock.ts';
import { IpProtocol } from '../../wire/result.ts';
import { RouterForwarder } from '../data-path/forwarder.ts';
import { Iaptt } from '../data-path/tables/iaptt.ts';
import { LeaseOwnership } from '../data-path/tables/lease-ownership.ts';
import { RouterTables } from '../data-path/tables/router-tables.ts';
import { encodeBpf, workerShareFilter } from '../data-path/worker-share.ts';
import {
  writeWorkerGauges,
  type WorkerMessage,
  type WorkerReport,
  type WorkerSetup,
} from './worker-protocol.ts';

const port = parentPort;
if (port === null) throw new Error('worker-main.ts runs only as a worker thread');
const setup = workerData as WorkerSetup;
const report = (m: WorkerReport) => port.postMessage(m);

const opened: { close(): void }[] = [];
const closeAll = () => {
  for (const d of opened.splice(0).reverse()) {
    try {
      d.close();
    } catch {
      // closing while stopping: nothing left to do with it
    }
  }
};

// A device that fails after set-up is fatal to this worker, hence to the router (workers.ts).
const onError = (e: Error) => {
  report({ type: 'failed', error: `worker ${setup.index}: ${e.message}` });
  closeAll();
  process.exit(1);
};

try {
  const clock = new SystemClock();
  let device: TunDevice;
  try {
    device = openTun({
      name: setup.tun,
      multiQueue: true,
      mustExist: true,
      ...(setup.offload ? { vnetHdr: true, offload: { csum: true, tso4: true }, slotCount: 64 } : {}),
      onError,
    });
  } catch (e) {
    throw new Error(
      `cannot attach queue ${setup.index} of the TUN device ${setup.tun}: ${(e as Error).message}` +
        ((e as NodeJS.ErrnoException).code === 'EINVAL'
          ? ` (workers: ${setup.count} needs a multi-queue device: \`native-setup/linux/router-setup.sh up --multi-queue\`)`
          : ''),
      { cause: e },
    );
  }
  opened.push(device);
  const tun: PacketDevice = setup.offload ? new OffloadTun(device, FORWARDED_WRITES) : device;
  const lanRx: RawSocket = openRawSocket(IpProtocol.IPIP, { device: setup.lanInterface, onError });
  opened.push(lanRx);
  loadNative().socketAttachFilter(lanRx.fd, encodeBpf(workerShareFilter(setup.index, setup.count)));
  const lanTx = openRawSender({ device: setup.lanInterface, onError });
  opened.push(lanTx);

  const tables = new RouterTables({
    clock,
    ownership: LeaseOwnership.reader(setup.ownership),
    iaptt: new Iaptt(setup.idle, setup.iaptt),
  });
  const forwarder = new RouterForwarder({
    sharedAddress: setup.sharedAddress,
    ...(setup.sharedAddresses === undefined ? {} : { sharedAddresses: setup.sharedAddresses }),
    lanAddress: setup.lanAddress,
    tables,
    tun,
    lan: lanTx,
    clock,
    lanMtu: setup.lanMtu,
    counterMemory: { drops: new Float64Array(setup.drops), traffic: new Float64Array(setup.traffic) },
  });
  forwarder.attach(lanRx, tun);
  const gauges = new Float64Array(setup.gauges);
  const devices = { tun, 'lan-rx': lanRx, 'lan-tx': lanTx };

  // The main thread's maintenance, for this worker's own tables.
  const tick = () => {
    const now = clock.now();
    tables.iaptt.sweep(now, 8192);
    tables.fragments.expireHead(now);
    tables.held.expire(now);
    forwarder.outboundSas.expire(now);
    writeWorkerGauges(gauges, tables, forwarder.outboundSas.size, devices);
  };
  const timer = setInterval(tick, setup.tickMs);

  port.on('message', (m: WorkerMessage) => {
    switch (m.type) {
      case 'added':
        tables.afterAdded(m.lease, m.change);
        break;
      case 'removed':
        tables.afterRemoved(m.lease, m.withdrawn, m.change, m.at);
        break;
      case 'gauges':
        writeWorkerGauges(gauges, tables, forwarder.outboundSas.size, devices);
        report({ type: 'gauges' });
        break;
      case 'stop':
        clearInterval(timer);
        forwarder.detach();
        closeAll();
        report({ type: 'stopped' });
        port.close();
        break;
    }
  });
  writeWorkerGauges(gauges, tables, forwarder.outboundSas.size, devices);
  report({ type: 'ready', tun: device.name });
} catch (e) {
  closeAll();
  report({ type: 'failed', error: (e as Error).message });
  port.close();
}
