/**
 * What the `distnat ca` subcommands share: errors turned into one line and a
 * sysexits code, input files read with a usable message, block ranges parsed,
 * and output written a line at a time.
 */
import { readFileSync } from 'node:fs';
import {
  CaError,
  CertificateAuthority,
  CertificateRequestError,
  KeyPolicyError,
  REVOCATION_REASONS,
  RegistryError,
  type RevocationReason,
} from '../../pki/index.ts';
import { ExitCode, UserError } from '../../util/exit-codes.ts';

export const REASONS = Object.keys(REVOCATION_REASONS) as RevocationReason[];

/** CaError and friends become one line for the person at the terminal, with a sysexits code. */
export async function guard<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (e) {
    if (e instanceof UserError) throw e;
    if (e instanceof CaError) {
      const code = {
        exists: ExitCode.CANTCREATE,
        missing: ExitCode.USAGE,
        invalid: ExitCode.CONFIG,
        refused: ExitCode.FAILURE,
      }[e.kind];
      throw new UserError(e.message, code);
    }
    if (e instanceof RegistryError) throw new UserError(e.message, ExitCode.CONFIG);
    if (e instanceof KeyPolicyError) throw new UserError(e.message, ExitCode.FAILURE);
    if (e instanceof CertificateRequestError)
      throw new UserError(e.message, e.status === 0 ? ExitCode.UNAVAILABLE : ExitCode.FAILURE);
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') throw new UserError((e as Error).message, ExitCode.NOPERM);
    if (code === 'EEXIST' || code === 'ENOTDIR' || code === 'EROFS' || code === 'ENOSPC')
      throw new UserError((e as Error).message, ExitCode.CANTCREATE);
    throw e;
  }
}

export function readInput(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new UserError(`cannot read ${what} ${path}: ${(e as Error).message}`, ExitCode.USAGE);
  }
}

/** "1026-1057,2048-2079" or "1026+32" into blocks. */
export function parseRanges(text: string, what: string): { lowest: number; count: number }[] {
  return text
    .split(',')
    .filter((p) => p.trim() !== '')
    .map((part) => {
      const m = /^\s*(\d+)\s*(?:([-+])\s*(\d+))?\s*$/.exec(part);
      if (m === null)
        throw new UserError(`${what}: "${part}" is not a range like 1026-1057 or 1026+32`, ExitCode.USAGE);
      const lowest = Number(m[1]);
      const count = m[2] === undefined ? 1 : m[2] === '+' ? Number(m[3]) : Number(m[3]) - lowest + 1;
      if (count < 1) throw new UserError(`${what}: "${part}" is empty`, ExitCode.USAGE);
      return { lowest, count };
    })
    .sort((a, b) => a.lowest - b.lowest);
}

export const out = (text: string): void => {
  process.stdout.write(text.endsWith('\n') ? text : text + '\n');
};

/** A CRL's lifetime when none is given: a week for the root, ten minutes for a local CA. */
export const defaultLifetime = (ca: CertificateAuthority): number =>
  ca.settings.role === 'root' ? 7 * 86_400 : 600;
