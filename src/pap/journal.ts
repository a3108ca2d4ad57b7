import { crc32 } from 'node:zlib';
import { z } from 'zod';

/**
 * On-disk form of the lease table: a snapshot plus an append-only journal of
 * the changes made since. Both are text, one record per line:
 *
 *     <crc32 of the JSON, 8 lower-case hex digits> <space> <JSON> <LF>
 *
 * A record counts only when its line is complete (ends in LF) and its CRC
 * matches, so a crash in the middle of an append leaves a torn last line that
 * is recognised and dropped, and a zero-filled tail (what some file systems
 * show after a crash) is never mistaken for data.
 *
 * Journal records carry a sequence number that continues the snapshot's and
 * the epoch they belong to; replay skips records the snapshot already holds
 * (a crash between writing a snapshot and emptying the journal) and records
 * of another epoch.
 *
 * Expiry is not journaled: a lease that ran out is in quarantine from its
 * expiry time, which the grant or renewal record already holds.
 *
 * A port record of a router with several shared addresses names its address
 * (`address`, dotted quad); a record without one is of the first address,
 * which is what every record written before there could be several means.
 */

const kind = z.enum(['port', 'spi']);
const u32 = z.number().int().min(0).max(0xffffffff);
const ms = z.number().int().min(0);
/** The shared address of a port block; absent: the router's first. */
const address = z.string().min(1).optional();

export const LeaseRecordSchema = z.object({
  kind,
  host: z.string().min(1),
  address,
  lowest: u32,
  count: z.number().int().min(1),
  grantedAt: ms,
  expiresAt: ms,
  leaseSeconds: u32,
});
export type LeaseRecord = z.infer<typeof LeaseRecordSchema>;

export const QuarantineRecordSchema = z.object({
  kind,
  host: z.string(),
  address,
  lowest: u32,
  count: z.number().int().min(1),
  until: ms,
});
export type QuarantineRecord = z.infer<typeof QuarantineRecordSchema>;

export const LeaseAnswerSchema = z.object({
  status: z.enum(['ok', 'quota-exceeded', 'pool-exhausted', 'unknown-lease', 'try-later']),
  kind,
  address,
  lowest: u32,
  count: z.number().int().min(0),
  leaseSeconds: u32,
  expiresAt: ms,
  epoch: u32,
});

/** A remembered answer, so a retransmitted request gets it again. */
export const AnswerRecordSchema = z.object({
  host: z.string().min(1),
  txid: u32,
  fp: z.string(),
  at: ms,
  answer: LeaseAnswerSchema,
});
export type AnswerRecord = z.infer<typeof AnswerRecordSchema>;

/** The request that caused a change, when it carried a transaction id. */
const cause = { txid: u32.optional(), fp: z.string().optional() };
const header = { seq: z.number().int().min(1), epoch: u32, at: ms };

export const JournalEntrySchema = z.discriminatedUnion('op', [
  z.object({
    ...header,
    op: z.literal('grant'),
    lease: LeaseRecordSchema,
    /** The holder reclaimed a block of an earlier router life during the hold-off. */
    reclaim: z.literal(true).optional(),
    ...cause,
  }),
  z.object({
    ...header,
    op: z.literal('renew'),
    kind,
    host: z.string().min(1),
    address,
    lowest: u32,
    count: z.number().int().min(1),
    expiresAt: ms,
    leaseSeconds: u32,
    ...cause,
  }),
  z.object({
    ...header,
    op: z.literal('end'),
    reason: z.enum(['released', 'withdrawn']),
    quarantine: QuarantineRecordSchema,
    ...cause,
  }),
]);
export type JournalEntry = z.infer<typeof JournalEntrySchema>;
/** A journal entry before the store numbers it. */
export type JournalChange = DistributiveOmit<JournalEntry, 'seq' | 'epoch'>;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export const SnapshotSchema = z.object({
  format: z.literal('distnat-leases'),
  version: z.literal(1),
  epoch: u32.min(1),
  /** Sequence number of the last journal entry this snapshot includes. */
  seq: z.number().int().min(0),
  savedAt: ms,
  /**
   * While a hold-off after lost state lasts: when it ends. Kept so that a
   * restart during the hold-off (now with state) does not cut it short.
   */
  holdOffUntil: ms.optional(),
  leases: z.array(LeaseRecordSchema),
  quarantine: z.array(QuarantineRecordSchema),
  answers: z.array(AnswerRecordSchema),
});
export type Snapshot = z.infer<typeof SnapshotSchema>;

/** One CRC-framed line, LF included. */
export function encodeLine(value: unknown): string {
  const json = JSON.stringify(value);
  return `${crc32(json).toString(16).padStart(8, '0')} ${json}\n`;
}

/** The JSON value of one line (without its LF), or undefined if the frame or CRC is wrong. */
export function decodeLine(line: string): unknown {
  if (line.length < 10 || line[8] !== ' ') return undefined;
  const json = line.slice(9);
  if (line.slice(0, 8) !== crc32(json).toString(16).padStart(8, '0')) return undefined;
  try {
    return JSON.parse(json) as unknown;
  } catch {
    return undefined;
  }
}

export interface ParsedJournal {
  readonly entries: JournalEntry[];
  /** Byte length of the valid prefix; anything after it is to be cut off. */
  readonly validBytes: number;
  /** Bytes dropped after the valid prefix (a torn or damaged tail). */
  readonly droppedBytes: number;
  /** Whether complete lines were dropped too (damage, not just a torn write). */
  readonly damaged: boolean;
}

/**
 * Reads journal bytes up to the first line that is incomplete or does not
 * verify. Everything after that point is dropped: replaying past a lost
 * record could resurrect a lease its loss made invalid.
 */
export function parseJournal(bytes: Uint8Array): ParsedJournal {
  const entries: JournalEntry[] = [];
  let pos = 0;
  while (pos < bytes.length) {
    const lf = bytes.indexOf(0x0a, pos);
    if (lf < 0) break;
    const value = decodeLine(Buffer.from(bytes.buffer, bytes.byteOffset + pos, lf - pos).toString('utf8'));
    const entry = JournalEntrySchema.safeParse(value);
    if (!entry.success) break;
    entries.push(entry.data);
    pos = lf + 1;
  }
  // A bad line followed by more lines is damage; a bad or unfinished last line
  // is an append the crash interrupted, which was never acknowledged.
  const badEnd = bytes.indexOf(0x0a, pos);
  return {
    entries,
    validBytes: pos,
    droppedBytes: bytes.length - pos,
    damaged: badEnd >= 0 && badEnd + 1 < bytes.length,
  };
}

/** The snapshot in a file's bytes, or undefined if it is not a whole, verified snapshot. */
export function parseSnapshot(bytes: Uint8Array): Snapshot | undefined {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8');
  if (!text.endsWith('\n')) return undefined;
  const parsed = SnapshotSchema.safeParse(decodeLine(text.slice(0, -1)));
  return parsed.success ? parsed.data : undefined;
}
