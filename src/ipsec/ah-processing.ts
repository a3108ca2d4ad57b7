/**
 * AH packet processing (RFC 4302 3.3 outbound, 3.4 inbound) for one SA, in
 * place, IPv4 only.
 *
 *   transport   before       [IP][payload]
 *               after    [IP][AH][payload]          (IP header moved into the headroom)
 *   tunnel      before           [IP][payload]
 *               after   [IP'][AH][IP][payload]
 *
 * The ICV covers the whole datagram with the fields that change in transit
 * zeroed (`ahIcvInput` from the wire module builds that image in the HMAC
 * scratch area, right after the key pad), then the ESN high half if used.
 */
import { put16, put32, u16, u32 } from '../wire/bytes.ts';
import { AH_FIXED_LENGTH, AhField, ahIcvInput } from '../wire/ah.ts';
import { checkIpv4, Ipv4Field, Ipv4FragmentWord } from '../wire/ipv4.ts';
import { IpProtocol } from '../wire/result.ts';
import { HMAC_SCRATCH, icvEqual } from './hmac.ts';
import { REPLAY_DUPLICATE, REPLAY_TOO_OLD } from './replay-window.ts';
import type { AhSa } from './sa.ts';
import {
  ecnDecapsulate,
  finishHeader,
  OUTER_HEADER_LENGTH,
  writeOuterHeader,
  type IdentificationCounter,
} from './tunnel.ts';
import type { IpsecDrop, PacketSpan } from './types.ts';

// The wire's constants as module constants (see wire/bytes.ts).
const AH_NEXT_HEADER = AhField.NEXT_HEADER;
const AH_PAYLOAD_LEN = AhField.PAYLOAD_LEN;
const AH_RESERVED = AhField.RESERVED;
const AH_SPI = AhField.SPI;
const AH_SEQUENCE = AhField.SEQUENCE;
const AH_ICV = AhField.ICV;
const AH_FIXED = AH_FIXED_LENGTH;
const IP_VERSION_IHL = Ipv4Field.VERSION_IHL;
const IP_TOS = Ipv4Field.TOS;
const IP_TOTAL_LENGTH = Ipv4Field.TOTAL_LENGTH;
const IP_FLAGS_FRAGMENT = Ipv4Field.FLAGS_FRAGMENT;
const IP_PROTOCOL = Ipv4Field.PROTOCOL;
const IP_FRAGMENT = Ipv4FragmentWord.FRAGMENT;
const IPIP = IpProtocol.IPIP;
const AH = IpProtocol.AH;

const icv = new Uint8Array(64);

/** Bytes AH adds to a datagram. */
export function ahOverhead(sa: AhSa): number {
  return sa.headerLength + (sa.mode === 'tunnel' ? OUTER_HEADER_LENGTH : 0);
}

/** Computes the ICV of the datagram at buf[ip, ip + total) into out[at]; false when the datagram cannot be covered. */
function computeIcv(
  sa: AhSa,
  buf: Uint8Array,
  ip: number,
  total: number,
  seq: number,
  out: Uint8Array,
  at: number,
): 'ok' | 'fragment' | 'malformed' {
  const block = sa.hmac.blockSize;
  const r = ahIcvInput(buf, ip, total, HMAC_SCRATCH, block);
  if (!r.ok) return r.reason === 'fragmented' ? 'fragment' : 'malformed';
  let n = block + r.value;
  const high = sa.seqHigh(seq);
  if (high >= 0) {
    // RFC 4302 3.3.3.2.2: the ESN high half follows the packet in the ICV input.
    put32(HMAC_SCRATCH, n, high);
    n += 4;
  }
  sa.hmac.macScratch(n, out, at);
  return 'ok';
}

