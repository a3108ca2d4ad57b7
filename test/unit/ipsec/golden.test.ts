/**
 * Known-answer tests against scapy: packets scapy protected are verified and
 * opened here, and the same datagrams protected here with scapy's keys,
 * SPIs, sequence numbers and IVs come out byte for byte as scapy's.
 */
import { describe, expect, it } from 'vitest';
import { ahProtect, ahUnprotect } from '../../../src/ipsec/ah-processing.ts';
import { espProtect, espUnprotect } from '../../../src/ipsec/esp-processing.ts';
import { AhSa, EspSa } from '../../../src/ipsec/sa.ts';
import { IdentificationCounter } from '../../../src/ipsec/tunnel.ts';
import { PacketSpan } from '../../../src/ipsec/types.ts';
import { internetChecksum } from '../../../src/wire/checksum.ts';
import { bytes, fixedIv, GOLDEN_AUTH, GOLDEN_CRYPT, golden, hex, place, taken } from './helpers.ts';

interface SecEspCase {
  name: string;
  hex: string;
  esp_offset: number;
  crypt_algo: string;
  crypt_key: string;
  auth_algo: string | null;
  auth_key: string;
  iv: string;
  icv_length: number;
  fields: { spi: number; seq: number; padlen: number; nh: number; icv: string };
  plaintext: string;
}
interface SecAhCase {
  name: string;
  hex: string;
  ah_offset: number;
  auth_algo: string;
  auth_key: string;
  fields: { nh: number; spi: number; seq: number; icv: string };
}
interface IpsecEspCase {
  name: string;
  mode: 'transport' | 'tunnel';
  original: string;
  hex: string;
  esp_offset: number;
  outer_id: number;
  encap: { sport: number; dport: number } | null;
  crypt_algo: string;
  crypt_key: string;
  auth_algo: string | null;
  auth_key: string;
  spi: number;
  seq: number;
  esn_high: number | null;
  iv: string;
  icv: string;
}
interface IpsecAhCase {
  name: string;
  mode: 'transport' | 'tunnel';
  original: string;
  hex: string;
  outer_id: number;
  auth_algo: string;
  auth_key: string;
  spi: number;
  seq: number;
  esn_high: number | null;
}
interface Bundle {
  original: string;
  esp_stage: string;
  hex: string;
  esp: { spi: number; seq: number; iv: string; crypt_key: string };
  ah: { spi: number; seq: number; auth_key: string };
}

const sec = golden<{ cases: SecEspCase[] }>('esp.json').cases;
const secAh = golden<{ cases: SecAhCase[] }>('ah.json').cases;
const ipsec = golden<{ esp: IpsecEspCase[]; ah: IpsecAhCase[]; bundle: Bundle }>('ipsec.json');

const TWO_32 = 0x1_0000_0000;
const u32 = (b: Uint8Array, i: number): number =>
  ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;

function ipEndpoints(pkt: Uint8Array): { src: number; dst: number } {
  return { src: u32(pkt, 12), dst: u32(pkt, 16) };
}

/** An ESP SA as the golden case describes it; outbound SAs start one before the case's sequence number. */
function espSa(
  c: {
    spi: number;
    crypt_algo: string;
    crypt_key: string;
    auth_algo: string | null;
    auth_key: string;
    iv: string;
  },
  direction: 'inbound' | 'outbound',
  mode: 'transport' | 'tunnel',
  pkt: Uint8Array,
  extra: { esn?: boolean; encap?: { sport: number; dport: number } | null } = {},
): EspSa {
  const { src, dst } = ipEndpoints(pkt);
  const encryption = GOLDEN_CRYPT[c.crypt_algo]!;
  return new EspSa({
    spi: c.spi,
    direction,
    mode,
    tunnel: direction === 'outbound' ? { local: src, remote: dst } : { local: dst, remote: src },
    encryption,
    encryptionKey: encryption === 'null' ? undefined : bytes(c.crypt_key),
    integrity: c.auth_algo === null ? undefined : GOLDEN_AUTH[c.auth_algo],
    integrityKey: c.auth_algo === null ? undefined : bytes(c.auth_key),
    esn: extra.esn,
    encap:
      extra.encap == null
        ? undefined
        : direction === 'outbound'
          ? { localPort: extra.encap.sport, remotePort: extra.encap.dport }
          : { localPort: extra.encap.dport, remotePort: extra.encap.sport },
    iv: fixedIv(bytes(c.iv)),
  });
}

