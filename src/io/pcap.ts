/**
 * Classic libpcap capture files of the packets a process sends and receives,
 * readable by tshark/Wireshark/tcpdump.
 *
 * File header (24 bytes), then a 16-byte record header before each packet;
 * all fields in the writer's byte order (the magic tells readers which):
 *
 * | offset | field          | value                                        |
 * |--------|----------------|----------------------------------------------|
 * | 0      | magic          | 0xa1b2c3d4 (microsecond timestamps)          |
 * | 4      | version        | 2, 4                                         |
 * | 8      | thiszone       | 0 (timestamps are UTC)                       |
 * | 12     | sigfigs        | 0                                            |
 * | 16     | snaplen        | longest stored packet                        |
 * | 20     | network        | LINKTYPE_RAW (101) or LINKTYPE_IPV4 (228)    |
 *
 * | offset | record field   |                                              |
 * |--------|----------------|----------------------------------------------|
 * | 0      | ts_sec         | seconds since the epoch                      |
 * | 4      | ts_usec        | microseconds                                 |
 * | 8      | incl_len       | bytes stored (<= snaplen)                    |
 * | 12     | orig_len       | bytes on the wire                            |
 *
 * Records are gathered in one buffer and written when it fills (one
 * synchronous write per ~1 MiB) and on flush()/close(); a batch shares one
 * timestamp, taken once per call.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import type { SlotBuffer } from './slots.ts';

export const LinkType = { Raw: 101, Ipv4: 228 } as const;
export type LinkType = (typeof LinkType)[keyof typeof LinkType];

const MAGIC_MICROS = 0xa1b2c3d4;
const FILE_HEADER = 24;
const RECORD_HEADER = 16;

export interface PcapOptions {
  linkType?: LinkType;
  /** Longest stored packet; longer ones are cut (orig_len keeps the real length). Default 65535. */
  snapLength?: number;
  /** Bytes gathered before a write; default 1 MiB. */
  bufferSize?: number;
  /** Wall clock in milliseconds since the epoch; default performance.timeOrigin + performance.now(). */
  now?: () => number;
}

export class PcapWriter {
  readonly linkType: LinkType;
  readonly snapLength: number;
  /** Records written (or buffered). */
  packets = 0;
  private readonly buf: Uint8Array;
  private readonly view: DataView;
  private used = 0;
  private readonly now: () => number;
  private fd: number | undefined;

  /** Creates (truncates) `path` and writes the file header. */
  static open(path: string, options: PcapOptions = {}): PcapWriter {
    return new PcapWriter(openSync(path, 'w'), options);
  }

  constructor(fd: number, options: PcapOptions = {}) {
    this.fd = fd;
    this.linkType = options.linkType ?? LinkType.Raw;
    this.snapLength = options.snapLength ?? 65535;
    const size = Math.max(options.bufferSize ?? 1 << 20, this.snapLength + RECORD_HEADER + FILE_HEADER);
    this.buf = new Uint8Array(size);
    this.view = new DataView(this.buf.buffer);
    this.now = options.now ?? (() => performance.timeOrigin + performance.now());
    const v = this.view;
    v.setUint32(0, MAGIC_MICROS, true);
    v.setUint16(4, 2, true);
    v.setUint16(6, 4, true);
    v.setInt32(8, 0, true);
    v.setUint32(12, 0, true);
    v.setUint32(16, this.snapLength, true);
    v.setUint32(20, this.linkType, true);
    this.used = FILE_HEADER;
  }

  /** Adds one packet. */
  write(bytes: Uint8Array, offset = 0, length = bytes.length - offset, timeMs = this.now()): void {
    this.record(bytes, offset, length, Math.floor(timeMs / 1000), Math.floor((timeMs % 1000) * 1000));
  }

  /** Adds the packets of a sendBatch-style span list, with one timestamp. */
  writeBatch(bytes: Uint8Array, pairs: Int32Array, count: number): void {
    const t = this.now();
    const sec = Math.floor(t / 1000);
    const usec = Math.floor((t % 1000) * 1000);
    for (let i = 0; i < count; i++) {
      const off = pairs[2 * i]!;
      const len = pairs[2 * i + 1]!;
      if (len > 0 && off >= 0 && off + len <= bytes.length) this.record(bytes, off, len, sec, usec);
    }
  }

  /** Adds slots 0..count-1 of a received batch, with one timestamp. */
  writeSlots(slots: SlotBuffer, count: number): void {
    const t = this.now();
    const sec = Math.floor(t / 1000);
    const usec = Math.floor((t % 1000) * 1000);
    for (let i = 0; i < count; i++) this.record(slots.bytes, slots.offset(i), slots.lengths[i]!, sec, usec);
  }

  private record(bytes: Uint8Array, offset: number, length: number, sec: number, usec: number): void {
    if (this.fd === undefined) return;
    const stored = Math.min(length, this.snapLength);
    if (this.used + RECORD_HEADER + stored > this.buf.length) this.flush();
    const v = this.view;
    const at = this.used;
    v.setUint32(at, sec, true);
    v.setUint32(at + 4, usec, true);
    v.setUint32(at + 8, stored, true);
    v.setUint32(at + 12, length, true);
    this.buf.set(bytes.subarray(offset, offset + stored), at + RECORD_HEADER);
    this.used = at + RECORD_HEADER + stored;
    this.packets++;
  }

  /** Writes out what is buffered. */
  flush(): void {
    if (this.fd === undefined || this.used === 0) return;
    let done = 0;
    while (done < this.used) done += writeSync(this.fd, this.buf, done, this.used - done);
    this.used = 0;
  }

  close(): void {
    if (this.fd === undefined) return;
    this.flush();
    closeSync(this.fd);
    this.fd = undefined;
  }
}

export interface PcapRecord {
  timeMs: number;
  originalLength: number;
  data: Uint8Array;
}

export interface PcapFile {
  linkType: number;
  snapLength: number;
  records: PcapRecord[];
}

/**
 * Reads a classic pcap file (either byte order, micro- or nanosecond magic).
 * For tests and tools; returns undefined for anything malformed.
 */
export function parsePcap(data: Uint8Array): PcapFile | undefined {
  if (data.length < FILE_HEADER) return undefined;
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const magicLe = v.getUint32(0, true);
  const magicBe = v.getUint32(0, false);
  const nanoMagic = 0xa1b23c4d;
  const le = magicLe === MAGIC_MICROS || magicLe === nanoMagic;
  if (!le && magicBe !== MAGIC_MICROS && magicBe !== nanoMagic) return undefined;
  const nanos = (le ? magicLe : magicBe) === nanoMagic;
  const snapLength = v.getUint32(16, le);
  const linkType = v.getUint32(20, le);
  const records: PcapRecord[] = [];
  let at = FILE_HEADER;
  while (at < data.length) {
    if (at + RECORD_HEADER > data.length) return undefined;
    const sec = v.getUint32(at, le);
    const frac = v.getUint32(at + 4, le);
    const stored = v.getUint32(at + 8, le);
    const originalLength = v.getUint32(at + 12, le);
    if (at + RECORD_HEADER + stored > data.length) return undefined;
    // A copy, and a plain Uint8Array even when given a Buffer (whose slice() is a view).
    const copy = new Uint8Array(stored);
    copy.set(data.subarray(at + RECORD_HEADER, at + RECORD_HEADER + stored));
    records.push({ timeMs: sec * 1000 + (nanos ? frac / 1e6 : frac / 1000), originalLength, data: copy });
    at += RECORD_HEADER + stored;
  }
  return { linkType, snapLength, records };
}