/** Protects the IPv4 datagram at span with `sa`, in place. */
export function ahProtect(
  sa: AhSa,
  buf: Uint8Array,
  span: PacketSpan,
  ids: IdentificationCounter,
): 'protected' | IpsecDrop {
  const ip = span.offset;
  const total = u16(buf, ip + IP_TOTAL_LENGTH);
  const hl = (buf[ip + IP_VERSION_IHL]! & 0x0f) * 4;
  const tunnel = sa.mode === 'tunnel';
  if (!tunnel && (u16(buf, ip + IP_FLAGS_FRAGMENT) & IP_FRAGMENT) !== 0) return 'fragment';
  if (sa.hardExpired) return 'lifetime-expired';
  const ahLength = sa.headerLength;
  const dataStart = tunnel ? ip : ip + hl;
  const ah = dataStart - ahLength;
  const newIp = ah - (tunnel ? OUTER_HEADER_LENGTH : hl);
  const newTotal = ip + total - newIp;
  if (newIp < span.roomStart || ip + total > span.roomEnd || newTotal > 0xffff) return 'no-room';
  const seq = sa.nextSequence();
  if (seq < 0) return 'seq-exhausted';

  const nextHeader = tunnel ? IPIP : buf[ip + IP_PROTOCOL]!;
  if (tunnel) writeOuterHeader(buf, newIp, ip, sa.tunnel!.local, sa.tunnel!.remote, ids.next());
  else buf.copyWithin(newIp, ip, ip + hl);
  buf[ah + AH_NEXT_HEADER] = nextHeader;
  buf[ah + AH_PAYLOAD_LEN] = ahLength / 4 - 2;
  put16(buf, ah + AH_RESERVED, 0);
  put32(buf, ah + AH_SPI, sa.spi);
  put32(buf, ah + AH_SEQUENCE, seq >>> 0);
  buf.fill(0, ah + AH_ICV, ah + ahLength);
  finishHeader(buf, newIp, newTotal, AH);
  const r = computeIcv(sa, buf, newIp, newTotal, seq, buf, ah + AH_ICV);
  if (r !== 'ok') return r;
  span.offset = newIp;
  span.length = newTotal;
  sa.account(tunnel ? total : total - hl);
  return 'protected';
}

/**
 * Verifies the AH header at buf[ip + hl] of the datagram at span (checked
 * IPv4 header, `end` = ip + total length), whose SPI the caller looked up,
 * and strips it. On 'accepted' the span holds the datagram without AH.
 */
export function ahUnprotect(
  sa: AhSa,
  buf: Uint8Array,
  span: PacketSpan,
  hl: number,
  end: number,
): 'accepted' | IpsecDrop {
  const ip = span.offset;
  const ah = ip + hl;
  const ahLength = sa.headerLength;
  // Payload Len must describe this SA's ICV (RFC 4302 3.4.2 leaves no other length).
  if (ah + AH_FIXED > end || (buf[ah + AH_PAYLOAD_LEN]! + 2) * 4 !== ahLength || ah + ahLength > end)
    return 'malformed';
  if (sa.hardExpired) return 'lifetime-expired';
  const low = u32(buf, ah + AH_SEQUENCE);
  let seq = low;
  const replay = sa.replay;
  if (replay !== null) {
    seq = replay.check(low);
    if (seq === REPLAY_DUPLICATE) return 'replay';
    if (seq === REPLAY_TOO_OLD) return 'too-old';
  }
  const r = computeIcv(sa, buf, ip, end - ip, seq, icv, 0);
  if (r !== 'ok') return r;
  if (!icvEqual(icv, 0, buf, ah + AH_ICV, sa.hmac.icvLength)) return 'auth-failed';
  replay?.accept(seq);

  const nextHeader = buf[ah + AH_NEXT_HEADER]!;
  const data = ah + ahLength;
  sa.account(end - data);
  if (sa.mode === 'transport') {
    const newIp = data - hl;
    buf.copyWithin(newIp, ip, ip + hl);
    finishHeader(buf, newIp, end - newIp, nextHeader);
    span.offset = newIp;
    span.length = end - newIp;
    return 'accepted';
  }
  if (nextHeader !== IPIP || checkIpv4(buf, data, end - data, true) !== null) return 'malformed';
  if (!ecnDecapsulate(buf[ip + IP_TOS]!, buf, data)) return 'ecn-drop';
  span.offset = data;
  span.length = u16(buf, data + IP_TOTAL_LENGTH);
  return 'accepted';
}
