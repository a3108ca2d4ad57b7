import { existsSync, readFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import type { Block } from '../util/block.ts';
import { writeFileAtomic } from './files.ts';

/**
 * RFC 5280 5.3.1 reason codes the CAs here use. privilegeWithdrawn: the
 * router took the block back (withdrawn or lapsed lease); cessationOfOperation:
 * the host gave it back; superseded and keyCompromise for people at the command line.
 */
export const REVOCATION_REASONS = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  privilegeWithdrawn: 9,
} as const;
export type RevocationReason = keyof typeof REVOCATION_REASONS;

const block = z.object({ lowest: z.number().int().min(0), count: z.number().int().min(1) });

const entrySchema = z.object({
  serial: z.string().regex(/^[0-9a-f]+$/),
  role: z.enum(['host', 'local-ca', 'peer']),
  subject: z.string(),
  /** LAN address of the host the certificate was issued to (host certificates only). */
  host: z.string().optional(),
  /** SubjectKeyIdentifier of the certified key, hex. */
  keyId: z.string(),
  notBefore: z.number().int(),
  notAfter: z.number().int(),
  address: z.string().optional(),
  ports: z.array(block),
  spis: z.array(block),
  pem: z.string(),
  revoked: z
    .object({
      at: z.number().int(),
      reason: z.enum(Object.keys(REVOCATION_REASONS) as [RevocationReason, ...RevocationReason[]]),
    })
    .optional(),
});

const fileSchema = z.object({
  version: z.literal(1),
  /** The number the last CRL carried (RFC 5280 5.2.3: monotonically increasing). */
  crlNumber: z.number().int().min(0),
  certificates: z.array(entrySchema),
});

/** One certificate a CA signed, as the registry remembers it. Times in ms since the epoch. */
export interface IssuedCertificate {
  readonly serial: string;
  readonly role: 'host' | 'local-ca' | 'peer';
  readonly subject: string;
  readonly host?: string;
  readonly keyId: string;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly address?: string;
  readonly ports: readonly Block[];
  readonly spis: readonly Block[];
  readonly pem: string;
  readonly revoked?: { readonly at: number; readonly reason: RevocationReason };
}

export type RevokeOutcome = 'revoked' | 'already-revoked' | 'unknown-serial';

/** Unreadable or inconsistent registry file. */
export class RegistryError extends Error {
  override readonly name = 'RegistryError';
}

/**
 * The list the patent asks the router to keep "of all security certificates
 * issued to its local network devices", one JSON file rewritten atomically
 * after each change. Small: entries leave once they have been expired for
 * the retention time, and a host gets a new certificate only when its lease
 * changes.
 */
export class CertificateRegistry {
  readonly #file: string;
  readonly #entries = new Map<string, IssuedCertificate>();
  #crlNumber = 0;
  /** mtime and size after our last read or write: a change means another process wrote the file. */
  #seen = '';

  private constructor(file: string) {
    this.#file = file;
    this.#load();
  }

  /** Reads the registry, or starts an empty one when the file does not exist yet. */
  static open(file: string): CertificateRegistry {
    return new CertificateRegistry(file);
  }

  #stamp(): string {
    try {
      const st = statSync(this.#file);
      return `${st.mtimeMs}:${st.size}:${st.ino}`;
    } catch {
      return '';
    }
  }

  #load(): void {
    this.#seen = this.#stamp();
    if (!existsSync(this.#file)) return;
    let parsed;
    try {
      parsed = fileSchema.safeParse(JSON.parse(readFileSync(this.#file, 'utf8')));
    } catch (e) {
      throw new RegistryError(`${this.#file}: not JSON: ${(e as Error).message}`);
    }
    if (!parsed.success)
      throw new RegistryError(`${this.#file}: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
    this.#crlNumber = parsed.data.crlNumber;
    this.#entries.clear();
    for (const e of parsed.data.certificates) this.#entries.set(e.serial, e);
  }

  /**
   * Each change starts from what is on disk: `distnat ca revoke` run while
   * the router holds the same registry open is then not undone by the
   * router's next write. (Two writers in the same millisecond can still
   * race; docs/pki.md says to revoke through one process at a time.)
   */
  #refresh(): void {
    if (this.#stamp() !== this.#seen) this.#load();
  }

  get file(): string {
    return this.#file;
  }

  get crlNumber(): number {
    return this.#crlNumber;
  }

  find(serial: string): IssuedCertificate | undefined {
    this.#refresh();
    return this.#entries.get(serial.toLowerCase());
  }

  list(): IssuedCertificate[] {
    this.#refresh();
    return [...this.#entries.values()];
  }

  /** Certificates neither revoked nor expired at `now`. */
  valid(now: number): IssuedCertificate[] {
    return this.list().filter((e) => e.revoked === undefined && e.notAfter > now);
  }

  /** Revoked certificates still within their validity: the CRL's entries (RFC 5280 5.1.2.6 lets expired ones go). */
  revokedUnexpired(now: number): IssuedCertificate[] {
    return this.list().filter((e) => e.revoked !== undefined && e.notAfter > now);
  }

  add(entry: IssuedCertificate): void {
    this.#refresh();
    const serial = entry.serial.toLowerCase();
    if (this.#entries.has(serial)) throw new RegistryError(`serial ${serial} issued twice`);
    this.#entries.set(serial, { ...entry, serial });
    this.save();
  }

  revoke(serial: string, reason: RevocationReason, at: number): RevokeOutcome {
    this.#refresh();
    const e = this.#entries.get(serial.toLowerCase());
    if (e === undefined) return 'unknown-serial';
    if (e.revoked !== undefined) return 'already-revoked';
    this.#entries.set(e.serial, { ...e, revoked: { at, reason } });
    this.save();
    return 'revoked';
  }

  /** Reserves the next CRL number and makes it durable before the CRL that carries it exists. */
  takeCrlNumber(): number {
    this.#refresh();
    this.#crlNumber += 1;
    this.save();
    return this.#crlNumber;
  }

  /** Forgets certificates expired for longer than retentionMs; returns how many. */
  prune(now: number, retentionMs: number): number {
    this.#refresh();
    let n = 0;
    for (const [serial, e] of this.#entries)
      if (e.notAfter + retentionMs < now) {
        this.#entries.delete(serial);
        n++;
      }
    if (n > 0) this.save();
    return n;
  }

  save(): void {
    const body = { version: 1, crlNumber: this.#crlNumber, certificates: this.list() };
    writeFileAtomic(this.#file, JSON.stringify(body, null, 1) + '\n');
    this.#seen = this.#stamp();
  }
}
