import type { Etcd3, IKeyValue, Watcher } from 'etcd3';
import { z } from 'zod';
import type { Clock, Timer } from '../util/clock.ts';
import { REVOCATION_REASONS, type RevocationReason } from './registry.ts';

/**
 * The revocation list every router of one shared address signs its CRL
 * from, kept in etcd (docs/multi-router.md, "One CA, one CRL"):
 *
 *     <prefix><serial, lowercase hex>   {"at":<ms>,"reason":"privilegeWithdrawn","notAfter":<ms>,"by":"<router>"}
 *     <prefix>pruned                    written with every deletion (below)
 *
 * A router writes a key when it revokes a certificate it issued; every
 * router watches the prefix, so a withdrawal on any router reaches every
 * router's CRL. The CRL number is the newest mod_revision under the prefix:
 * etcd's revisions only grow and are the same for every member, so two
 * routers that hold the same keys sign the same number, and a later change
 * gives a larger one. Deleting a key (pruning an expired certificate's
 * entry) happens in one transaction with a put of `pruned`, so a deletion
 * also moves the number, for a router that reads the prefix afresh as well
 * as for one that watched it.
 */

/** One revoked certificate as the CRL lists it. */
export interface RevocationRecord {
  readonly serial: string;
  /** When it was revoked (ms since the Unix epoch): the CRL's revocationDate. */
  readonly at: number;
  readonly reason: RevocationReason;
  /** The certificate's notAfter: the entry leaves the CRL (and etcd) after it. */
  readonly notAfter: number;
}

/** Why a key under the prefix was not taken into the list. */
export type RevocationSkipReason = 'foreign-key' | 'corrupt-value';

const MARK = 'pruned';

const ValueSchema = z
  .object({
    at: z.number().int().min(0),
    reason: z.enum(Object.keys(REVOCATION_REASONS) as [RevocationReason, ...RevocationReason[]]),
    notAfter: z.number().int().min(0),
    by: z.string().optional(),
  })
  .strict();

/** Serials are positive DER integers of at most 20 octets (RFC 5280 4.1.2.2), written in hex. */
const SERIAL = /^[0-9a-f]{1,40}$/;

export interface SharedRevocationListOptions {
  readonly client: Etcd3;
  /** Key prefix of this shared address's revocations, ending in '/'. */
  readonly prefix: string;
  readonly clock: Clock;
  /** Named in the values this router writes, for the operator. */
  readonly routerId?: string;
  /** Told once per key that is skipped. */
  readonly onSkip?: (key: string, reason: RevocationSkipReason) => void;
  /** Told after the list or its number changed (a watch event, a read afresh). */
  readonly onChange?: () => void;
  /** How often a broken watch is retried. Default 1 s. */
  readonly retryMs?: number;
}

export class SharedRevocationList {
  readonly prefix: string;
  readonly #client: Etcd3;
  readonly #clock: Clock;
  readonly #o: SharedRevocationListOptions;
  readonly #records = new Map<string, RevocationRecord>();
  /** Skipped keys and why, so that each is reported once. */
  readonly #skipped = new Map<string, RevocationSkipReason>();
  #number = 0;
  #watcher: Watcher | undefined;
  #timer: Timer | undefined;
  #closed = false;
  /** Told after the list or its number changed; settable after open (the CA that follows it comes later). */
  onChange: (() => void) | undefined;
  readonly counters = {
    skipped: { 'foreign-key': 0, 'corrupt-value': 0 } as Record<RevocationSkipReason, number>,
    /** Revocations this router wrote to etcd. */
    written: 0,
  };

  private constructor(o: SharedRevocationListOptions) {
    this.#o = o;
    this.#client = o.client;
    this.#clock = o.clock;
    this.prefix = o.prefix;
    this.onChange = o.onChange;
  }

  /**
   * Makes sure the prefix has a number (the `pruned` key, written once by the
   * first router), reads it and watches it. Throws when etcd does not answer.
   */
  static async open(o: SharedRevocationListOptions): Promise<SharedRevocationList> {
    const list = new SharedRevocationList(o);
    const mark = Buffer.from(o.prefix + MARK);
    // Without any key the number would be 0, below the number a CRL made before
    // (from the local registry) may have carried; a revision is far above it.
    await o.client.kv.txn({
      compare: [{ key: mark, target: 'Create', result: 'Equal', create_revision: 0 }],
      success: [{ request_put: { key: mark, value: Buffer.from('0') } }],
      failure: [],
    });
    await list.#readAndWatch();
    return list;
  }

  /** The CRL number all routers holding the same list sign. */
  get number(): number {
    return this.#number;
  }

