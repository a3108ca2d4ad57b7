/**
 * ESP packet processing (RFC 4303 3.3 outbound, 3.4 inbound) for one SA, in
 * place, IPv4 only. ESP-in-UDP (RFC 3948) adds a UDP header in front of
 * the ESP header.
 *
 * Transport mode, outbound: the IP header moves into the headroom; the
 * payload stays where it is and is encrypted there; padding, trailer and
 * ICV go into the tailroom.
 *
 *   before        [IP][payload]
 *   after   [IP][UDP][ESP][IV][payload][pad][len][nh][ICV]
 *                 ^ ESP-in-UDP only
 *
 * Tunnel mode, outbound: a new outer header goes in front, the inner
 * datagram (header included) is the payload.
 *
 *   before                       [IP][payload]
 *   after   [IP'][UDP][ESP][IV]  [IP][payload][pad][len][nh][ICV]
 *
 * Inbound undoes this: verify (ICV), decrypt in place, check the trailer,
 * then either move the IP header forward onto the plaintext (transport) or
 * point at the inner datagram (tunnel).
 */
import { put16, put32, u16, u32 } from '../wire/bytes.ts';
import {
  ESP_HEADER_LENGTH,
  ESP_NEXT_HEADER_DUMMY,
  ESP_TRAILER_LENGTH,
  EspField,
  espPadLength,
  EspTrailerView,
  writeEspTrailer,
} from '../wire/esp.ts';
import { checkIpv4, IPV4_MIN_HEADER_LENGTH, Ipv4Field, Ipv4FragmentWord } from '../wire/ipv4.ts';
import { IpProtocol } from '../wire/result.ts';
import { UDP_HEADER_LENGTH, UdpField } from '../wire/udp.ts';
import { REPLAY_DUPLICATE, REPLAY_TOO_OLD } from './replay-window.ts';
import type { EspSa } from './sa.ts';
import {
  ecnDecapsulate,
  finishHeader,
  OUTER_HEADER_LENGTH,
  writeOuterHeader,
  type IdentificationCounter,
} from './tunnel.ts';
import type { IpsecDrop, PacketSpan } from './types.ts';

// The wire's constants as module constants (see wire/bytes.ts).
const ESP_HEADER = ESP_HEADER_LENGTH;
const ESP_TRAILER = ESP_TRAILER_LENGTH;
const UDP_HEADER = UDP_HEADER_LENGTH;
const IP_HEADER = IPV4_MIN_HEADER_LENGTH;
const IP_VERSION_IHL = Ipv4Field.VERSION_IHL;
const IP_TOS = Ipv4Field.TOS;
const IP_TOTAL_LENGTH = Ipv4Field.TOTAL_LENGTH;
const IP_FLAGS_FRAGMENT = Ipv4Field.FLAGS_FRAGMENT;
const IP_PROTOCOL = Ipv4Field.PROTOCOL;
const IP_FRAGMENT = Ipv4FragmentWord.FRAGMENT;
const NEXT_HEADER_DUMMY = ESP_NEXT_HEADER_DUMMY;
const ESP_SPI = EspField.SPI;
const ESP_SEQUENCE = EspField.SEQUENCE;
const UDP_SRC_PORT = UdpField.SRC_PORT;
const UDP_DST_PORT = UdpField.DST_PORT;
const UDP_LENGTH = UdpField.LENGTH;
const UDP_CHECKSUM = UdpField.CHECKSUM;
const IPIP = IpProtocol.IPIP;
const UDP = IpProtocol.UDP;
const ESP = IpProtocol.ESP;

/** Bytes ESP adds to a datagram of `length` bytes (for MTU and MSS sums). */
export function espOverhead(sa: EspSa, length: number): number {
  const t = sa.transform;
  const ipHeader = sa.mode === 'tunnel' ? OUTER_HEADER_LENGTH : 0;
  const dataLength = sa.mode === 'tunnel' ? length : length - IP_HEADER;
  const udp = sa.encap !== null ? UDP_HEADER : 0;
  return (
    ipHeader +
    udp +
    ESP_HEADER +
    t.ivLength +
    espPadLength(dataLength, t.blockSize) +
    ESP_TRAILER +
    t.icvLength
  );
}

/** The most ESP can add to any datagram (largest padding), for MTU sums fixed in advance. */
export function espMaxOverhead(sa: EspSa): number {
  const t = sa.transform;
  const align = t.blockSize % 4 === 0 ? t.blockSize : t.blockSize * 4;
  return (
    (sa.mode === 'tunnel' ? OUTER_HEADER_LENGTH : 0) +
    (sa.encap !== null ? UDP_HEADER : 0) +
    ESP_HEADER +
    t.ivLength +
    (align - 1) +
    ESP_TRAILER +
    t.icvLength
  );
}

/**
 * Protects the IPv4 datagram at span (header checked by the caller) with
 * `sa`, in place; on 'protected' the span holds the new datagram.
 */
