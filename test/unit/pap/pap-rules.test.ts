/**
 * Every row of docs/pap.md 5.1 (what the router answers to each host
 * message), against the PAP server and lease table as the router runs them:
 * the status, the body (lowest and count), the lease time and the epoch of
 * each answer. Once in normal operation, once during the hold-off after a
 * start that lost the lease state (6.4).
 */
import { describe, expect, it } from 'vitest';
import { LeaseTable } from '../../../src/pap/lease-table.ts';
import { PapServer } from '../../../src/pap/pap-server.ts';
import { FakeClock } from '../../../src/util/clock.ts';
import { internetChecksum } from '../../../src/wire/checksum.ts';
import type { PapMessage } from '../../../src/wire/pap.ts';
import { PAP_MESSAGE_LENGTH, PapStatus, emitPap, parsePap } from '../../../src/wire/pap.ts';

const H1 = '10.0.0.1';
const H2 = '10.0.0.3';
const EPOCH = 0x5eed0001;
const OLD = 0x01d01d01;

type Ask = PapMessage & { readonly host?: string };
interface Want {
  readonly status: number;
  readonly lowest: number;
  readonly count: number;
  /** Default: 0 for failures. */
  readonly lease?: number;
}
type Row = readonly [string, Ask, Want];

const ext = (epoch = EPOCH, leaseTime = 0) => ({ status: 0, transactionId: 0, epoch, leaseTime });
const portRenew = (lowestPort: number, portCount: number, epoch = EPOCH): Ask => ({
  kind: 'port-renew',
  lowestPort,
  portCount,
  ...ext(epoch, 300),
});
const spiRenew = (lowestSpi: number, spiCount: number, epoch = EPOCH): Ask => ({
  kind: 'spi-renew',
  lowestSpi,
  spiCount,
  ...ext(epoch, 300),
});
const portInvalidate = (port: number, epoch = EPOCH): Ask => ({
  kind: 'port-invalidate',
  port,
  ...ext(epoch),
});
const spiInvalidate = (spi: number, epoch = EPOCH): Ask => ({ kind: 'spi-invalidate', spi, ...ext(epoch) });
const ok = (lowest: number, count: number, lease = 0): Want => ({
  status: PapStatus.Ok,
  lowest,
  count,
  lease,
});
const no = (status: number, lowest: number, count: number, lease = 0): Want => ({
  status,
  lowest,
  count,
  lease,
});
const { QuotaExceeded, PoolExhausted, UnknownLease, StaleEpoch, Malformed, TryLater } = PapStatus;

/** A router whose H1 holds ports 1024+32 and SPIs 256+64; H2 has its quota of ports (64) already. */
function running() {
  const clock = new FakeClock(1_000_000);
  const table = new LeaseTable({
    clock,
    randomEpoch: () => EPOCH,
    maxPerHost: { port: 64 },
    portRange: { min: 1024, max: 1024 + 32 * 4 - 1 },
  });
  const server = new PapServer(table);
  table.request(H1, 'port');
  table.request(H1, 'spi');
  table.request(H2, 'port', { count: 64 });
  return { clock, table, server };
}

/** A router that lost its state 10 s ago (hold-off 100 s); H2 has reclaimed ports 2048+32 already. */
function holdingOff() {
  const clock = new FakeClock(1_000_000);
  const table = new LeaseTable({
    clock,
    randomEpoch: () => EPOCH,
    withoutState: 'state-lost',
    holdOffSeconds: 100,
  });
  const server = new PapServer(table);
  expect(table.reclaim(H2, 'port', 2048, 32).status).toBe('ok');
  clock.advance(10_000);
  return { clock, table, server };
}

