import {
  mkdtempSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
  cpSync,
  appendFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LeaseStore, FileStateDir, MemoryFiles } from '../../../src/pap/lease-store.ts';
import type { LeaseTableOptions } from '../../../src/pap/lease-table.ts';
import { LeaseTable } from '../../../src/pap/lease-table.ts';
import { FakeClock } from '../../../src/util/clock.ts';
import { overlapsIn, stateOf } from './lease-helpers.ts';

const H1 = '10.0.0.1';
const H2 = '10.0.0.3';
const H3 = '10.0.0.4';

const flip = (bytes: Uint8Array, i: number): void => {
  bytes[i] = bytes[i]! ^ 0x20;
};

const open = (clock: FakeClock, files: MemoryFiles | FileStateDir, extra: Partial<LeaseTableOptions> = {}) =>
  new LeaseTable({ clock, store: new LeaseStore(files), ...extra });

/** A restarted router: the same durable bytes, optionally with the journal cut at `journalLength`. */
const restart = (
  clock: FakeClock,
  files: MemoryFiles,
  journalLength?: number,
  extra: Partial<LeaseTableOptions> = {},
) => open(clock, MemoryFiles.copyOf(files, journalLength), extra);

describe('lease recovery', () => {
  it('keeps epoch, leases with their expiry, and quarantine across a restart', () => {
    const clock = new FakeClock();
    const files = new MemoryFiles();
    const t = open(clock, files);
    const a = t.request(H1, 'port');
    t.request(H2, 'spi', { count: 16 });
    const c = t.request(H2, 'port', { preference: 'high' });
    clock.advance(10_000);
    t.renew(H1, 'port', a.lowest, a.count);
    t.release(H2, 'port', c.lowest);
    const before = stateOf(t);

    clock.advance(5_000);
    const r = restart(clock, files);
    expect(r.recovered).toBe(true);
    expect(r.recoveryNotes).toEqual([]);
    expect(stateOf(r)).toEqual(before);
    // Expiry kept: H1's renewed lease ends 300 s after the renewal, not after the restart.
    clock.advance(300_000 - 5_000 - 1);
    expect(r.ownerOf('port', a.lowest)).toBe(H1);
    clock.advance(1);
    expect(r.ownerOf('port', a.lowest)).toBeUndefined();
  });

  it('answers a retransmission after a restart with the answer given before it', () => {
    const clock = new FakeClock();
    const files = new MemoryFiles();
    const t = open(clock, files);
    const first = t.request(H1, 'port', { txid: 42 });
    clock.advance(1_500);
    const r = restart(clock, files);
    expect(r.request(H1, 'port', { txid: 42 })).toEqual(first);
    expect(r.leasesOf(H1)).toHaveLength(1);
    // Also after a compaction wrote the answers into the snapshot.
    r.compact();
    const r2 = restart(clock, files);
    expect(r2.request(H1, 'port', { txid: 42 })).toEqual(first);
    expect(r2.leasesOf(H1)).toHaveLength(1);
  });

  it('lets leases that ran out while the router was down expire from their own expiry', () => {
    const clock = new FakeClock();
    const files = new MemoryFiles();
    const t = open(clock, files, { portRange: { min: 3000, max: 3031 } });
    const start = clock.now();
    t.request(H1, 'port');
    t.close();
    clock.advanceTo(start + 300_000 + 60_000); // down through expiry and half the quarantine
    const r = restart(clock, files, undefined, { portRange: { min: 3000, max: 3031 } });
    expect(r.leases()).toEqual([]);
    expect(r.quarantined()).toEqual([
      { kind: 'port', host: H1, lowest: 3000, count: 32, until: start + 420_000 },
    ]);
    expect(r.request(H2, 'port').status).toBe('pool-exhausted');
    clock.advanceTo(start + 420_000);
    expect(r.request(H2, 'port')).toMatchObject({ status: 'ok', lowest: 3000 });
  });

  it('starts a new epoch when there is nothing to recover', () => {
    const clock = new FakeClock();
    const files = new MemoryFiles();
    const t = open(clock, files, { randomEpoch: () => 11 });
    expect(t.recovered).toBe(false);
    expect(t.epoch).toBe(11);
    t.request(H1, 'port');
    expect(restart(clock, files, undefined, { randomEpoch: () => 12 }).epoch).toBe(11);

    const broken = MemoryFiles.copyOf(files);
    flip(broken.snapshot!, 20);
    const r = open(clock, broken, { randomEpoch: () => 13 });
    expect(r.recovered).toBe(false);
    expect(r.epoch).toBe(13);
    expect(r.leases()).toEqual([]);
    expect(r.recoveryNotes.join('\n')).toMatch(/snapshot unreadable/);
    // The fresh state is durable and does not pick up the old journal.
    expect(restart(clock, broken).epoch).toBe(13);
    expect(restart(clock, broken).leases()).toEqual([]);
  });

  it('survives a crash between writing the snapshot and emptying the journal', () => {
    class NoTruncate extends MemoryFiles {
      crash = false;
      override truncateJournal(length: number): void {
        if (!this.crash) super.truncateJournal(length);
      }
    }
    const clock = new FakeClock();
    const files = new NoTruncate();
    const t = open(clock, files);
    const a = t.request(H1, 'port');
    t.request(H2, 'port');
    t.release(H1, 'port', a.lowest);
    t.request(H3, 'spi');
    files.crash = true;
    t.compact(); // snapshot replaced, journal still full
    expect(files.journal.length).toBeGreaterThan(0);
    const r = restart(clock, files);
    expect(r.recoveryNotes).toEqual([]);
    expect(stateOf(r)).toEqual(stateOf(t));
  });

  it('compacts every N changes and recovers the same state from snapshot plus journal', () => {
    const clock = new FakeClock();
    const files = new MemoryFiles();
    const t = open(clock, files, { compactEvery: 5 });
    for (let i = 0; i < 12; i++) t.request(`10.0.1.${i}`, 'port', { count: 4 });
    const lines = new TextDecoder().decode(files.journal).split('\n').filter(Boolean);
    expect(lines).toHaveLength(2);
    expect(stateOf(restart(clock, files))).toEqual(stateOf(t));
  });

  it('stores nothing and leaks nothing when the journal write fails', () => {
    class Full extends MemoryFiles {
      full = false;
      override appendJournal(bytes: Uint8Array): void {
        if (this.full) throw Object.assign(new Error('no space'), { code: 'ENOSPC' });
        super.appendJournal(bytes);
      }
    }
    const clock = new FakeClock();
    const files = new Full();
    const t = open(clock, files);
    const a = t.request(H1, 'port');
    const free = t.free('port');
    files.full = true;
    expect(() => t.request(H2, 'port')).toThrow(/no space/);
    expect(() => t.renew(H1, 'port', a.lowest, a.count)).toThrow(/no space/);
    expect(() => t.release(H1, 'port', a.lowest)).toThrow(/no space/);
    expect(t.free('port')).toBe(free);
    expect(t.leases()).toHaveLength(1);
    expect(t.find('port', a.lowest)!.expiresAt).toBe(a.expiresAt);
    files.full = false;
    expect(t.request(H2, 'port')).toMatchObject({ status: 'ok', lowest: 1056 });
  });
});

