/**
 * The Wireshark dissector (wireshark/pap.lua) against the golden PAP vectors:
 * every vector is written to a capture over both transports (UDP port 7032,
 * and as the ICMP message itself) and tshark must decode every field to the
 * vector's value, flag exactly what a receiver drops, and leave ICMP that is
 * not PAP alone.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { internetChecksum } from '../../../src/wire/index.ts';
import { PAP_MESSAGE_LENGTH, PapStatus, emitPap } from '../../../src/wire/pap.ts';
import type { PapMessage } from '../../../src/wire/pap.ts';
import { loadPapGolden, papPacket, writeCapture } from './pap-capture.ts';
import type { PapVector, Transport } from './pap-capture.ts';

const ROOT = resolve(import.meta.dirname, '../../..');
const LUA = join(ROOT, 'wireshark/pap.lua');
const golden = loadPapGolden(join(ROOT, 'test/fixtures/golden/pap.json'));

const hasTshark = spawnSync('tshark', ['--version'], { stdio: 'ignore' }).status === 0;
const SKIP = 'tshark is not installed (scripts/setup installs it): the PAP dissector is not checked';
if (!hasTshark) console.warn(`dissector.test.ts: ${SKIP}`);

const dir = mkdtempSync(join(tmpdir(), 'distnat-dissector-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Vector field -> dissector field, for every field the golden file uses. */
const FIELD_OF: Record<string, string> = {
  transactionId: 'dnpap.txid',
  epoch: 'dnpap.epoch',
  leaseTime: 'dnpap.lease',
  status: 'dnpap.status',
  success: 'dnpap.success',
  portsRequested: 'dnpap.ports.requested',
  highPorts: 'dnpap.ports.high',
  port: 'dnpap.port',
  lowestPort: 'dnpap.ports.lowest',
  portCount: 'dnpap.ports.count',
  spisRequested: 'dnpap.spi.requested',
  spi: 'dnpap.spi',
  lowestSpi: 'dnpap.spi.lowest',
  spiCount: 'dnpap.spi.count',
  address: 'dnpap.address',
};
const BODY_FIELDS = Object.values(FIELD_OF).filter((f) => !/txid|epoch|lease|status/.test(f));
const DROP_EXPERTS = [
  'dnpap.checksum.bad',
  'dnpap.length.bad',
  'dnpap.version.bad',
  'dnpap.type.bad',
  'dnpap.code.bad',
  'dnpap.reserved.nonzero',
];
const COLUMNS = [
  'frame.number',
  '_ws.col.Protocol',
  'icmp.type',
  'dnpap.kind',
  'dnpap.type',
  'dnpap.code',
  'dnpap.checksum',
  'dnpap.checksum.status',
  'dnpap.checksum_calculated',
  'dnpap.version',
  'dnpap.response',
  'dnpap.flags.reserved',
  'dnpap.unused',
  'dnpap.ports.last',
  'dnpap.spi.last',
  ...Object.values(FIELD_OF),
  ...DROP_EXPERTS,
];

type Row = Record<string, string>;

/** Runs tshark with the dissector; one row per frame, keyed by field name. */
function tshark(file: string, fields: readonly string[], extra: readonly string[] = []): Row[] {
  const args = ['-X', `lua_script:${LUA}`, '-r', file, ...extra, '-T', 'fields'];
  args.push('-E', 'occurrence=a', '-E', 'aggregator=|');
  for (const f of fields) args.push('-e', f);
  // A private HOME keeps the user's own Wireshark preferences and plugins out.
  const r = spawnSync('tshark', args, { encoding: 'utf8', env: { ...process.env, HOME: dir } });
  const errors = r.stderr
    .split('\n')
    .filter((l) => l.trim() && !l.includes('Running as user'))
    .join('\n');
  // tshark goes on without a script that fails to load: any complaint fails the test.
  expect(errors, 'tshark stderr').toBe('');
  expect(r.status, 'tshark exit status').toBe(0);
  return r.stdout
    .replace(/\n$/, '')
    .split('\n')
    .map((line) => {
      const cells = line.split('\t');
      return Object.fromEntries(fields.map((f, i) => [f, cells[i] ?? '']));
    });
}

