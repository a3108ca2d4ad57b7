import type {
  AnswerRecord,
  JournalChange,
  JournalEntry,
  LeaseRecord,
  QuarantineRecord,
  Snapshot,
} from './journal.ts';
import type { LeaseAnswer } from './lease.ts';

/**
 * Rebuilds lease state from a snapshot and the journal entries after it.
 * Pure: no clock, no pools. The caller then lets time catch up (leases that
 * ran out while the router was down go to quarantine from their expiry).
 */

export interface ReplayedState {
  readonly leases: LeaseRecord[];
  readonly quarantine: QuarantineRecord[];
  readonly answers: AnswerRecord[];
  /** Entries that did not fit the state before them; empty for a journal this code wrote. */
  readonly notes: string[];
}

// A record without an address is of the first shared address (journal.ts).
const key = (kind: string, lowest: number, address: string | undefined): string =>
  `${kind}:${address ?? ''}:${lowest}`;

interface Placed {
  readonly kind: string;
  readonly address?: string | undefined;
  readonly lowest: number;
  readonly count: number;
}

const overlaps = (a: Placed, b: Placed): boolean =>
  a.kind === b.kind &&
  a.address === b.address &&
  a.lowest < b.lowest + b.count &&
  b.lowest < a.lowest + a.count;

const withAddress = (address: string | undefined): { address?: string } =>
  address === undefined ? {} : { address };

/** The answer a successful change gave; the same function serves live answers and replayed ones. */
export function answerOfEntry(entry: JournalChange, epoch: number): LeaseAnswer {
  switch (entry.op) {
    case 'grant':
      return {
        status: 'ok',
        kind: entry.lease.kind,
        ...withAddress(entry.lease.address),
        lowest: entry.lease.lowest,
        count: entry.lease.count,
        leaseSeconds: entry.lease.leaseSeconds,
        expiresAt: entry.lease.expiresAt,
        epoch,
      };
    case 'renew':
      return {
        status: 'ok',
        kind: entry.kind,
        ...withAddress(entry.address),
        lowest: entry.lowest,
        count: entry.count,
        leaseSeconds: entry.leaseSeconds,
        expiresAt: entry.expiresAt,
        epoch,
      };
    case 'end':
      return {
        status: 'ok',
        kind: entry.quarantine.kind,
        ...withAddress(entry.quarantine.address),
        lowest: entry.quarantine.lowest,
        count: entry.quarantine.count,
        leaseSeconds: 0,
        expiresAt: 0,
        epoch,
      };
  }
}

export function replay(
  snapshot: Snapshot,
  entries: readonly JournalEntry[],
  quarantineMs: number,
): ReplayedState {
  const leases = new Map<string, LeaseRecord>();
  for (const l of snapshot.leases) leases.set(key(l.kind, l.lowest, l.address), { ...l });
  let quarantine = snapshot.quarantine.map((q) => ({ ...q }));
  const answers = snapshot.answers.map((a) => ({ ...a }));
  const notes: string[] = [];

  for (const e of entries) {
    switch (e.op) {
      case 'grant': {
        // The writer granted only free values, so whatever overlaps must have
        // run out (and finished its quarantine) before this entry. Anything
        // else is noted; the newest acknowledged grant wins either way.
        for (const [k, l] of leases) {
          if (!overlaps(l, e.lease)) continue;
          if (l.expiresAt + quarantineMs > e.at)
            notes.push(`entry ${e.seq}: grant overlaps live lease of ${l.host}`);
          leases.delete(k);
        }
        quarantine = quarantine.filter((q) => {
          if (!overlaps(q, e.lease)) return true;
          if (q.until > e.at) notes.push(`entry ${e.seq}: grant overlaps quarantined block`);
          return false;
        });
        leases.set(key(e.lease.kind, e.lease.lowest, e.lease.address), { ...e.lease });
        break;
      }
      case 'renew': {
        const l = leases.get(key(e.kind, e.lowest, e.address));
        if (l === undefined || l.host !== e.host || l.count !== e.count) {
          notes.push(`entry ${e.seq}: renewal of a lease not held`);
          continue;
        }
        l.expiresAt = e.expiresAt;
        l.leaseSeconds = e.leaseSeconds;
        break;
      }
      case 'end': {
        const q = e.quarantine;
        const l = leases.get(key(q.kind, q.lowest, q.address));
        if (l === undefined || l.host !== q.host || l.count !== q.count) {
          notes.push(`entry ${e.seq}: end of a lease not held`);
          continue;
        }
        leases.delete(key(q.kind, q.lowest, q.address));
        quarantine.push({ ...q });
        break;
      }
    }
    if (e.txid !== undefined && e.fp !== undefined) {
      const host = e.op === 'grant' ? e.lease.host : e.op === 'renew' ? e.host : e.quarantine.host;
      answers.push({ host, txid: e.txid, fp: e.fp, at: e.at, answer: answerOfEntry(e, snapshot.epoch) });
    }
  }
  return { leases: [...leases.values()], quarantine, answers, notes };
}
