/**
 * Per-packet cost of the IPsec engine: `npx tsx scripts/bench/ipsec-micro.ts`.
 *
 * Each case seals (IpsecEngine.outbound: SPD lookup, ESP/AH in place) or
 * opens (IpsecEngine.inbound: SA lookup, replay check, ICV, decryption,
 * policy check) IPv4 datagrams of 64 and 1400 bytes, over a ring of slots
 * laid out like the I/O addon's (headroom, datagram, tailroom). Every step
 * first copies the plain (or sealed) datagram back into its slot, because
 * both directions work in place; the 'copy only' rows give that cost.
 *
 * Opening the same sealed packets again and again would only measure the
 * replay check, so the receiving SAs run with anti-replay off here; the
 * window costs a few ns (see the 'replay window' row).
 *
 * The baseline rows time what the engine avoids: a fresh Node cipher or
 * HMAC per packet, which costs about as much as forwarding the packet
 * (docs/design.md, "Where the time goes").
 *
 * AES-GCM, AES-CBC + HMAC and the HMAC of NULL and AH run in the native
 * addon when it is built; the '-node' suites run them on node:crypto
 * (DISTNAT_ESP_CRYPTO=node) for comparison.
 *
 * BENCH_SECONDS (default 1) per case; ONLY=<substring> to run some cases.
 * Other benches import `sealOpenCost` (scripts/bench/ipsec.ts).
 */
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { measure, observeSink, type BenchCase, type MicroOptions } from './lib/micro.ts';
import { IpsecEngine } from '../../src/ipsec/engine.ts';
import { ReplayWindow } from '../../src/ipsec/replay-window.ts';
import { AhSa, EspSa, type EspSaParams } from '../../src/ipsec/sa.ts';
import { SecurityAssociationDatabase } from '../../src/ipsec/sad.ts';
import { selector } from '../../src/ipsec/selector.ts';
import { SecurityPolicy, SecurityPolicyDatabase } from '../../src/ipsec/spd.ts';
import { PacketSpan, type IpsecProtocol } from '../../src/ipsec/types.ts';
import { internetChecksum } from '../../src/wire/checksum.ts';

const RING = 64;
const SLOT = 2048;
const HEADROOM = 128;
const HOST = 0xc633641e; // 198.51.100.30
const SERVER = 0xcb007103; // 203.0.113.3