export function espProtect(
  sa: EspSa,
  buf: Uint8Array,
  span: PacketSpan,
  ids: IdentificationCounter,
): 'protected' | IpsecDrop {
  const ip = span.offset;
  const total = u16(buf, ip + IP_TOTAL_LENGTH);
  const hl = (buf[ip + IP_VERSION_IHL]! & 0x0f) * 4;
  const tunnel = sa.mode === 'tunnel';
  // RFC 4301 transport mode carries whole datagrams only.
  if (!tunnel && (u16(buf, ip + IP_FLAGS_FRAGMENT) & IP_FRAGMENT) !== 0) return 'fragment';
  if (sa.hardExpired) return 'lifetime-expired';
  const t = sa.transform;
  const udp = sa.encap !== null ? UDP_HEADER : 0;
  const dataStart = tunnel ? ip : ip + hl;
  const dataLength = tunnel ? total : total - hl;
  const end = dataStart + dataLength + espPadLength(dataLength, t.blockSize) + ESP_TRAILER;
  const packetEnd = end + t.icvLength;
  const ivAt = dataStart - t.ivLength;
  const esp = ivAt - ESP_HEADER;
  const newIp = esp - udp - (tunnel ? OUTER_HEADER_LENGTH : hl);
  const newTotal = packetEnd - newIp;
  if (newIp < span.roomStart || packetEnd > span.roomEnd || newTotal > 0xffff) return 'no-room';
  const seq = sa.nextSequence();
  if (seq < 0) return 'seq-exhausted';

  const nextHeader = tunnel ? IPIP : buf[ip + IP_PROTOCOL]!;
  if (tunnel) writeOuterHeader(buf, newIp, ip, sa.tunnel!.local, sa.tunnel!.remote, ids.next());
  else buf.copyWithin(newIp, ip, ip + hl);
  put32(buf, esp + ESP_SPI, sa.spi);
  put32(buf, esp + ESP_SEQUENCE, seq >>> 0);
  t.writeIv(buf, ivAt, seq);
  writeEspTrailer(buf, dataStart, dataLength, nextHeader, t.blockSize);
  t.seal(buf, esp, dataStart, end, sa.seqHigh(seq));
  if (udp !== 0) {
    const u = esp - UDP_HEADER;
    put16(buf, u + UDP_SRC_PORT, sa.encap!.localPort);
    put16(buf, u + UDP_DST_PORT, sa.encap!.remotePort);
    put16(buf, u + UDP_LENGTH, packetEnd - u);
    // RFC 3948 2.1: zero; the ESP ICV protects the contents.
    put16(buf, u + UDP_CHECKSUM, 0);
  }
  finishHeader(buf, newIp, newTotal, udp !== 0 ? UDP : ESP);
  span.offset = newIp;
  span.length = newTotal;
  sa.account(dataLength);
  return 'protected';
}

const trailer = new EspTrailerView();

/**
 * Verifies and decrypts the ESP packet at buf[esp, end) of the datagram at
 * span (IPv4 header at span.offset, checked, `hl` bytes long), whose SPI
 * the caller looked up. On 'accepted' the span holds the datagram inside.
 * Replay checks come before the ICV; the window moves only after it.
 */
export function espUnprotect(
  sa: EspSa,
  buf: Uint8Array,
  span: PacketSpan,
  hl: number,
  esp: number,
  end: number,
): 'accepted' | IpsecDrop {
  const ip = span.offset;
  const t = sa.transform;
  const ivEnd = esp + ESP_HEADER + t.ivLength;
  const icvAt = end - t.icvLength;
  if (!t.payloadLengthOk(icvAt - ivEnd)) return 'malformed';
  if (sa.hardExpired) return 'lifetime-expired';
  const low = u32(buf, esp + ESP_SEQUENCE);
  let seq = low;
  const replay = sa.replay;
  if (replay !== null) {
    seq = replay.check(low);
    if (seq === REPLAY_DUPLICATE) return 'replay';
    if (seq === REPLAY_TOO_OLD) return 'too-old';
  }
  if (!t.open(buf, esp, ivEnd, icvAt, sa.seqHigh(seq))) return 'auth-failed';
  replay?.accept(seq);

  const err = trailer.wrap(buf, ivEnd, end, t.icvLength).check();
  if (err !== null) return err === 'bad-padding' || err === 'bad-length' ? 'bad-padding' : 'malformed';
  const dataLength = trailer.dataLength;
  const nextHeader = trailer.nextHeader;
  sa.account(dataLength);
  if (nextHeader === NEXT_HEADER_DUMMY) return 'dummy';

  if (sa.mode === 'transport') {
    const newIp = ivEnd - hl;
    buf.copyWithin(newIp, ip, ip + hl);
    finishHeader(buf, newIp, hl + dataLength, nextHeader);
    span.offset = newIp;
    span.length = hl + dataLength;
    return 'accepted';
  }
  // Tunnel mode: the payload is an IPv4 datagram (IPv6 inside is not supported).
  if (nextHeader !== IPIP || checkIpv4(buf, ivEnd, dataLength, true) !== null) return 'malformed';
  if (!ecnDecapsulate(buf[ip + IP_TOS]!, buf, ivEnd)) return 'ecn-drop';
  span.offset = ivEnd;
  // TFC padding (RFC 4303 2.7) may follow the inner datagram; its own length says where it ends.
  span.length = u16(buf, ivEnd + IP_TOTAL_LENGTH);
  return 'accepted';
}