  /** The revocations whose certificates have not expired at `now`: the CRL's entries. */
  entries(now: number): RevocationRecord[] {
    return [...this.#records.values()].filter((r) => r.notAfter > now);
  }

  has(serial: string): boolean {
    return this.#records.has(serial.toLowerCase());
  }

  /**
   * Stores a revocation for every router (kept when the key already exists:
   * the first revocation stands). Resolves once etcd has it, with the list
   * holding it; rejects when etcd does not answer.
   */
  async add(r: RevocationRecord): Promise<void> {
    const serial = r.serial.toLowerCase();
    const key = Buffer.from(this.prefix + serial);
    const value = { at: r.at, reason: r.reason, notAfter: r.notAfter, by: this.#o.routerId };
    const res = await this.#client.kv.txn({
      compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }],
      success: [{ request_put: { key, value: Buffer.from(JSON.stringify(value)) } }],
      failure: [{ request_range: { key } }],
    });
    if (res.succeeded) {
      this.counters.written++;
      this.#put(serial, { ...r, serial }, Number(res.header.revision));
    } else {
      const kv = res.responses[0]?.response_range?.kvs[0];
      if (kv !== undefined) this.#apply(kv);
    }
    this.onChange?.();
  }

  /**
   * Moves the number on without changing the entries, so that a CRL remade
   * because the last one is half-way to nextUpdate carries a larger number
   * than the last (RFC 5280 5.2.3). Rejects when etcd does not answer.
   */
  async bump(): Promise<number> {
    const res = await this.#client
      .put(this.prefix + MARK)
      .value(String(this.#clock.now()))
      .exec();
    this.#number = Math.max(this.#number, Number(res.header.revision));
    return this.#number;
  }

  /** Deletes the entries of certificates expired for longer than `retentionMs`; returns how many. */
  async prune(now: number, retentionMs: number): Promise<number> {
    const gone = [...this.#records.values()].filter((r) => r.notAfter + retentionMs < now);
    if (gone.length === 0) return 0;
    // etcd takes at most 128 operations in one transaction.
    const batch = gone.slice(0, 100);
    const res = await this.#client.kv.txn({
      compare: [],
      success: [
        ...batch.map((r) => ({ request_delete_range: { key: Buffer.from(this.prefix + r.serial) } })),
        { request_put: { key: Buffer.from(this.prefix + MARK), value: Buffer.from(String(now)) } },
      ],
      failure: [],
    });
    for (const r of batch) this.#records.delete(r.serial);
    this.#number = Math.max(this.#number, Number(res.header.revision));
    this.onChange?.();
    return batch.length;
  }

  /** Counters for status and metrics. */
  stats(): Record<string, number> {
    return {
      crl_etcd_entries: this.#records.size,
      crl_etcd_number: this.#number,
      crl_etcd_written: this.counters.written,
      crl_etcd_skipped_foreign_key: this.counters.skipped['foreign-key'],
      crl_etcd_skipped_corrupt_value: this.counters.skipped['corrupt-value'],
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#timer?.cancel();
    const w = this.#watcher;
    this.#watcher = undefined;
    await w?.cancel().catch(() => undefined);
  }

  async #readAndWatch(): Promise<void> {
    const all = await this.#client.kv.range({
      key: Buffer.from(this.prefix),
      range_end: prefixEnd(this.prefix),
    });
    const revision = Number(all.header.revision);
    this.#records.clear();
    for (const kv of all.kvs) this.#apply(kv);
    const w = await this.#client
      .watch()
      .prefix(this.prefix)
      .startRevision(String(revision + 1))
      .create();
    if (this.#closed) {
      await w.cancel().catch(() => undefined);
      return;
    }
    this.#watcher = w;
    w.on('data', (res) => {
      for (const ev of res.events) {
        const key = ev.kv.key.toString();
        this.#number = Math.max(this.#number, Number(ev.kv.mod_revision));
        if (ev.type === 'Delete') {
          this.#records.delete(key.slice(this.prefix.length));
          this.#skipped.delete(key);
        } else this.#apply(ev.kv);
      }
      this.onChange?.();
    });
    w.on('error', () => {
      // etcd's history compacted past the watch, say: read the prefix afresh.
      if (this.#watcher === w) this.#watcher = undefined;
      void w.cancel().catch(() => undefined);
      this.#retry();
    });
  }

  #retry(): void {
    if (this.#closed) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.#readAndWatch().then(
        () => this.onChange?.(),
        () => this.#retry(),
      );
    }, this.#o.retryMs ?? 1000);
  }

  /** A key as etcd holds it (the initial read, the watch, a failed add's read-back). */
  #apply(kv: IKeyValue): void {
    const key = kv.key.toString();
    this.#number = Math.max(this.#number, Number(kv.mod_revision));
    const rest = key.slice(this.prefix.length);
    if (rest === MARK) return;
    if (!key.startsWith(this.prefix) || !SERIAL.test(rest)) return this.#skip(key, 'foreign-key');
    let parsed;
    try {
      parsed = ValueSchema.safeParse(JSON.parse(kv.value.toString('utf8')));
    } catch {
      parsed = undefined;
    }
    if (parsed === undefined || !parsed.success) {
      this.#records.delete(rest);
      return this.#skip(key, 'corrupt-value');
    }
    this.#skipped.delete(key);
    const v = parsed.data;
    this.#put(
      rest,
      { serial: rest, at: v.at, reason: v.reason, notAfter: v.notAfter },
      Number(kv.mod_revision),
    );
  }

  #put(serial: string, r: RevocationRecord, revision: number): void {
    this.#records.set(serial, r);
    this.#number = Math.max(this.#number, revision);
  }

  #skip(key: string, reason: RevocationSkipReason): void {
    if (this.#skipped.get(key) === reason) return;
    this.#skipped.set(key, reason);
    this.counters.skipped[reason]++;
    this.#o.onSkip?.(key, reason);
  }
}

/** The end of the key range of every key starting with prefix (which ends in '/', never 0xff). */
function prefixEnd(prefix: string): Buffer {
  const b = Buffer.from(prefix);
  b[b.length - 1]!++;
  return b;
}