describe('torn and damaged journals', () => {
  /**
   * Builds a journal whose last record is `last`, then recovers from every
   * prefix that cuts into that record: each must come back as exactly the
   * state before the record, with no value held twice; the whole record must
   * come back as the state after it.
   */
  function sweep(
    last: (t: LeaseTable, clock: FakeClock) => void,
    setup: (t: LeaseTable, clock: FakeClock) => void,
  ) {
    const clock = new FakeClock();
    const files = new MemoryFiles();
    const t = open(clock, files, { portRange: { min: 4000, max: 4095 } });
    setup(t, clock);
    const cut = files.journal.length;
    const expectBefore = stateOf(restart(clock, files, cut, { portRange: { min: 4000, max: 4095 } }));
    last(t, clock);
    const end = files.journal.length;
    expect(end).toBeGreaterThan(cut);
    const after = stateOf(t);
    for (let len = cut; len <= end; len++) {
      const r = restart(clock, files, len, { portRange: { min: 4000, max: 4095 } });
      const s = stateOf(r);
      expect(overlapsIn(s)).toEqual([]);
      expect(s).toEqual(len === end ? after : expectBefore);
      if (len > cut && len < end) expect(r.recoveryNotes.join()).toMatch(/torn last journal record/);
    }
    return end - cut;
  }

  it('a torn grant is never half-applied', () => {
    const n = sweep(
      (t) => t.request(H2, 'port', { txid: 5 }),
      (t) => {
        t.request(H1, 'port');
        t.request(H1, 'spi');
      },
    );
    expect(n).toBeGreaterThan(100); // the sweep really covered a record's worth of cuts
  });

  it('a torn grant of a block whose old lease ran out never yields two owners', () => {
    sweep(
      (t) => expect(t.request(H2, 'port', { count: 96 }).lowest).toBe(4000),
      (t, clock) => {
        t.request(H1, 'port', { count: 96 });
        clock.advance(300_000 + 120_000);
      },
    );
  });

  it('torn renewals and releases fall back to the state before them', () => {
    sweep(
      (t) => t.renew(H1, 'port', 4000, 32, { txid: 1 }),
      (t, clock) => {
        t.request(H1, 'port');
        clock.advance(100_000);
      },
    );
    sweep(
      (t) => t.release(H1, 'port', 4010),
      (t) => {
        t.request(H1, 'port');
        t.request(H2, 'port');
      },
    );
    sweep(
      (t) => t.withdraw('port', 4032),
      (t) => {
        t.request(H1, 'port');
        t.request(H2, 'port');
      },
    );
  });

  it('stops at a damaged record in the middle and says so', () => {
    const clock = new FakeClock();
    const files = new MemoryFiles();
    const t = open(clock, files);
    t.request(H1, 'port');
    const firstEnd = files.journal.length;
    t.request(H2, 'port');
    t.request(H3, 'port');
    const damaged = MemoryFiles.copyOf(files);
    flip(damaged.journal, firstEnd + 30);
    const r = open(clock, damaged);
    expect(r.leases().map((l) => l.host)).toEqual([H1]);
    expect(r.recoveryNotes.join()).toMatch(/journal damaged/);
  });

  it('ignores a zero-filled tail', () => {
    const clock = new FakeClock();
    const files = new MemoryFiles();
    const t = open(clock, files);
    t.request(H1, 'port');
    const z = MemoryFiles.copyOf(files);
    z.appendJournal(new Uint8Array(4096));
    const r = open(clock, z);
    expect(stateOf(r)).toEqual(stateOf(t));
  });
});