/** The transport-mode datagram before ESP: scapy's IP header with protocol and length restored. */
function transportOriginal(
  pkt: Uint8Array,
  espOffset: number,
  nh: number,
  plaintext: Uint8Array,
): Uint8Array {
  const hl = espOffset;
  const out = new Uint8Array(hl + plaintext.length);
  out.set(pkt.subarray(0, hl));
  out[2] = out.length >>> 8;
  out[3] = out.length & 0xff;
  out[9] = nh;
  out[10] = 0;
  out[11] = 0;
  const ck = internetChecksum(out, 0, hl);
  out[10] = ck >>> 8;
  out[11] = ck & 0xff;
  out.set(plaintext, hl);
  return out;
}

/** Opens a protected packet with `sa`; returns the verdict and the datagram inside. */
function open(sa: EspSa, pkt: Uint8Array, espOffset: number): { verdict: string; inner: Uint8Array } {
  const p = place(pkt);
  const esp = p.span.offset + espOffset;
  const v = espUnprotect(sa, p.buf, p.span, (pkt[0]! & 0x0f) * 4, esp, p.span.offset + pkt.length);
  return { verdict: v, inner: taken(p) };
}

function seal(sa: EspSa | AhSa, original: Uint8Array, outerId = 0): { verdict: string; out: Uint8Array } {
  const p = place(original);
  const ids = new IdentificationCounter(outerId);
  const v = sa.protocol === 'esp' ? espProtect(sa, p.buf, p.span, ids) : ahProtect(sa, p.buf, p.span, ids);
  return { verdict: v, out: taken(p) };
}

describe('ESP against the codec vectors of golden_sec.py', () => {
  const cases = sec;
  it('covers every suite in the file', () => {
    expect(new Set(cases.map((c) => c.crypt_algo))).toEqual(new Set(['NULL', 'AES-CBC', 'AES-GCM']));
  });

  for (const c of cases) {
    const pkt = bytes(c.hex);
    const mode = c.fields.nh === 4 ? 'tunnel' : 'transport';
    const sa = { ...c, spi: c.fields.spi };

    it(`${c.name}: verifies and decrypts scapy's packet`, () => {
      const r = open(espSa(sa, 'inbound', mode, pkt), pkt, c.esp_offset);
      expect(r.verdict).toBe('accepted');
      const plaintext = bytes(c.plaintext);
      if (mode === 'tunnel') expect(hex(r.inner)).toBe(c.plaintext);
      else expect(hex(r.inner)).toBe(hex(transportOriginal(pkt, c.esp_offset, c.fields.nh, plaintext)));
    });

    it(`${c.name}: protecting the same datagram gives scapy's bytes`, () => {
      const out = espSa(sa, 'outbound', mode, pkt);
      out.seq = c.fields.seq - 1;
      const original =
        mode === 'tunnel'
          ? bytes(c.plaintext)
          : transportOriginal(pkt, c.esp_offset, c.fields.nh, bytes(c.plaintext));
      const r = seal(out, original, (pkt[4]! << 8) | pkt[5]!);
      expect(r.verdict).toBe('protected');
      expect(hex(r.out)).toBe(c.hex);
      expect(hex(r.out.subarray(r.out.length - c.icv_length))).toBe(c.fields.icv);
    });
  }
});