const NORMAL: readonly Row[] = [
  // requests: served whatever their count and epoch
  [
    'port request, count 0: the default block',
    { kind: 'port-request', highPorts: false, portsRequested: 0, ...ext(0) },
    ok(1120, 32, 300),
  ],
  [
    'port request naming another epoch',
    { kind: 'port-request', highPorts: false, portsRequested: 32, ...ext(OLD) },
    ok(1120, 32, 300),
  ],
  [
    'SPI request, count 0: the default block',
    { kind: 'spi-request', spisRequested: 0, ...ext(0) },
    ok(320, 64, 300),
  ],
  [
    'request over the quota',
    { kind: 'port-request', highPorts: false, portsRequested: 1, ...ext(), host: H2 },
    no(QuotaExceeded, 0, 0),
  ],
  [
    'request for more than the longest free run: that run',
    { kind: 'port-request', highPorts: false, portsRequested: 200, ...ext(), host: '10.0.0.9' },
    ok(1120, 32, 300),
  ],
  // renew
  ['renew of a held block', portRenew(1024, 32), ok(1024, 32, 300)],
  ['renew of a held block, epoch 0 (the router epoch)', portRenew(1024, 32, 0), ok(1024, 32, 300)],
  ['renew of an SPI block held', spiRenew(256, 64), ok(256, 64, 300)],
  ['renew naming part of a held block', portRenew(1024, 16), no(UnknownLease, 1024, 16)],
  ['renew of a block held by another host', portRenew(1088, 32), no(UnknownLease, 1088, 32)],
  ['renew of a block outside the pool', portRenew(80, 32), no(UnknownLease, 80, 32)],
  ['renew of a block ending at 65535', portRenew(65504, 32), no(UnknownLease, 65504, 32)],
  ['renew, epoch 0, of a block not held', portRenew(3000, 32, 0), no(UnknownLease, 3000, 32)],
  ['renew naming another epoch', portRenew(1024, 32, OLD), no(StaleEpoch, 1024, 32)],
  ['renew, count 0', portRenew(1024, 0), no(Malformed, 1024, 0)],
  ['renew running past 65535', portRenew(65530, 10), no(Malformed, 65530, 10)],
  ['renew, count 0, naming another epoch (content first)', portRenew(1024, 0, OLD), no(Malformed, 1024, 0)],
  ['SPI renew, count 0', spiRenew(256, 0), no(Malformed, 256, 0)],
  ['SPI renew from SPI 255 (reserved)', spiRenew(255, 2), no(Malformed, 255, 2)],
  ['SPI renew from SPI 0', spiRenew(0, 64), no(Malformed, 0, 64)],
  ['SPI renew running past 2^32 - 1', spiRenew(0xffffffc0, 0x41), no(Malformed, 0xffffffc0, 0x41)],
  // invalidate
  ['invalidate of a value in a held block: the whole block back', portInvalidate(1030), ok(1024, 32)],
  ['invalidate of a value in an SPI block held', spiInvalidate(300), ok(256, 64)],
  ['invalidate of a value not held', portInvalidate(5000), no(UnknownLease, 5000, 0)],
  ['invalidate of a value held by another host', portInvalidate(1100), no(UnknownLease, 1100, 0)],
  ['invalidate of a port outside the pool', portInvalidate(80), no(UnknownLease, 80, 0)],
  ['invalidate of port 0, epoch 0 (the router presence probe)', portInvalidate(0, 0), no(UnknownLease, 0, 0)],
  ['invalidate naming another epoch', portInvalidate(1030, OLD), no(StaleEpoch, 1030, 0)],
  ['invalidate of SPI 255 (reserved)', spiInvalidate(255), no(Malformed, 255, 0)],
  ['invalidate of SPI 0', spiInvalidate(0), no(Malformed, 0, 0)],
];

const HOLDING_OFF: readonly Row[] = [
  [
    'request: try later, lease time = seconds left',
    { kind: 'port-request', highPorts: false, portsRequested: 32, ...ext(0) },
    no(TryLater, 0, 0, 90),
  ],
  ['SPI request', { kind: 'spi-request', spisRequested: 64, ...ext(OLD) }, no(TryLater, 0, 0, 90)],
  ['renew naming an earlier epoch, values free: reclaimed', portRenew(1024, 32, OLD), ok(1024, 32, 300)],
  ['SPI renew naming an earlier epoch, values free: reclaimed', spiRenew(256, 64, OLD), ok(256, 64, 300)],
  [
    'renew naming an earlier epoch, values reclaimed by another host',
    portRenew(2064, 32, OLD),
    no(UnknownLease, 2064, 32),
  ],
  ['renew naming an earlier epoch, outside the pool', portRenew(80, 32, OLD), no(UnknownLease, 80, 32)],
  ['renew naming an earlier epoch, count 0', portRenew(1024, 0, OLD), no(Malformed, 1024, 0)],
  ['renew of a reclaimed block, its new epoch', { ...portRenew(2048, 32), host: H2 }, ok(2048, 32, 300)],
  ['renew, epoch 0, of a block not held (not a reclaim)', portRenew(1024, 32, 0), no(UnknownLease, 1024, 32)],
  ['invalidate naming an earlier epoch', portInvalidate(1030, OLD), no(UnknownLease, 1030, 0)],
  ['invalidate of a reclaimed block', { ...portInvalidate(2050), host: H2 }, ok(2048, 32)],
];