describe('FileStateDir', () => {
  const dirs: string[] = [];
  const tmp = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'distnat-leases-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('recovers from real files cut anywhere in the last record', () => {
    const dir = tmp();
    const clock = new FakeClock();
    const files = new FileStateDir(dir);
    const t = open(clock, files);
    t.request(H1, 'port');
    t.request(H2, 'spi');
    const journal = join(dir, 'leases.journal');
    const cut = readFileSync(journal).length;
    const before = stateOf(t);
    t.request(H3, 'port', { txid: 77 });
    const after = stateOf(t);
    const end = readFileSync(journal).length;
    t.close();

    // Every byte is swept on MemoryFiles above; on disk (an fsync per step)
    // the record's edges and every 7th byte between them.
    const cuts = [
      ...new Set([
        cut,
        cut + 1,
        end - 1,
        end,
        ...Array.from({ length: (end - cut) / 7 }, (_, i) => cut + 7 * i),
      ]),
    ];
    expect(cuts.length).toBeGreaterThan(20);
    for (const len of cuts) {
      const copy = tmp();
      cpSync(dir, copy, { recursive: true });
      truncateSync(join(copy, 'leases.journal'), len);
      const r = open(clock, new FileStateDir(copy));
      expect(stateOf(r)).toEqual(len === end ? after : before);
      // Recovery rewrote the snapshot and emptied the journal: appends start clean.
      expect(readFileSync(join(copy, 'leases.journal')).length).toBe(0);
      const got = r.request('10.0.0.9', 'port');
      r.close();
      const again = open(clock, new FileStateDir(copy));
      expect(again.ownerOf('port', got.lowest)).toBe('10.0.0.9');
      expect(overlapsIn(stateOf(again))).toEqual([]);
      again.close();
      rmSync(copy, { recursive: true });
    }
  });

  it('ignores a temporary snapshot left by a crash mid-compaction', () => {
    const dir = tmp();
    const clock = new FakeClock();
    const t = open(clock, new FileStateDir(dir));
    t.request(H1, 'port');
    t.close();
    writeFileSync(join(dir, 'leases.snapshot.tmp'), 'garbage');
    appendFileSync(join(dir, 'leases.journal'), '0000');
    const r = open(clock, new FileStateDir(dir));
    expect(r.recovered).toBe(true);
    expect(r.ownerOf('port', 1024)).toBe(H1);
    r.close();
  });
});

describe('compaction failures', () => {
  it('do not fail the request whose change is already in the journal', () => {
    class NoRename extends MemoryFiles {
      broken = false;
      override replaceSnapshot(bytes: Uint8Array): void {
        if (this.broken) throw new Error('EIO');
        super.replaceSnapshot(bytes);
      }
    }
    const clock = new FakeClock();
    const files = new NoRename();
    const t = open(clock, files, { compactEvery: 2 });
    files.broken = true;
    t.request(H1, 'port');
    const b = t.request(H2, 'port', { txid: 3 }); // would compact here
    expect(b.status).toBe('ok');
    expect(t.stats()['compact_failures']).toBe(1);
    expect(t.request(H2, 'port', { txid: 3 })).toEqual(b);
    expect(stateOf(restart(clock, files))).toEqual(stateOf(t));
    files.broken = false;
    t.request(H3, 'port');
    expect(files.journal.length).toBe(0);
    expect(stateOf(restart(clock, files))).toEqual(stateOf(t));
  });
});