describe('ESP against golden_ipsec.py (tunnel, ESN, ESP-in-UDP, GCM-256, SHA-512, 1400 bytes)', () => {
  for (const c of ipsec.esp) {
    const pkt = bytes(c.hex);
    const esn = c.esn_high !== null;

    it(`${c.name}: verifies and decrypts scapy's packet`, () => {
      const sa = espSa(c, 'inbound', c.mode, pkt, { esn, encap: c.encap });
      // With ESN, put the window just below the packet so that it infers scapy's high half.
      if (esn) sa.replay!.accept(c.esn_high! * TWO_32 + c.seq - 1);
      const r = open(sa, pkt, c.esp_offset);
      expect(r.verdict).toBe('accepted');
      expect(hex(r.inner)).toBe(c.original);
    });

    it(`${c.name}: protecting the original gives scapy's bytes`, () => {
      const sa = espSa(c, 'outbound', c.mode, pkt, { esn, encap: c.encap });
      sa.seq = (c.esn_high ?? 0) * TWO_32 + c.seq - 1;
      const r = seal(sa, bytes(c.original), c.outer_id);
      expect(r.verdict).toBe('protected');
      expect(hex(r.out)).toBe(c.hex);
    });
  }

  it('with ESN, the wrong high half fails the ICV', () => {
    for (const c of ipsec.esp.filter((x) => x.esn_high !== null)) {
      const pkt = bytes(c.hex);
      const sa = espSa(c, 'inbound', c.mode, pkt, { esn: true });
      // A window one cycle behind infers the high half minus one: the ICV (GCM AAD or HMAC input) then disagrees.
      sa.replay!.accept((c.esn_high! - 1) * TWO_32 + c.seq - 1);
      expect(open(sa, pkt, c.esp_offset).verdict).toBe('auth-failed');
    }
  });
});

function ahSa(
  c: { spi: number; auth_algo: string; auth_key: string },
  direction: 'inbound' | 'outbound',
  mode: 'transport' | 'tunnel',
  pkt: Uint8Array,
  esn = false,
): AhSa {
  const { src, dst } = ipEndpoints(pkt);
  return new AhSa({
    spi: c.spi,
    direction,
    mode,
    tunnel: direction === 'outbound' ? { local: src, remote: dst } : { local: dst, remote: src },
    integrity: GOLDEN_AUTH[c.auth_algo]!,
    integrityKey: bytes(c.auth_key),
    esn,
  });
}

function openAh(sa: AhSa, pkt: Uint8Array): { verdict: string; inner: Uint8Array } {
  const p = place(pkt);
  const v = ahUnprotect(sa, p.buf, p.span, (pkt[0]! & 0x0f) * 4, p.span.offset + pkt.length);
  return { verdict: v, inner: taken(p) };
}

