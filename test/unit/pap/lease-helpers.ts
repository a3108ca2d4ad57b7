import type { QuarantineRecord } from '../../../src/pap/journal.ts';
import type { LeaseTable } from '../../../src/pap/lease-table.ts';

export interface TableState {
  epoch: number;
  leases: Array<{
    kind: string;
    host: string;
    lowest: number;
    count: number;
    expiresAt: number;
    leaseSeconds: number;
  }>;
  quarantine: QuarantineRecord[];
}

/** Everything about a table that must survive a restart. */
export function stateOf(t: LeaseTable): TableState {
  return {
    epoch: t.epoch,
    leases: t.leases().map(({ kind, host, lowest, count, expiresAt, leaseSeconds }) => ({
      kind,
      host,
      lowest,
      count,
      expiresAt,
      leaseSeconds,
    })),
    quarantine: t.quarantined(),
  };
}

/** Pairs of blocks (leased or quarantined) of one kind that share a value: must always be empty. */
export function overlapsIn(s: TableState): string[] {
  const blocks = [
    ...s.leases.map((l) => ({ ...l, what: `lease of ${l.host}` })),
    ...s.quarantine.map((q) => ({ ...q, what: `quarantine of ${q.host}` })),
  ].sort((a, b) => (a.kind === b.kind ? a.lowest - b.lowest : a.kind < b.kind ? -1 : 1));
  const out: string[] = [];
  for (let i = 1; i < blocks.length; i++) {
    const a = blocks[i - 1]!;
    const b = blocks[i]!;
    if (a.kind === b.kind && a.lowest + a.count > b.lowest) {
      out.push(`${a.kind} ${a.lowest}+${a.count} (${a.what}) overlaps ${b.lowest}+${b.count} (${b.what})`);
    }
  }
  return out;
}
