/**
 * Packets built by scapy (scripts/fixtures/golden_ip.py) must parse to the
 * field values scapy reports, and the parsed plain values must emit back to
 * the identical bytes.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { emitIpip, IpipInner, decapsulate, parseIpip } from '../../../src/wire/ipip.ts';
import { emitIpv4, Ipv4View, ipv4ToString, parseIpv4 } from '../../../src/wire/ipv4.ts';
import type { TcpOption } from '../../../src/wire/tcp-options.ts';
import { emitTcp, parseTcp, TcpView } from '../../../src/wire/tcp.ts';
import { emitUdp, parseUdp, UdpView } from '../../../src/wire/udp.ts';
import { fromHex, toHex } from './ip-arbitraries.ts';

interface ScapyIp {
  version: number;
  ihl: number;
  tos: number;
  len: number;
  id: number;
  flags: number;
  frag: number;
  ttl: number;
  proto: number;
  chksum: number;
  src: string;
  dst: string;
  options: { type: number; name: string; hex: string }[];
}
interface ScapyTcpOption {
  name: string;
  kind: number;
  value: unknown;
}
interface ScapyTcp {
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  dataofs: number;
  reserved: number;
  flags: number;
  window: number;
  chksum: number;
  urgptr: number;
  options: ScapyTcpOption[];
  payload: string;
}
interface ScapyUdp {
  sport: number;
  dport: number;
  len: number;
  chksum: number;
  payload: string;
}
interface Layers {
  ip: ScapyIp;
  tcp?: ScapyTcp;
  udp?: ScapyUdp;
  inner?: Layers;
  payload?: string;
}
interface Golden {
  generator: string;
  packets: { name: string; hex: string; layers?: Layers; reject?: string }[];
}

const golden = JSON.parse(
  readFileSync(new URL('../../fixtures/golden/ip.json', import.meta.url), 'utf8'),
) as Golden;

/** A list up to and including its first EOL: scapy shows padding as more EOLs, we keep it canonical. */
function upToEol<T>(list: readonly T[], isEol: (x: T) => boolean): T[] {
  const i = list.findIndex(isEol);
  return i < 0 ? [...list] : list.slice(0, i + 1);
}

/** Our TCP option in the shape scapy reports it, for the kinds both sides decode. */
function expectTcpOption(ours: TcpOption, theirs: ScapyTcpOption, where: string): void {
  const v = theirs.value;
  switch (ours.kind) {
    case 'eol':
    case 'nop':
      expect(theirs.name, where).toBe(ours.kind.toUpperCase());
      return;
    case 'mss':
      expect([theirs.name, v], where).toEqual(['MSS', ours.mss]);
      return;
    case 'window-scale':
      expect([theirs.name, v], where).toEqual(['WScale', ours.shift]);
      return;
    case 'sack-permitted':
      expect([theirs.name, v], where).toEqual(['SAckOK', '']);
      return;
    case 'sack':
      expect([theirs.name, v], where).toEqual(['SAck', ours.blocks.flatMap((b) => [b.left, b.right])]);
      return;
    case 'timestamps':
      expect([theirs.name, v], where).toEqual(['Timestamp', [ours.tsVal, ours.tsEcr]]);
      return;
    case 'raw':
      expect(theirs.kind, where).toBe(ours.type);
      // Scapy decodes some kinds we keep raw (UTO, TFO); where it shows bytes, they must match.
      if (typeof v === 'string') expect(toHex(ours.data), where).toBe(v);
      return;
  }
}

/**
 * Checks one IPv4 datagram at buf[off] against scapy's layers and emits the
 * parsed values into `out` at the same offset. Returns the datagram length.
 */