describe('AH against scapy', () => {
  for (const c of secAh) {
    const pkt = bytes(c.hex);
    const mode = c.fields.nh === 4 ? 'tunnel' : 'transport';
    it(`${c.name}: verifies scapy's ICV and strips the header`, () => {
      const r = openAh(ahSa({ ...c, spi: c.fields.spi }, 'inbound', mode, pkt), pkt);
      expect(r.verdict).toBe('accepted');
      const ahLength = (pkt[c.ah_offset + 1]! + 2) * 4;
      if (mode === 'tunnel') {
        expect(hex(r.inner)).toBe(hex(pkt.subarray(c.ah_offset + ahLength)));
      } else {
        expect(hex(r.inner.subarray(c.ah_offset))).toBe(hex(pkt.subarray(c.ah_offset + ahLength)));
        expect(r.inner[9]).toBe(c.fields.nh);
        expect((r.inner[2]! << 8) | r.inner[3]!).toBe(pkt.length - ahLength);
      }
    });
  }

  for (const c of ipsec.ah) {
    const pkt = bytes(c.hex);
    const esn = c.esn_high !== null;
    it(`${c.name}: verifies and strips`, () => {
      const sa = ahSa(c, 'inbound', c.mode, pkt, esn);
      if (esn) sa.replay!.accept(c.esn_high! * TWO_32 + c.seq - 1);
      const r = openAh(sa, pkt);
      expect(r.verdict).toBe('accepted');
      expect(hex(r.inner)).toBe(c.original);
    });

    it(`${c.name}: protecting the original gives scapy's ICV and bytes`, () => {
      const sa = ahSa(c, 'outbound', c.mode, pkt, esn);
      sa.seq = (c.esn_high ?? 0) * TWO_32 + c.seq - 1;
      const r = seal(sa, bytes(c.original), c.outer_id);
      expect(r.verdict).toBe('protected');
      if (c.mode === 'tunnel') {
        // scapy's tunnel header carries TOS 0x28 and TTL 17: mutable fields the ICV does not cover.
        expect(hex(r.out.subarray(20))).toBe(hex(pkt.subarray(20)));
        expect(hex(r.out.subarray(12, 20))).toBe(hex(pkt.subarray(12, 20)));
      } else {
        expect(hex(r.out)).toBe(c.hex);
      }
    });
  }

  it('the codec vectors protect to the same ICV when the SA is outbound', () => {
    for (const c of secAh.filter((x) => x.fields.nh !== 4 && x.name !== 'transport-sha256-options')) {
      const pkt = bytes(c.hex);
      const sa = ahSa({ ...c, spi: c.fields.spi }, 'outbound', 'transport', pkt);
      sa.seq = c.fields.seq - 1;
      const ahLength = (pkt[c.ah_offset + 1]! + 2) * 4;
      const original = new Uint8Array(pkt.length - ahLength);
      original.set(pkt.subarray(0, c.ah_offset));
      original.set(pkt.subarray(c.ah_offset + ahLength), c.ah_offset);
      original[9] = c.fields.nh;
      original[2] = original.length >>> 8;
      original[3] = original.length & 0xff;
      original[10] = 0;
      original[11] = 0;
      const ck = internetChecksum(original, 0, c.ah_offset);
      original[10] = ck >>> 8;
      original[11] = ck & 0xff;
      const r = seal(sa, original);
      expect(r.verdict).toBe('protected');
      expect(hex(r.out)).toBe(c.hex);
    }
  });
});

describe('AH over ESP (FIG. 18 packet 268)', () => {
  const b = ipsec.bundle;
  const pkt = bytes(b.hex);
  const espCase = { ...b.esp, crypt_algo: 'AES-GCM', auth_algo: null, auth_key: '' };

  it('ESP then AH reproduces the bundle byte for byte', () => {
    const esp = espSa(espCase, 'outbound', 'transport', pkt);
    const ah = ahSa({ ...b.ah, auth_algo: 'SHA2-256-128' }, 'outbound', 'transport', pkt);
    const p = place(bytes(b.original));
    const ids = new IdentificationCounter();
    expect(espProtect(esp, p.buf, p.span, ids)).toBe('protected');
    expect(hex(taken(p))).toBe(b.esp_stage);
    expect(ahProtect(ah, p.buf, p.span, ids)).toBe('protected');
    expect(hex(taken(p))).toBe(b.hex);
  });

  it('AH then ESP opens it back to the original', () => {
    const esp = espSa(espCase, 'inbound', 'transport', pkt);
    const ah = ahSa({ ...b.ah, auth_algo: 'SHA2-256-128' }, 'inbound', 'transport', pkt);
    const p = place(pkt);
    expect(ahUnprotect(ah, p.buf, p.span, 20, p.span.offset + pkt.length)).toBe('accepted');
    expect(hex(taken(p))).toBe(b.esp_stage);
    const span: PacketSpan = p.span;
    expect(espUnprotect(esp, p.buf, span, 20, span.offset + 20, span.offset + span.length)).toBe('accepted');
    expect(hex(taken(p))).toBe(b.original);
  });
});
