/**
 * Interoperation with an independent decoder: packets this engine sealed
 * are written to a capture file, and Wireshark's ESP dissector (tshark,
 * with the SAs given in its esp_sa table) must decrypt them, find the ICV
 * good, and see the very datagrams that went in.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LinkType, PcapWriter } from '../../../src/io/pcap.ts';
import type { EspSa } from '../../../src/ipsec/sa.ts';
import { enginePair, hex, KEYS, lcg, place, udpPacket, type PairOptions } from './helpers.ts';

const hasTshark = spawnSync('tshark', ['--version'], { stdio: 'ignore' }).status === 0;

const UAT_ENCRYPTION: Record<string, string> = {
  'aes-gcm-16': 'AES-GCM with 16 octet ICV [RFC4106]',
  'aes-cbc': 'AES-CBC [RFC3602]',
  null: 'NULL',
};

/** The esp_sa row for an SA, in the order of Wireshark's table: protocol, src, dst, SPI, encryption, key, auth, key. */
function uatRow(sa: EspSa, o: PairOptions): string {
  const k = (b: Uint8Array): string => `0x${hex(b)}`;
  const encKey =
    o.suite === 'gcm128'
      ? k(KEYS.gcm128)
      : o.suite === 'gcm256'
        ? k(KEYS.gcm256)
        : o.suite === 'cbc128'
          ? k(KEYS.aes128)
          : o.suite === 'cbc256'
            ? k(KEYS.aes256)
            : '';
  const auth =
    sa.transform.integrity === null ? ['NULL', ''] : ['HMAC-SHA-256-128 [RFC4868]', k(KEYS.sha256)];
  const spi = `0x${sa.spi.toString(16).padStart(8, '0')}`;
  const fields = ['IPv4', '*', '*', spi, UAT_ENCRYPTION[sa.transform.encryption]!, encKey, ...auth];
  return `uat:esp_sa:${fields.map((f) => `"${f}"`).join(',')}`;
}

const CONFIGS: PairOptions[] = [
  { suite: 'gcm128' },
  { suite: 'gcm256', mode: 'tunnel' },
  { suite: 'cbc128' },
  { suite: 'cbc256', mode: 'tunnel' },
  { suite: 'null' },
  { suite: 'gcm128', encap: true },
  { suite: 'cbc128', mode: 'tunnel', encap: true },
];

describe.skipIf(!hasTshark)('Wireshark decrypts what the engine sealed', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ipsec-tshark-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('every suite and mode: ICV good, inner datagram as sent', () => {
    const pcap = join(dir, 'sealed.pcap');
    const writer = PcapWriter.open(pcap, { linkType: LinkType.Raw });
    const rows: string[] = [];
    const expected: string[] = [];
    const r = lcg(2406);
    CONFIGS.forEach((o, i) => {
      const pair = enginePair({ ...o, spi: 0x3000 + i });
      rows.push(uatRow(pair.out as EspSa, o));
      for (let n = 1; n <= 3; n++) {
        const sport = 1024 + (r() % 60000);
        const data = Uint8Array.from({ length: 1 + (r() % 300) }, () => r() & 0xff);
        const p = place(udpPacket(sport, 7777, data));
        expect(pair.sender.outbound(p.buf, p.span)).toBe('protected');
        writer.write(p.buf, p.span.offset, p.span.length);
        const nextHeader = o.mode === 'tunnel' ? '0x04' : '0x11';
        expected.push(
          [
            `0x${(0x3000 + i).toString(16).padStart(8, '0')}`,
            n,
            nextHeader,
            1,
            0,
            '198.51.100.30',
            '203.0.113.3',
            sport,
            7777,
            hex(data),
          ].join('\t'),
        );
      }
    });
    writer.close();
    const args = [
      '-r',
      pcap,
      '-o',
      'esp.enable_encryption_decode:TRUE',
      '-o',
      'esp.enable_authentication_check:TRUE',
    ];
    for (const row of rows) args.push('-o', row);
    args.push('-T', 'fields', '-E', 'occurrence=l');
    for (const f of [
      'esp.spi',
      'esp.sequence',
      'esp.protocol',
      'esp.icv_good',
      'esp.icv_bad',
      'ip.src',
      'ip.dst',
      'udp.srcport',
      'udp.dstport',
      'data.data',
    ]) {
      args.push('-e', f);
    }
    const out = spawnSync('tshark', args, { encoding: 'utf8' });
    expect(out.status).toBe(0);
    const lines = out.stdout.trim().split('\n');
    expect(lines).toEqual(expected);
  });
});
