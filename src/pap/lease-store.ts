import {
  closeSync,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import type { JournalChange, JournalEntry, Snapshot } from './journal.ts';
import { encodeLine, parseJournal, parseSnapshot } from './journal.ts';

/**
 * The two files of lease state and the only operations the store needs on
 * them, each durable when it returns. A file-system implementation for the
 * router and an in-memory one whose bytes tests can cut anywhere.
 */
export interface DurableFiles {
  readSnapshot(): Uint8Array | undefined;
  readJournal(): Uint8Array;
  appendJournal(bytes: Uint8Array): void;
  truncateJournal(length: number): void;
  /** Replaces the snapshot atomically: afterwards either the old or the new one is there, whole. */
  replaceSnapshot(bytes: Uint8Array): void;
  close(): void;
}

/** What recovery found: the snapshot and the journal entries to replay on top of it. */
export interface Recovery {
  readonly snapshot: Snapshot;
  readonly entries: readonly JournalEntry[];
  /** Anything that was dropped, for the log (empty when recovery was clean). */
  readonly notes: readonly string[];
}

/**
 * Numbers, frames and writes lease changes; reads them back after a restart.
 * Callers append one change per acknowledged decision and compact from time
 * to time; the store never interprets the records.
 */
export class LeaseStore {
  readonly #files: DurableFiles;
  #seq = 0;
  #epoch = 0;
  #sinceSnapshot = 0;

  constructor(files: DurableFiles) {
    this.#files = files;
  }

  /** Journal entries written since the last snapshot. */
  get journalLength(): number {
    return this.#sinceSnapshot;
  }

  /**
   * Reads the snapshot and the journal. Undefined when there is no usable
   * snapshot: then there is no state to recover and the caller starts afresh.
   */
  load(): Recovery | { readonly snapshot: undefined; readonly notes: readonly string[] } {
    const notes: string[] = [];
    const snapBytes = this.#files.readSnapshot();
    const journal = parseJournal(this.#files.readJournal());
    const snapshot = snapBytes === undefined ? undefined : parseSnapshot(snapBytes);
    if (snapshot === undefined) {
      if (snapBytes !== undefined) notes.push('lease snapshot unreadable: starting without state');
      if (journal.entries.length > 0)
        notes.push(`${journal.entries.length} journal entries without a snapshot ignored`);
      return { snapshot: undefined, notes };
    }
    if (journal.droppedBytes > 0) {
      // Appends must follow the last whole record, not the torn one.
      this.#files.truncateJournal(journal.validBytes);
      notes.push(
        journal.damaged
          ? `lease journal damaged: ${journal.droppedBytes} bytes after offset ${journal.validBytes} ignored`
          : `torn last journal record (${journal.droppedBytes} bytes) ignored`,
      );
    }
    const entries: JournalEntry[] = [];
    let expect = snapshot.seq + 1;
    for (const e of journal.entries) {
      if (e.seq < expect) continue; // already in the snapshot
      if (e.seq !== expect || e.epoch !== snapshot.epoch) {
        notes.push(`lease journal out of sequence at entry ${e.seq} (expected ${expect}): rest ignored`);
        break;
      }
      entries.push(e);
      expect++;
    }
    this.#seq = expect - 1;
    this.#epoch = snapshot.epoch;
    this.#sinceSnapshot = entries.length;
    return { snapshot, entries, notes };
  }

  /** Starts with no state: empties the journal before the new snapshot names a new sequence. */
  reset(snapshot: Omit<Snapshot, 'seq'>): void {
    this.#files.truncateJournal(0);
    this.#seq = 0;
    this.writeSnapshot(snapshot);
  }

  /** Writes one change durably and returns it as stored. Throws (and stores nothing) if the write fails. */
  append(change: JournalChange): JournalEntry {
    if (this.#epoch === 0) throw new Error('lease store used before load() or reset()');
    const entry = { ...change, seq: this.#seq + 1, epoch: this.#epoch } as JournalEntry;
    this.#files.appendJournal(Buffer.from(encodeLine(entry), 'utf8'));
    this.#seq++;
    this.#sinceSnapshot++;
    return entry;
  }

  /** Replaces the snapshot with the current state and empties the journal it subsumes. */
  writeSnapshot(snapshot: Omit<Snapshot, 'seq'>): void {
    const full: Snapshot = { ...snapshot, seq: this.#seq };
    this.#files.replaceSnapshot(Buffer.from(encodeLine(full), 'utf8'));
    this.#epoch = snapshot.epoch;
    // A crash before this truncation leaves entries the snapshot already
    // holds; load() skips them by sequence number.
    this.#files.truncateJournal(0);
    this.#sinceSnapshot = 0;
  }

  close(): void {
    this.#files.close();
  }
}

/** Lease state in memory, for tests: the bytes are exactly what a file would hold. */
export class MemoryFiles implements DurableFiles {
  snapshot: Uint8Array | undefined;
  journal: Uint8Array = new Uint8Array(0);

  /** The durable bytes as a crash would leave them, for a restarted table. */
  static copyOf(other: MemoryFiles, journalLength = other.journal.length): MemoryFiles {
    const copy = new MemoryFiles();
    copy.snapshot = other.snapshot?.slice();
    copy.journal = other.journal.slice(0, journalLength);
    return copy;
  }

  readSnapshot(): Uint8Array | undefined {
    return this.snapshot?.slice();
  }

  readJournal(): Uint8Array {
    return this.journal.slice();
  }

  appendJournal(bytes: Uint8Array): void {
    const next = new Uint8Array(this.journal.length + bytes.length);
    next.set(this.journal);
    next.set(bytes, this.journal.length);
    this.journal = next;
  }

  truncateJournal(length: number): void {
    this.journal = this.journal.slice(0, length);
  }

  replaceSnapshot(bytes: Uint8Array): void {
    this.snapshot = bytes.slice();
  }

  close(): void {}
}

/**
 * Lease state in a directory: `leases.snapshot` and `leases.journal`.
 * Appends are fdatasync'ed before they return; the snapshot is replaced by
 * write-temp, fsync, rename, fsync-directory, so a crash at any point leaves
 * either the old or the new snapshot.
 */
export class FileStateDir implements DurableFiles {
  readonly snapshotPath: string;
  readonly journalPath: string;
  readonly #dir: string;
  #journalFd: number;
  #journalSize: number;

  constructor(dir: string) {
    this.#dir = dir;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.snapshotPath = join(dir, 'leases.snapshot');
    this.journalPath = join(dir, 'leases.journal');
    // O_APPEND: every write lands at the end, also after a truncation.
    this.#journalFd = openSync(this.journalPath, 'a', 0o600);
    this.#journalSize = fstatSync(this.#journalFd).size;
    this.#syncDir();
  }

  readSnapshot(): Uint8Array | undefined {
    try {
      return readFileSync(this.snapshotPath);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  readJournal(): Uint8Array {
    return readFileSync(this.journalPath);
  }

  appendJournal(bytes: Uint8Array): void {
    try {
      writeAll(this.#journalFd, bytes);
      fdatasyncSync(this.#journalFd);
    } catch (e) {
      // Cut off a partial line (disk full mid-write): the next record must
      // not be glued to it, or recovery would stop there and lose it.
      ftruncateSync(this.#journalFd, this.#journalSize);
      throw e;
    }
    this.#journalSize += bytes.length;
  }

  truncateJournal(length: number): void {
    ftruncateSync(this.#journalFd, length);
    fsyncSync(this.#journalFd);
    this.#journalSize = length;
  }

  replaceSnapshot(bytes: Uint8Array): void {
    const tmp = `${this.snapshotPath}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeAll(fd, bytes);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.snapshotPath);
    this.#syncDir();
  }

  close(): void {
    if (this.#journalFd >= 0) closeSync(this.#journalFd);
    this.#journalFd = -1;
  }

  #syncDir(): void {
    const fd = openSync(this.#dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
}