function capture(name: string, packets: readonly Uint8Array[]): string {
  const file = join(dir, `${name}.pcap`);
  writeCapture(file, packets);
  return file;
}

const bytesOf = (v: PapVector) => Uint8Array.from(Buffer.from(v.hex, 'hex'));

/** What tshark prints for a vector's value: booleans as 1/0, numbers in any base. */
function same(printed: string, want: number | boolean): boolean {
  if (typeof want === 'boolean') return printed === (want ? '1' : '0');
  const quad = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(printed);
  if (quad !== null) return quad.slice(1).reduce((a, o) => a * 256 + Number(o), 0) === want;
  return printed !== '' && Number(printed) === want;
}

/** Checks one decoded frame against its vector, field by field. */
function expectDecoded(row: Row, v: PapVector, transport: Transport): void {
  const b = bytesOf(v);
  const at = `${v.name} over ${transport}`;
  expect(row['_ws.col.Protocol'], at).toBe('DNPAP');
  expect(row['dnpap.kind'], at).toBe(v.kind);
  expect(Number(row['dnpap.type']), at).toBe(b[0]);
  expect(Number(row['dnpap.code']), at).toBe(b[1]);
  expect(Number(row['dnpap.checksum']), at).toBe((b[2]! << 8) | b[3]!);
  expect(row['dnpap.checksum.status'], `${at}: checksum status Good`).toBe('1');
  expect(Number(row['dnpap.version']), at).toBe(b[12]);
  expect(row['dnpap.response'], at).toBe(b[13]! & 0x80 ? '1' : '0');
  for (const [name, want] of Object.entries(v.fields ?? {})) {
    const field = FIELD_OF[name];
    expect(field, `${at}: the test maps vector field ${name}`).toBeDefined();
    expect(same(row[field!]!, want), `${at}: ${field} is ${row[field!]}, vector ${name} = ${want}`).toBe(
      true,
    );
  }
  // No body field beyond the vector's own (the layout was picked right).
  const own = new Set(Object.keys(v.fields ?? {}).map((k) => FIELD_OF[k]));
  for (const f of BODY_FIELDS) if (!own.has(f)) expect(row[f], `${at}: ${f} absent`).toBe('');
  const f = v.fields ?? {};
  const last = (lowest: unknown, count: unknown) =>
    typeof lowest === 'number' && typeof count === 'number' && count > 0 ? String(lowest + count - 1) : '';
  expect(row['dnpap.ports.last'], at).toBe(last(f.lowestPort, f.portCount));
  expect(row['dnpap.spi.last'] === '' ? '' : String(Number(row['dnpap.spi.last'])), at).toBe(
    last(f.lowestSpi, f.spiCount),
  );
}

/** An ICMP destination unreachable (port) from the router quoting `quoted` whole. */
function icmpError(quoted: Uint8Array): Uint8Array {
  const p = new Uint8Array(20 + 8 + quoted.length);
  p.set([0x45, 0, p.length >> 8, p.length & 0xff, 0, 2, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 7, 10, 0, 0, 1]);
  p.set([3, 3, 0, 0, 0, 0, 0, 0], 20);
  p.set(quoted, 28);
  fixIpv4(p, true);
  return p;
}

/** Fills in the IPv4 header checksum, and the ICMP one after it when asked. */
function fixIpv4(p: Uint8Array, icmp: boolean): void {
  const ip = internetChecksum(p, 0, 20);
  p[10] = ip >> 8;
  p[11] = ip & 0xff;
  if (!icmp) return;
  const sum = internetChecksum(p, 20, p.length);
  p[22] = sum >> 8;
  p[23] = sum & 0xff;
}

function vector(name: string): PapVector {
  const all = [...golden.valid, ...golden.lenient, ...golden.invalid];
  const v = all.find((x) => x.name === name);
  if (!v) throw new Error(`no golden PAP vector ${name}`);
  return v;
}

