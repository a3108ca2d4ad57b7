import { z } from 'zod';
import type { ResourceKind } from '../util/block.ts';
import { MAX_BLOCK } from './block.ts';

/**
 * How leases of one shared address are laid out in etcd (docs/multi-router.md):
 *
 *     <prefix>epoch                  the routers' common epoch (decimal)
 *     <prefix>port/<8 hex digits>    one block of ports, keyed by its lowest port
 *     <prefix>spi/<8 hex digits>     one block of SPIs, keyed by its lowest SPI
 *     <prefix>crl/...                the local CA's revocations (src/pki/shared-revocations.ts)
 *
 * A block's value says whether it is leased (to whom, until when) or in
 * quarantine (until when, and why its lease ended). Fixed-width hex keeps
 * etcd's byte order equal to numeric order, so the keys of every block that
 * could overlap [lowest, lowest + count) lie in one key range: a block is at
 * most MAX_BLOCK long, so any overlapping block starts in
 * [lowest - MAX_BLOCK + 1, lowest + count). A grant compares that range.
 */

export const KINDS: readonly ResourceKind[] = ['port', 'spi'];

const ms = z.number().int().min(0);

const LeasedSchema = z
  .object({
    state: z.literal('leased'),
    host: z.string().min(1),
    count: z.number().int().min(1),
    grantedAt: ms,
    expiresAt: ms,
    leaseSeconds: z.number().int().min(0).max(0xffffffff),
    /** The router that granted or last renewed it, for the operator. */
    by: z.string().optional(),
  })
  .strict();

const QuarantinedSchema = z
  .object({
    state: z.literal('quarantined'),
    host: z.string(),
    count: z.number().int().min(1),
    until: ms,
    reason: z.enum(['released', 'expired', 'withdrawn']),
  })
  .strict();

export const SharedBlockSchema = z.discriminatedUnion('state', [LeasedSchema, QuarantinedSchema]);
export type SharedBlock = z.infer<typeof SharedBlockSchema>;
export type LeasedBlock = z.infer<typeof LeasedSchema>;
export type QuarantinedBlock = z.infer<typeof QuarantinedSchema>;

/** Why a key under the prefix was not taken into the table. */
export type SkipReason = 'foreign-key' | 'corrupt-value' | 'out-of-range';

export type ParsedKey =
  | { readonly what: 'epoch' }
  | { readonly what: 'crl' }
  | { readonly what: 'block'; readonly kind: ResourceKind; readonly lowest: number }
  | { readonly what: 'foreign' };

const hex8 = (v: number): string => v.toString(16).padStart(8, '0');

export function epochKey(prefix: string): string {
  return `${prefix}epoch`;
}

/** Where the routers' common revocation list lives, beside the leases it follows. */
export function crlPrefix(prefix: string): string {
  return `${prefix}crl/`;
}

export function blockKey(prefix: string, kind: ResourceKind, lowest: number): string {
  return `${prefix}${kind}/${hex8(lowest)}`;
}

/**
 * The end (exclusive) of the key range holding the blocks that start below
 * `value`: the key of `value` itself, or past every key of the kind when
 * value is beyond 32 bits ('0' follows '/').
 */
export function blockKeyEnd(prefix: string, kind: ResourceKind, value: number): string {
  return value > 0xffffffff ? `${prefix}${kind}0` : blockKey(prefix, kind, value);
}

/** The keys of every block that could overlap [lowest, lowest + count): [start, end). */
export function overlapRange(
  prefix: string,
  kind: ResourceKind,
  lowest: number,
  count: number,
): { start: string; end: string } {
  return {
    start: blockKey(prefix, kind, Math.max(0, lowest - MAX_BLOCK[kind] + 1)),
    end: blockKeyEnd(prefix, kind, lowest + count),
  };
}

export function parseKey(prefix: string, key: string): ParsedKey {
  if (!key.startsWith(prefix)) return { what: 'foreign' };
  const rest = key.slice(prefix.length);
  if (rest === 'epoch') return { what: 'epoch' };
  if (rest.startsWith('crl/')) return { what: 'crl' };
  const m = /^(port|spi)\/([0-9a-f]{8})$/.exec(rest);
  if (m === null) return { what: 'foreign' };
  return { what: 'block', kind: m[1] as ResourceKind, lowest: parseInt(m[2]!, 16) };
}

/** The block a key and value describe, or why they are to be skipped. */
export function parseBlock(
  kind: ResourceKind,
  lowest: number,
  value: Uint8Array,
): { ok: true; block: SharedBlock } | { ok: false; reason: SkipReason } {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(value).toString('utf8'));
  } catch {
    return { ok: false, reason: 'corrupt-value' };
  }
  const parsed = SharedBlockSchema.safeParse(json);
  if (!parsed.success) return { ok: false, reason: 'corrupt-value' };
  const block = parsed.data;
  // Longer blocks would escape the overlap range every grant compares.
  const top = kind === 'port' ? 0xffff : 0xffffffff;
  if (block.count > MAX_BLOCK[kind] || lowest + block.count - 1 > top)
    return { ok: false, reason: 'out-of-range' };
  return { ok: true, block };
}

export function encodeBlock(block: SharedBlock): Buffer {
  return Buffer.from(JSON.stringify(block), 'utf8');
}