function check(server: PapServer, [what, ask, want]: Row): void {
  const { host = H1, ...msg } = ask;
  const r = server.handle({ ...msg, transactionId: 7 } as PapMessage, host);
  if (r === undefined || (r.kind !== 'port-response' && r.kind !== 'spi-response'))
    throw new Error(`${what}: no response`);
  const [lowest, count] =
    r.kind === 'port-response' ? [r.lowestPort, r.portCount] : [r.lowestSpi, r.spiCount];
  expect(
    {
      success: r.success,
      status: r.status,
      lowest,
      count,
      lease: r.leaseTime,
      epoch: r.epoch,
      txid: r.transactionId,
    },
    what,
  ).toEqual({
    success: want.status === PapStatus.Ok,
    status: want.status,
    lowest: want.lowest,
    count: want.count,
    lease: want.lease ?? 0,
    epoch: EPOCH,
    txid: 7,
  });
  expect(r.kind, what).toBe(msg.kind.startsWith('port') ? 'port-response' : 'spi-response');
}

/** The server counters summed over every row, each row on a router of its own. */
function countersAfter(rows: readonly Row[], router: () => { server: PapServer }) {
  const sum = { refused: {} as Record<string, number>, staleEpoch: 0, reclaimed: 0 };
  for (const row of rows) {
    const { server } = router();
    const before = { ...server.counters.refused };
    check(server, row);
    for (const [k, v] of Object.entries(server.counters.refused))
      if (v !== before[k]) sum.refused[k] = (sum.refused[k] ?? 0) + v - (before[k] ?? 0);
    sum.staleEpoch += server.counters.staleEpoch;
    sum.reclaimed += server.counters.reclaimed;
  }
  return sum;
}

describe('docs/pap.md 5.1, in normal operation', () => {
  it.each(NORMAL)('%s', (...row) => check(running().server, row));

  it('a request when nothing is free: pool-exhausted', () => {
    const { server, table } = running();
    table.request('10.0.0.9', 'port');
    check(server, [
      'request, pool empty',
      { kind: 'port-request', highPorts: false, portsRequested: 32, ...ext(), host: '10.0.0.11' },
      no(PoolExhausted, 0, 0),
    ]);
  });

  it.each([
    ['an SPI message with code 1 (ports only)', 33, 1],
    ['a port message with code 4', 32, 4],
    ['an SPI message with code 255', 33, 255],
  ])('%s: malformed, lowest 0 and count 0, same transaction id', (_what, type, code) => {
    const { server } = running();
    const req = new Uint8Array(PAP_MESSAGE_LENGTH);
    emitPap(
      { kind: 'port-request', highPorts: false, portsRequested: 3, ...ext(), transactionId: 99 },
      req,
      0,
    );
    req[0] = type;
    req[1] = code;
    req[2] = req[3] = 0;
    const sum = internetChecksum(req, 0, PAP_MESSAGE_LENGTH);
    req[2] = sum >> 8;
    req[3] = sum & 0xff;
    const reply = server.receive(req, { address: H1 })!;
    const p = parsePap(reply, 0, reply.length);
    expect(p.ok && p.value).toMatchObject({
      kind: type === 32 ? 'port-response' : 'spi-response',
      success: false,
      status: Malformed,
      transactionId: 99,
      epoch: EPOCH,
      leaseTime: 0,
      ...(type === 32 ? { lowestPort: 0, portCount: 0 } : { lowestSpi: 0, spiCount: 0 }),
    });
  });

  it('counts failures by status', () => {
    expect(countersAfter(NORMAL, running)).toEqual({
      refused: { 'quota-exceeded': 1, 'unknown-lease': 9, 'stale-epoch': 2, malformed: 9 },
      staleEpoch: 2,
      reclaimed: 0,
    });
  });
});

describe('docs/pap.md 5.1, during the hold-off after lost state', () => {
  it.each(HOLDING_OFF)('%s', (...row) => check(holdingOff().server, row));

  it('counts reclaims and try-laters', () => {
    expect(countersAfter(HOLDING_OFF, holdingOff)).toEqual({
      refused: { 'try-later': 2, 'unknown-lease': 4, malformed: 1 },
      staleEpoch: 0,
      reclaimed: 2,
    });
  });

  it('after it, an earlier epoch is stale again', () => {
    const { server, clock } = holdingOff();
    clock.advance(90_000);
    check(server, ['renew naming an earlier epoch', portRenew(1024, 32, OLD), no(StaleEpoch, 1024, 32)]);
    check(server, ['invalidate naming an earlier epoch', portInvalidate(1030, OLD), no(StaleEpoch, 1030, 0)]);
    check(server, [
      'request',
      { kind: 'port-request', highPorts: false, portsRequested: 32, ...ext(0) },
      ok(1024, 32, 300),
    ]);
  });
});