function checkDatagram(
  buf: Uint8Array,
  off: number,
  len: number,
  l: Layers,
  out: Uint8Array,
  where: string,
): number {
  const p = parseIpv4(buf, off, len);
  expect(p.ok ? 'ok' : p.reason, where).toBe('ok');
  if (!p.ok) return 0;
  const h = p.value;
  const v = new Ipv4View(buf, off, len);
  expect(
    {
      version: v.version,
      ihl: v.headerLength / 4,
      tos: h.tos,
      len: v.totalLength,
      id: h.identification,
      flags: h.flags,
      frag: h.fragmentOffset,
      ttl: h.ttl,
      proto: h.protocol,
      chksum: v.checksum,
      src: ipv4ToString(h.src),
      dst: ipv4ToString(h.dst),
    },
    where,
  ).toEqual({ ...l.ip, options: undefined });
  const theirs = upToEol(l.ip.options, (o) => o.type === 0).map((o) =>
    o.type <= 1 ? { type: o.type, data: '' } : { type: o.type, data: o.hex.slice(4) },
  );
  const ours = upToEol(h.options, (o) => o.type === 0).map((o) => ({ type: o.type, data: toHex(o.data) }));
  expect(ours, `${where}: options`).toEqual(theirs);

  const hl = emitIpv4(h, out, off);
  const at = off + hl;
  const plen = h.payloadLength;
  if (l.tcp) {
    const t = l.tcp;
    const s = parseTcp(buf, at, plen, h.src, h.dst);
    expect(s.ok ? 'ok' : s.reason, `${where}: tcp`).toBe('ok');
    if (!s.ok) return 0;
    const tv = new TcpView(buf, at, plen);
    expect(
      [s.value.srcPort, s.value.dstPort, s.value.seq, s.value.ack, tv.headerLength / 4, s.value.reserved],
      where,
    ).toEqual([t.sport, t.dport, t.seq, t.ack, t.dataofs, (t.reserved << 1) | (t.flags >> 8)]);
    expect(
      [s.value.flags, s.value.window, tv.checksum, s.value.urgentPointer, toHex(s.value.payload)],
      where,
    ).toEqual([t.flags & 0xff, t.window, t.chksum, t.urgptr, t.payload]);
    const opts = upToEol(s.value.options, (o) => o.kind === 'eol');
    const scapyOpts = upToEol(t.options, (o) => o.name === 'EOL');
    expect(opts.length, `${where}: tcp options`).toBe(scapyOpts.length);
    opts.forEach((o, i) => expectTcpOption(o, scapyOpts[i]!, `${where}: tcp option ${i}`));
    emitTcp(s.value, out, at, h.src, h.dst);
  } else if (l.udp) {
    const u = l.udp;
    const d = parseUdp(buf, at, plen, h.src, h.dst);
    expect(d.ok ? 'ok' : d.reason, `${where}: udp`).toBe('ok');
    if (!d.ok) return 0;
    const uv = new UdpView(buf, at, plen);
    expect(
      [d.value.srcPort, d.value.dstPort, uv.datagramLength, uv.checksum, toHex(d.value.payload)],
      where,
    ).toEqual([u.sport, u.dport, u.len, u.chksum, u.payload]);
    expect(d.value.hasChecksum, where).toBe(u.chksum !== 0);
    emitUdp(d.value, out, at, h.src, h.dst);
  } else if (l.inner) {
    const inner = new IpipInner();
    expect(decapsulate(buf, off, len, inner), where).toBeNull();
    expect([inner.offset, inner.outerSrc, inner.outerDst], where).toEqual([at, h.src, h.dst]);
    const pkt = parseIpip(buf, off, len);
    expect(pkt.ok, where).toBe(true);
    if (pkt.ok) emitIpip(pkt.value, out, off);
    checkDatagram(buf, inner.offset, inner.length, l.inner, out, `${where}: inner`);
  } else {
    expect(toHex(buf.subarray(at, at + plen)), where).toBe(l.payload);
    out.set(buf.subarray(at, at + plen), at);
  }
  return hl + plen;
}

describe(`golden packets from ${golden.generator}`, () => {
  it('has the packets the generator promises', () => {
    expect(golden.packets.length).toBeGreaterThanOrEqual(50);
  });

  for (const pkt of golden.packets) {
    it(pkt.name, () => {
      const bytes = fromHex(pkt.hex);
      if (pkt.reject !== undefined) {
        expect(parseIpv4(bytes, 0, bytes.length)).toEqual({ ok: false, reason: pkt.reject });
        expect(new Ipv4View(bytes).check()).toBe(pkt.reject);
        return;
      }
      const out = new Uint8Array(bytes.length).fill(0xa5);
      const n = checkDatagram(bytes, 0, bytes.length, pkt.layers!, out, pkt.name);
      expect(n).toBe(bytes.length);
      expect(toHex(out)).toBe(pkt.hex);
    });
  }
});
