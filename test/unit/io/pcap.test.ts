import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { capture } from '../../../src/io/capture.ts';
import { createDevicePair, MemoryScheduler } from '../../../src/io/memory.ts';
import { LinkType, parsePcap, PcapWriter } from '../../../src/io/pcap.ts';
import { SlotBuffer, SpanList } from '../../../src/io/slots.ts';
import { buildIcmpEcho, buildIpip, buildUdp4 } from '../../../scripts/bench/io-packets.ts';

const dir = mkdtempSync(join(tmpdir(), 'distnat-pcap-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const hasTshark = (() => {
  try {
    execFileSync('tshark', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

function tsharkFields(path: string, fields: string[]): string[][] {
  const args = ['-r', path, '-T', 'fields', '-E', 'separator=|'];
  for (const f of fields) args.push('-e', f);
  const out = execFileSync('tshark', args, { encoding: 'utf8', env: { ...process.env, HOME: dir } });
  return out
    .trim()
    .split('\n')
    .map((l) => l.split('|'));
}

const udp = buildUdp4('198.51.100.30', '203.0.113.3', 40000, 53, 30);
const echo = buildIcmpEcho('203.0.113.3', '198.51.100.30', 0x1234, 7);
const tunnelled = buildIpip('10.0.0.7', '10.0.0.1', udp);

describe('PcapWriter', () => {
  it('round-trips records through parsePcap, across buffer flushes, with timestamps', () => {
    const path = join(dir, 'round.pcap');
    let t = 1_700_000_000_123.456;
    const w = PcapWriter.open(path, { bufferSize: 64, now: () => t });
    for (let i = 0; i < 20; i++) {
      w.write(i % 2 ? udp : echo);
      t += 1.5;
    }
    w.close();
    const f = parsePcap(readFileSync(path))!;
    expect(f.linkType).toBe(101);
    expect(f.records).toHaveLength(20);
    expect(f.records[0]!.data).toEqual(echo);
    expect(f.records[1]!.data).toEqual(udp);
    expect(f.records[0]!.timeMs).toBeCloseTo(1_700_000_000_123.456, 3);
    expect(f.records[19]!.timeMs - f.records[0]!.timeMs).toBeCloseTo(28.5, 3);
  });

  it('cuts packets at the snap length but keeps their real length', () => {
    const path = join(dir, 'snap.pcap');
    const w = PcapWriter.open(path, { snapLength: 24 });
    w.write(udp);
    w.close();
    const r = parsePcap(readFileSync(path))!.records[0]!;
    expect(r.data).toEqual(udp.subarray(0, 24));
    expect(r.originalLength).toBe(udp.length);
  });

  it('writes batches from span lists and slots, skipping spans outside the buffer', () => {
    const path = join(dir, 'batch.pcap');
    const w = PcapWriter.open(path);
    const slots = new SlotBuffer(4);
    slots.put(0, udp);
    slots.put(1, echo);
    w.writeSlots(slots, 2);
    const spans = new SpanList(4);
    spans.push(slots.offset(1), slots.lengths[1]!);
    spans.push(slots.bytes.length - 2, 10);
    w.writeBatch(slots.bytes, spans.pairs, spans.count);
    w.close();
    expect(parsePcap(readFileSync(path))!.records.map((r) => r.data.length)).toEqual([
      udp.length,
      echo.length,
      echo.length,
    ]);
  });

  it('rejects truncated and foreign files', () => {
    expect(parsePcap(new Uint8Array(10))).toBeUndefined();
    expect(parsePcap(new Uint8Array(40))).toBeUndefined();
  });

  it.skipIf(!hasTshark)('is decoded by tshark as raw IPv4 (101) and as LINKTYPE_IPV4 (228)', () => {
    for (const linkType of [LinkType.Raw, LinkType.Ipv4]) {
      const path = join(dir, `tshark-${linkType}.pcap`);
      const w = PcapWriter.open(path, { linkType });
      w.write(udp);
      w.write(echo);
      w.write(tunnelled);
      w.close();
      const rows = tsharkFields(path, [
        'ip.src',
        'ip.dst',
        'ip.proto',
        'udp.dstport',
        'icmp.type',
        'icmp.seq',
        'ip.checksum.status',
      ]);
      expect(rows).toHaveLength(3);
      expect(rows[0]!.slice(0, 4)).toEqual(['198.51.100.30', '203.0.113.3', '17', '53']);
      expect(rows[1]!.slice(0, 3)).toEqual(['203.0.113.3', '198.51.100.30', '1']);
      expect(rows[1]![4]).toBe('8');
      expect(rows[1]![5]).toBe('7');
      // IP-in-IP: tshark shows both headers, outer first.
      expect(rows[2]!.slice(0, 4)).toEqual(['10.0.0.7,198.51.100.30', '10.0.0.1,203.0.113.3', '4,17', '53']);
    }
  });
});

describe('capture', () => {
  it.skipIf(!hasTshark)('records what a device reads and sends, decodable by tshark', () => {
    const path = join(dir, 'capture.pcap');
    const w = PcapWriter.open(path);
    const [a, b] = createDevicePair({ scheduler: new MemoryScheduler(false) });
    const ca = capture(a, w);
    b.onBatch((n) => {
      for (let i = 0; i < n; i++) b.send(echo); // answer each with an echo packet
    });
    let replies = 0;
    ca.onBatch((n) => (replies += n));
    ca.send(udp);
    a.scheduler.runUntilIdle();
    ca.close();
    w.close();
    expect(replies).toBe(1);
    const rows = tsharkFields(path, ['ip.proto', 'ip.dst']);
    expect(rows).toEqual([
      ['17', '203.0.113.3'],
      ['1', '198.51.100.30'],
    ]);
  });
});