describe.skipIf(!hasTshark)(`Wireshark PAP dissector${hasTshark ? '' : ` (skipped: ${SKIP})`}`, () => {
  it('decodes every valid and lenient golden vector over UDP and over ICMP, field by field', () => {
    const vectors = [...golden.valid, ...golden.lenient];
    expect(golden.valid.length).toBeGreaterThanOrEqual(19);
    const transports: Transport[] = ['udp', 'icmp'];
    const packets = transports.flatMap((t) => vectors.map((v) => papPacket(bytesOf(v), t)));
    const rows = tshark(capture('golden', packets), COLUMNS);
    expect(rows).toHaveLength(packets.length);
    transports.forEach((t, ti) =>
      vectors.forEach((v, vi) => {
        const row = rows[ti * vectors.length + vi]!;
        expectDecoded(row, v, t);
        // Over ICMP the ICMP dissector still runs: PAP sits beside it.
        expect(row['icmp.type']).toBe(t === 'icmp' ? String(bytesOf(v)[0]) : '');
        const lenient = golden.lenient.includes(v);
        for (const x of DROP_EXPERTS)
          expect(row[x], `${v.name}: ${x}`).toBe(lenient && x === 'dnpap.reserved.nonzero' ? '1' : '');
      }),
    );
    // The lenient vectors differ from valid ones only in ignored bits, and say where.
    const lenientUdp = rows.slice(golden.valid.length, vectors.length);
    expect(lenientUdp.map((r) => [r['dnpap.flags.reserved'], r['dnpap.unused'] !== ''])).toEqual([
      ['0x7f', false],
      ['0x00', true],
    ]);
  });

  it('over UDP port 7032 shows what a receiver drops, with the reason as expert info', () => {
    const invalid = golden.invalid.filter((v) => v.hex !== ''); // UDP hands an empty payload to no one
    const rows = tshark(
      capture(
        'invalid-udp',
        invalid.map((v) => papPacket(bytesOf(v), 'udp')),
      ),
      COLUMNS,
    );
    const expertOf: Record<string, string> = {
      'bad-checksum': 'dnpap.checksum.bad',
      'bad-version': 'dnpap.version.bad',
      'bad-type': 'dnpap.type.bad',
      'bad-code': 'dnpap.code.bad',
      'bad-length': 'dnpap.length.bad',
    };
    invalid.forEach((v, i) => {
      const row = rows[i]!;
      expect(row['_ws.col.Protocol'], v.name).toBe('DNPAP');
      expect(row['dnpap.kind'], `${v.name}: no kind for a dropped message`).toBe(
        v.reason === 'bad-checksum' ? 'port-request' : '',
      );
      for (const x of DROP_EXPERTS)
        expect(row[x], `${v.name}: ${x}`).toBe(x === expertOf[v.reason!] ? '1' : '');
    });
    const bad = rows[invalid.findIndex((v) => v.reason === 'bad-checksum')]!;
    expect(bad['dnpap.checksum.status']).toBe('0');
    expect(bad['dnpap.checksum_calculated']).toBe('0xa8e7'); // the valid fig4-request-low's checksum
  });

  it('over ICMP claims only type 32/33 version 1 messages of 28 bytes, and leaves other ICMP to ICMP', () => {
    const rows = tshark(
      capture(
        'invalid-icmp',
        golden.invalid.map((v) => papPacket(bytesOf(v), 'icmp')),
      ),
      COLUMNS,
    );
    golden.invalid.forEach((v, i) => {
      const row = rows[i]!;
      // A bad checksum or an undefined code is still PAP that went wrong; the rest is not PAP at all.
      const claimed = v.reason === 'bad-checksum' || v.reason === 'bad-code';
      expect(row['_ws.col.Protocol'], v.name).toBe(claimed ? 'DNPAP' : v.hex === '' ? 'IPv4' : 'ICMP');
      expect(row['dnpap.type'] !== '', v.name).toBe(claimed);
      if (v.reason === 'bad-checksum') expect(row['dnpap.checksum.bad']).toBe('1');
      if (v.reason === 'bad-code') expect(row['dnpap.code.bad'], v.name).toBe('1');
    });
  });

  it('matches answers to requests by host and transaction id, and marks retransmissions (two passes)', () => {
    const request = vector('fig4-request-low');
    const answer = vector('fig5-response-success');
    const packets = [
      papPacket(bytesOf(request), 'udp'), // 1: never answered: 3 reuses its id
      papPacket(bytesOf(request), 'udp'), // 2: retransmission of 1, identical
      papPacket(bytesOf(vector('fig4-request-high')), 'udp'), // 3: same id, other content: a new transaction
      papPacket(bytesOf(answer), 'udp'), // 4: answers 3
      papPacket(bytesOf(answer), 'udp'), // 5: the router answers again (a retransmission crossed)
      papPacket(bytesOf(vector('port-withdraw')), 'udp'), // 6: answers nothing
      papPacket(bytesOf(vector('port-renew-stale')), 'udp'), // 7: txid 3, never asked
      papPacket(bytesOf(vector('bad-checksum')), 'udp'), // 8: dropped by receivers, starts nothing
      papPacket(bytesOf(vector('fig4a-request')), 'icmp'), // 9
      papPacket(bytesOf(vector('fig5a-response-success')), 'icmp'), // 10: answers 9, 1 s later
    ];
    const fields = ['dnpap.response_in', 'dnpap.response_to', 'dnpap.retransmission', 'dnpap.time'];
    const rows = tshark(capture('transactions', packets), fields, ['-2']);
    expect(rows.map((r) => fields.map((f) => r[f]))).toEqual([
      ['', '', '', ''],
      ['', '', '1', ''],
      ['4', '', '', ''],
      ['', '3', '', '1.000000000'],
      ['', '3', '', '2.000000000'],
      ['', '', '', ''],
      ['', '', '', ''],
      ['', '', '', ''],
      ['10', '', '', ''],
      ['', '9', '', '1.000000000'],
    ]);
    // One pass (no -2): what is known when each frame is read, and nothing invented.
    const once = tshark(join(dir, 'transactions.pcap'), fields);
    expect(once.map((r) => r['dnpap.response_in'])).toEqual(Array<string>(10).fill(''));
    expect(once.map((r) => r['dnpap.response_to'])).toEqual(rows.map((r) => r['dnpap.response_to']));
  });

  it('names every status of docs/pap.md 4, and says what the lease time of a try-later is', () => {
    const encode = (m: PapMessage): Uint8Array => {
      const b = new Uint8Array(PAP_MESSAGE_LENGTH);
      emitPap(m, b, 0);
      return b;
    };
    const common = { transactionId: 0x0a0b0c0d, epoch: 0x5eed1234 };
    const statuses = Object.values(PapStatus).filter((s) => s !== PapStatus.Ok);
    const packets = [
      ...statuses.map((status) =>
        encode({
          kind: 'port-response',
          success: false,
          lowestPort: 0,
          portCount: 0,
          status,
          leaseTime: status === PapStatus.TryLater ? 250 : 0,
          ...common,
        }),
      ),
      encode({
        kind: 'spi-response',
        success: true,
        lowestSpi: 256,
        spiCount: 64,
        status: 0,
        leaseTime: 300,
        ...common,
      }),
    ].map((b) => papPacket(b, 'udp'));
    const rows = tshark(capture('statuses', packets), ['dnpap.status', '_ws.col.Info']);
    expect(rows.map((r) => r['dnpap.status'])).toEqual([...statuses.map(String), '0']);
    expect(rows.map((r) => r['_ws.col.Info'])).toEqual([
      'port-response failure quota-exceeded, txid 0x0a0b0c0d',
      'port-response failure pool-exhausted, txid 0x0a0b0c0d',
      'port-response failure unknown-lease, txid 0x0a0b0c0d',
      'port-response failure stale-epoch, txid 0x0a0b0c0d',
      'port-response failure malformed, txid 0x0a0b0c0d',
      'port-response failure try-later, txid 0x0a0b0c0d, retry in 250 s',
      'port-response failure unknown-address, txid 0x0a0b0c0d',
      'spi-response success, SPIs 0x00000100-0x0000013f, txid 0x0a0b0c0d, lease 300 s',
    ]);
  });

  it('finds PAP on another UDP port by heuristic (good checksum only) and follows the port preference', () => {
    const good = bytesOf(vector('fig4-request-low'));
    const bad = bytesOf(vector('bad-checksum'));
    const packets = [papPacket(good, 'udp', { udpPort: 7100 }), papPacket(bad, 'udp', { udpPort: 7100 })];
    const file = capture('other-port', packets);
    const kinds = (extra: string[] = []) => tshark(file, ['dnpap.kind', 'dnpap.type'], extra);
    expect(kinds().map((r) => r['dnpap.kind'])).toEqual(['port-request', '']);
    expect(kinds().map((r) => r['dnpap.type'])).toEqual(['32', '']);
    // With the port set, what is on it is shown whatever it holds.
    expect(kinds(['-o', 'dnpap.udp_port:7100']).map((r) => r['dnpap.type'])).toEqual(['32', '32']);
  });

  it('decodes PAP quoted in an ICMP error without renaming the error or counting it as a request', () => {
    const request = papPacket(bytesOf(vector('fig4-request-low')), 'udp');
    const overIcmp = papPacket(bytesOf(vector('fig4a-request')), 'icmp');
    const packets = [request, icmpError(request), icmpError(overIcmp)];
    const fields = ['_ws.col.Protocol', 'icmp.type', 'dnpap.kind', 'dnpap.retransmission'];
    const rows = tshark(capture('quoted', packets), fields, ['-2']);
    expect(rows.map((r) => fields.map((f) => r[f]))).toEqual([
      ['DNPAP', '', 'port-request', ''],
      ['ICMP', '3', 'port-request', ''],
      ['ICMP', '3|33', 'spi-request', ''],
    ]);
  });

  it('leaves every other ICMP message exactly as the ICMP dissector shows it', () => {
    const echo = new Uint8Array(36);
    echo.set([0x45, 0, 0, 36, 0, 1, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 203, 0, 113, 3]);
    echo.set([8, 0, 0, 0, 0x12, 0x34, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8], 20);
    fixIpv4(echo, true);
    const truncated = new Uint8Array(22); // a type 32 message cut after its code: ICMP marks it malformed
    truncated.set([0x45, 0, 0, 22, 0, 1, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 7, 32, 0]);
    fixIpv4(truncated, false);
    const notPap = papPacket(bytesOf(vector('version-2')), 'icmp');
    const file = capture('other-icmp', [
      echo,
      truncated,
      notPap,
      icmpError(papPacket(new Uint8Array(8), 'udp', { udpPort: 53 })),
    ]);
    const verbose = (withScript: boolean) => {
      const args = [...(withScript ? ['-X', `lua_script:${LUA}`] : []), '-r', file, '-V'];
      const r = spawnSync('tshark', args, { encoding: 'utf8', env: { ...process.env, HOME: dir } });
      expect(r.status).toBe(0);
      return r.stdout.split('\n');
    };
    const plain = verbose(false);
    const scripted = verbose(true);
    // The one difference: the wrapper is a layer of its own in frame.protocols.
    const layers = (lines: string[]) => lines.filter((l) => l.includes('[Protocols in frame:'));
    expect(layers(scripted)).toEqual(layers(plain).map((l) => l.replace(':icmp', ':dnpap_icmp:icmp')));
    const rest = (lines: string[]) => lines.filter((l) => !l.includes('[Protocols in frame:'));
    expect(rest(scripted)).toEqual(rest(plain));
    expect(plain.join('\n')).toContain('Malformed Packet');
  });

  it('leaves ICMP types 32 and 33 to ICMP when the preference says so', () => {
    const v = vector('fig4-request-low');
    const file = capture('icmp-off', [papPacket(bytesOf(v), 'icmp'), papPacket(bytesOf(v), 'udp')]);
    const rows = tshark(file, ['_ws.col.Protocol', 'dnpap.kind'], ['-o', 'dnpap.icmp:FALSE']);
    expect(rows.map((r) => [r['_ws.col.Protocol'], r['dnpap.kind']])).toEqual([
      ['ICMP', ''],
      ['DNPAP', 'port-request'],
    ]);
  });

  it('replaces the ICMP dissector under Decode As (ip.proto == 1)', () => {
    const v = vector('fig5a-response-success');
    const rows = tshark(capture('decode-as', [papPacket(bytesOf(v), 'icmp')]), COLUMNS, [
      '-d',
      'ip.proto==1,dnpap',
    ]);
    expect(rows[0]!['icmp.type']).toBe('');
    expectDecoded(rows[0]!, v, 'icmp');
  });
});