/** A UDP datagram of `total` bytes from HOST to SERVER (checksum 0: the engine does not look). */
function datagram(total: number, seed: number): Uint8Array {
  const b = new Uint8Array(total);
  b[0] = 0x45;
  b[2] = total >>> 8;
  b[3] = total & 0xff;
  b[8] = 64;
  b[9] = 17;
  for (let i = 0; i < 4; i++) {
    b[12 + i] = (HOST >>> (24 - 8 * i)) & 0xff;
    b[16 + i] = (SERVER >>> (24 - 8 * i)) & 0xff;
  }
  const c = internetChecksum(b, 0, 20);
  b[10] = c >>> 8;
  b[11] = c & 0xff;
  b[20] = 4;
  b[21] = 6;
  b[22] = 0;
  b[23] = 53;
  b[24] = (total - 20) >>> 8;
  b[25] = (total - 20) & 0xff;
  for (let i = 28; i < total; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

type NativeSuite = 'gcm128' | 'gcm256' | 'cbc128' | 'cbc256' | 'null' | 'ah';
/** '<suite>-node': the same suite on node:crypto instead of the addon. */
export type Suite = NativeSuite | `${NativeSuite}-node`;

function saParams(
  s: Exclude<NativeSuite, 'ah'>,
): Pick<EspSaParams, 'encryption' | 'encryptionKey' | 'integrity' | 'integrityKey'> {
  const sha = { integrity: 'hmac-sha256-128' as const, integrityKey: randomBytes(32) };
  switch (s) {
    case 'gcm128':
      return { encryption: 'aes-gcm-16', encryptionKey: randomBytes(20) };
    case 'gcm256':
      return { encryption: 'aes-gcm-16', encryptionKey: randomBytes(36) };
    case 'cbc128':
      return { encryption: 'aes-cbc', encryptionKey: randomBytes(16), ...sha };
    case 'cbc256':
      return { encryption: 'aes-cbc', encryptionKey: randomBytes(32), ...sha };
    case 'null':
      return { encryption: 'null', ...sha };
  }
}

/** A sender and a receiver engine sharing one SA pair (same keys), protect-everything policies. */
function pair(suite: Suite): { sender: IpsecEngine; receiver: IpsecEngine } {
  const s = suite.replace('-node', '') as NativeSuite;
  const saved = process.env.DISTNAT_ESP_CRYPTO;
  process.env.DISTNAT_ESP_CRYPTO = suite.endsWith('-node') ? 'node' : (saved ?? '');
  const protocol: IpsecProtocol = s === 'ah' ? 'ah' : 'esp';
  const keys = s === 'ah' ? { integrityKey: randomBytes(32) } : saParams(s);
  const make = (direction: 'inbound' | 'outbound') =>
    s === 'ah'
      ? new AhSa({
          spi: 0x1000,
          direction,
          mode: 'transport',
          replayWindow: 0,
          integrity: 'hmac-sha256-128',
          integrityKey: keys.integrityKey!,
        })
      : new EspSa({
          spi: 0x1000,
          direction,
          mode: 'transport',
          replayWindow: 0,
          ...(keys as ReturnType<typeof saParams>),
        });
  const sas = [make('outbound'), make('inbound')];
  if (saved === undefined) delete process.env.DISTNAT_ESP_CRYPTO;
  else process.env.DISTNAT_ESP_CRYPTO = saved;
  const engines = sas.map((sa) => {
    const spd = new SecurityPolicyDatabase();
    const sad = new SecurityAssociationDatabase();
    const p = spd.add(
      new SecurityPolicy({ name: 'all', selector: selector(), action: 'protect', protect: [protocol] }),
    );
    sad.add(sa);
    if (sa.direction === 'outbound') sad.bindOutbound(p, [sa]);
    else sad.bindInbound(p, sa);
    return new IpsecEngine(spd, sad);
  });
  return { sender: engines[0]!, receiver: engines[1]! };
}

/** A ring of slots holding `packets[k % n]`, and the per-step restore + span set-up. */
function ring(packets: Uint8Array[]): { buf: Uint8Array; span: PacketSpan; load(i: number): void } {
  const buf = new Uint8Array(RING * SLOT);
  const span = new PacketSpan();
  return {
    buf,
    span,
    load(i: number) {
      const k = i & (RING - 1);
      const p = packets[k % packets.length]!;
      const at = k * SLOT + HEADROOM;
      buf.set(p, at);
      span.set(at, p.length, k * SLOT, (k + 1) * SLOT);
    },
  };
}

export function sealCase(s: Suite, size: number): BenchCase {
  return {
    name: `seal ${s} ${size} B`,
    prepare() {
      const { sender } = pair(s);
      const r = ring(Array.from({ length: 8 }, (_, k) => datagram(size, k)));
      return (i) => {
        r.load(i);
        return sender.outbound(r.buf, r.span) === 'protected' ? r.span.length : -1;
      };
    },
  };
}

export function openCase(s: Suite, size: number): BenchCase {
  return {
    name: `open ${s} ${size} B`,
    prepare() {
      const { sender, receiver } = pair(s);
      const sealed: Uint8Array[] = [];
      const span = new PacketSpan();
      for (let k = 0; k < RING; k++) {
        const buf = new Uint8Array(SLOT);
        buf.set(datagram(size, k), HEADROOM);
        span.set(HEADROOM, size, 0, SLOT);
        if (sender.outbound(buf, span) !== 'protected') throw new Error('seal failed');
        sealed.push(buf.slice(span.offset, span.offset + span.length));
      }
      const r = ring(sealed);
      return (i) => {
        r.load(i);
        return receiver.inbound(r.buf, r.span) === 'accepted' ? r.span.length : -1;
      };
    },
  };
}

const SIZES = [64, 1400];
const SUITES: Suite[] = [
  'gcm128',
  'gcm128-node',
  'gcm256',
  'gcm256-node',
  'cbc128',
  'cbc128-node',
  'cbc256',
  'cbc256-node',
  'null',
  'null-node',
  'ah',
  'ah-node',
];

const cases: BenchCase[] = [
  ...SIZES.map((size): BenchCase => ({
    name: `copy only ${size} B`,
    prepare() {
      const r = ring(Array.from({ length: 8 }, (_, k) => datagram(size, k)));
      return (i) => {
        r.load(i);
        return r.span.length;
      };
    },
  })),
  {
    name: 'replay window check + accept',
    prepare() {
      const w = new ReplayWindow(1024);
      return (i) => {
        const seq = i + 1 - (i & 7) * 3;
        const s = w.check(seq);
        if (s > 0) w.accept(s);
        return s;
      };
    },
  },
  ...SIZES.flatMap((size) => SUITES.flatMap((s) => [sealCase(s, size), openCase(s, size)])),
  ...SIZES.flatMap((size): BenchCase[] => {
    const data = datagram(size, 1);
    const key16 = randomBytes(16);
    const key32 = randomBytes(32);
    const iv12 = randomBytes(12);
    const iv16 = randomBytes(16);
    const aad = randomBytes(8);
    return [
      {
        name: `baseline: createCipheriv aes-128-gcm per packet ${size} B`,
        prepare: () => (i) => {
          iv12[11] = i;
          const c = createCipheriv('aes-128-gcm', key16, iv12, { authTagLength: 16 });
          c.setAAD(aad);
          const n = c.update(data).length;
          c.final();
          return n + c.getAuthTag()[0]!;
        },
      },
      {
        name: `baseline: createCipheriv aes-128-cbc per packet ${size} B`,
        prepare: () => (i) => {
          iv16[15] = i;
          const c = createCipheriv('aes-128-cbc', key16, iv16).setAutoPadding(false);
          return c.update(data.subarray(0, size & ~15)).length;
        },
      },
      {
        name: `baseline: createHmac sha256 per packet ${size} B`,
        prepare: () => () => createHmac('sha256', key32).update(data).digest()[0]!,
      },
    ];
  }),
];

// --- runner -------------------------------------------------------------------

const MICRO: MicroOptions = { batch: 256, warmupMs: 300, checkFirst: true };

/** Median ns per packet to seal and to open `size`-byte datagrams with `suite` (this file's cases). */
export async function sealOpenCost(
  suite: Suite,
  size: number,
  seconds = 1,
): Promise<{ seal: number; open: number }> {
  const seal = await measure(sealCase(suite, size), seconds, MICRO);
  const open = await measure(openCase(suite, size), seconds, MICRO);
  return { seal: seal.median, open: open.median };
}

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMain) {
  const seconds = Number(process.env.BENCH_SECONDS ?? 1);
  const only = process.env.ONLY;
  console.log(`ipsec micro bench: ${process.version}, ${seconds} s per case\n`);
  const rows: string[][] = [['case', 'ns/packet', 'best', 'kpps', 'heap B/packet', 'GCs per 1M']];
  for (const c of cases) {
    if (only !== undefined && !c.name.includes(only)) continue;
    const r = await measure(c, seconds, MICRO);
    rows.push([
      c.name,
      r.median.toFixed(0),
      r.best.toFixed(0),
      (1e6 / r.median).toFixed(0),
      r.heapPerPacket.toFixed(1),
      r.gcsPerMillion.toFixed(0),
    ]);
  }
  const widths = rows[0]!.map((_, j) => Math.max(...rows.map((row) => row[j]!.length)));
  for (const row of rows) {
    console.log(
      row.map((cell, j) => (j === 0 ? cell.padEnd(widths[j]!) : cell.padStart(widths[j]!))).join('  '),
    );
  }
  observeSink();
}
