/**
 * Manual keying from a YAML file, in the spirit of `ip xfrm state` and
 * `ip xfrm policy`: SAs with their keys, policies with their selectors,
 * and which SAs protect which policy (`policy:` on an SA plays the part of
 * xfrm's reqid). See docs/ipsec.md for a complete example.
 *
 *     defaultAction: bypass
 *     policies:
 *       - name: dns
 *         remote: 203.0.113.0/24
 *         protocol: udp
 *         remotePort: 53
 *         action: protect
 *         protect: [esp]
 *     sas:
 *       - name: dns-out
 *         spi: 0x00001000
 *         direction: outbound
 *         protocol: esp
 *         mode: transport
 *         encryption: { algorithm: aes-gcm-16, key: "0x...40 hex digits (key + salt)..." }
 *         policy: dns
 *
 * Every problem is reported with the path of the field, as the other
 * configuration files do (validateConfig from src/config/load.ts).
 */
import { z } from 'zod';
import { readConfigFile, validateConfig } from '../config/load.ts';
import { MIN_SPI } from '../wire/esp.ts';
import { ipv4FromString } from '../wire/ipv4.ts';
import { INTEGRITY_ALGORITHMS, integrityKeyLength } from './hmac.ts';
import { MAX_REPLAY_WINDOW } from './replay-window.ts';
import { parseAddressRange, parsePortRange } from './selector-text.ts';
import type { IntegrityAlgorithm } from './types.ts';

const HEX_KEY = /^(0x)?([0-9a-fA-F]{2})+$/;
const key = z
  .string({ error: 'write keys as quoted hex strings, for example "0x0011..."' })
  .regex(HEX_KEY, 'expected an even number of hex digits, optionally after 0x');

const spi = z
  .union([
    z.number().int(),
    z.string().regex(/^0x[0-9a-fA-F]{1,8}$/, 'expected a number or 0x followed by hex'),
  ])
  .transform((v) => (typeof v === 'number' ? v : Number.parseInt(v.slice(2), 16)))
  .refine(
    (v) => v >= MIN_SPI && v <= 0xffff_ffff,
    `SPIs are ${MIN_SPI}..4294967295 (1-${MIN_SPI - 1} are reserved)`,
  );

const port = z.number().int().min(0).max(65535);
const portRange = z.union([
  z.literal('any'),
  port,
  z
    .string()
    .refine(
      (v) => parsePortRange(v) !== undefined,
      'expected any, a port, or first-last with first <= last <= 65535',
    ),
]);

const addressRange = z
  .string()
  .refine(
    (s) => parseAddressRange(s) !== undefined,
    'expected any, an address, a.b.c.d/prefix, or first-last addresses',
  );

const protocolField = z.union([
  z.enum(['any', 'tcp', 'udp', 'icmp', 'esp', 'ah']),
  z.number().int().min(0).max(255),
]);

const lifetime = z
  .object({
    softBytes: z.number().int().positive().optional(),
    hardBytes: z.number().int().positive().optional(),
    softPackets: z.number().int().positive().optional(),
    hardPackets: z.number().int().positive().optional(),
  })
  .strict();

const saFields = z
  .object({
    name: z.string().min(1).optional(),
    spi,
    direction: z.enum(['inbound', 'outbound']),
    protocol: z.enum(['esp', 'ah']),
    mode: z.enum(['transport', 'tunnel']).default('transport'),
    src: z
      .string()
      .refine((s) => ipv4FromString(s) !== undefined, 'expected an IPv4 address')
      .optional(),
    dst: z
      .string()
      .refine((s) => ipv4FromString(s) !== undefined, 'expected an IPv4 address')
      .optional(),
    encryption: z
      .object({
        // YAML reads a bare `null` as no value; it means the null algorithm here.
        algorithm: z.preprocess((v) => (v === null ? 'null' : v), z.enum(['aes-gcm-16', 'aes-cbc', 'null'])),
        key: key.optional(),
      })
      .strict()
      .optional(),
    integrity: z
      .object({
        algorithm: z.enum(INTEGRITY_ALGORITHMS as [IntegrityAlgorithm, ...IntegrityAlgorithm[]]),
        key,
      })
      .strict()
      .optional(),
    encap: z
      .object({ localPort: port.min(1), remotePort: port.min(1) })
      .strict()
      .optional(),
    replayWindow: z
      .number()
      .int()
      .refine(
        (w) => w === 0 || (w >= 32 && w <= MAX_REPLAY_WINDOW),
        `expected 0 (off) or 32..${MAX_REPLAY_WINDOW}`,
      )
      .optional(),
    esn: z.boolean().default(false),
    /** Inbound inner SA of a bundle: its SPI need not be leased (only the outermost is seen by the router). */
    nested: z.boolean().default(false),
    lifetime: lifetime.optional(),
    policy: z.string().min(1).optional(),
  })
  .strict();

// Each SA's own checks run even when another SA is wrong, so that every problem is reported at once.
const saSchema = saFields.superRefine((sa, ctx) =>
  checkSa(sa, [], (path, message) => ctx.addIssue({ code: 'custom', path, message })),
);

const policySchema = z
  .object({
    name: z.string().min(1),
    direction: z.enum(['in', 'out', 'both']).default('both'),
    local: addressRange.default('any'),
    remote: addressRange.default('any'),
    protocol: protocolField.default('any'),
    localPort: portRange.default('any'),
    remotePort: portRange.default('any'),
    action: z.enum(['protect', 'bypass', 'discard']),
    protect: z
      .array(z.enum(['ah', 'esp']))
      .refine(
        (t) => t.length === 1 || (t.length === 2 && t[0] === 'ah' && t[1] === 'esp'),
        'expected [esp], [ah] or [ah, esp] (outermost first)',
      )
      .optional(),
  })
  .strict();

function hexBytes(text: string): Uint8Array {
  return Uint8Array.from(Buffer.from(text.replace(/^0x/, ''), 'hex'));
}

/** Key lengths in bytes each ESP encryption algorithm accepts. */
const ENCRYPTION_KEY_LENGTHS: Record<'aes-gcm-16' | 'aes-cbc' | 'null', readonly number[]> = {
  'aes-gcm-16': [20, 28, 36],
  'aes-cbc': [16, 24, 32],
  null: [0],
};

type SaEntry = z.infer<typeof saFields>;
type PolicyEntry = z.infer<typeof policySchema>;

/** A protect policy without `protect:` uses ESP alone. */
function templateOf(p: PolicyEntry): ('ah' | 'esp')[] {
  return p.protect ?? (p.action === 'protect' ? ['esp'] : []);
}

function checkSa(
  sa: SaEntry,
  at: (string | number)[],
  issue: (path: (string | number)[], message: string) => void,
): void {
  const enc = sa.encryption;
  if (sa.protocol === 'ah') {
    if (enc !== undefined) issue([...at, 'encryption'], 'AH does not encrypt');
    if (sa.integrity === undefined) issue([...at, 'integrity'], 'AH needs an integrity algorithm and key');
    if (sa.encap !== undefined) issue([...at, 'encap'], 'only ESP is carried in UDP (RFC 3948)');
  } else if (enc === undefined) {
    issue([...at, 'encryption'], 'ESP needs an encryption algorithm (null for integrity only)');
  } else {
    const bytes = enc.key === undefined ? 0 : hexBytes(enc.key).length;
    const allowed = ENCRYPTION_KEY_LENGTHS[enc.algorithm];
    if (!allowed.includes(bytes)) {
      issue(
        [...at, 'encryption', 'key'],
        `${enc.algorithm} takes ${allowed.map((n) => n * 8).join(', ')}-bit keys` +
          (enc.algorithm === 'aes-gcm-16' ? ' (AES key followed by the 4-byte salt)' : '') +
          `, got ${bytes * 8} bits`,
      );
    }
    if (enc.algorithm === 'aes-gcm-16' && sa.integrity !== undefined) {
      issue([...at, 'integrity'], 'aes-gcm-16 authenticates by itself: no integrity algorithm');
    }
    if (enc.algorithm !== 'aes-gcm-16' && sa.integrity === undefined) {
      issue([...at, 'integrity'], `${enc.algorithm} needs an integrity algorithm (RFC 4303 3.2)`);
    }
  }
  const integrity = sa.integrity;
  if (integrity !== undefined) {
    const want = integrityKeyLength(integrity.algorithm);
    const got = hexBytes(integrity.key).length;
    if (got !== want)
      issue(
        [...at, 'integrity', 'key'],
        `${integrity.algorithm} takes a ${want * 8}-bit key, got ${got * 8}`,
      );
  }
  if (sa.mode === 'tunnel') {
    if (sa.src === undefined) issue([...at, 'src'], 'tunnel mode needs the outer source address');
    if (sa.dst === undefined) issue([...at, 'dst'], 'tunnel mode needs the outer destination address');
  }
  if (sa.direction === 'outbound') {
    if (sa.replayWindow !== undefined)
      issue([...at, 'replayWindow'], 'only inbound SAs have a replay window');
    if (sa.nested) issue([...at, 'nested'], 'only inbound SAs are nested');
  }
  if (sa.esn && sa.replayWindow === 0) issue([...at, 'replayWindow'], 'ESN needs an anti-replay window');
}

export const ManualKeyingSchema = z
  .object({
    defaultAction: z.enum(['bypass', 'discard']).default('bypass'),
    policies: z.array(policySchema).default([]),
    sas: z.array(saSchema).default([]),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    const issue = (path: (string | number)[], message: string): void => {
      ctx.addIssue({ code: 'custom', path, message });
    };
    const policies = new Map<string, PolicyEntry>();
    cfg.policies.forEach((p, i) => {
      if (policies.has(p.name)) issue(['policies', i, 'name'], `a policy named ${p.name} comes earlier`);
      policies.set(p.name, p);
      if (p.action !== 'protect' && p.protect !== undefined) {
        issue(['policies', i, 'protect'], 'only protect policies name protocols');
      }
    });
    const names = new Set<string>();
    const inboundSpis = new Set<string>();
    const outboundOf = new Map<string, Map<string, number>>();
    cfg.sas.forEach((sa, i) => {
      const at = ['sas', i];
      if (sa.name !== undefined) {
        if (names.has(sa.name)) issue([...at, 'name'], `an SA named ${sa.name} comes earlier`);
        names.add(sa.name);
      }
      if (sa.direction === 'inbound') {
        const id = `${sa.protocol}:${sa.spi}`;
        if (inboundSpis.has(id)) issue([...at, 'spi'], `another inbound ${sa.protocol} SA has SPI ${sa.spi}`);
        inboundSpis.add(id);
      }
      if (sa.policy === undefined) return;
      const p = policies.get(sa.policy);
      if (p === undefined) return issue([...at, 'policy'], `no policy named ${sa.policy}`);
      if (p.action !== 'protect') return issue([...at, 'policy'], `policy ${sa.policy} does not protect`);
      if (!templateOf(p).includes(sa.protocol)) {
        return issue([...at, 'policy'], `policy ${sa.policy} does not use ${sa.protocol}`);
      }
      if (sa.direction === 'outbound') {
        const byProto = outboundOf.get(p.name) ?? new Map<string, number>();
        if (byProto.has(sa.protocol))
          issue([...at, 'policy'], `policy ${p.name} has an outbound ${sa.protocol} SA already`);
        byProto.set(sa.protocol, i);
        outboundOf.set(p.name, byProto);
      }
    });
    cfg.policies.forEach((p, i) => {
      if (p.action !== 'protect' || p.direction === 'in') return;
      const have = outboundOf.get(p.name);
      for (const proto of templateOf(p)) {
        if (have?.has(proto) !== true)
          issue(['policies', i], `protects outbound traffic but no outbound ${proto} SA names it`);
      }
    });
  });

export type ManualKeyingConfig = z.infer<typeof ManualKeyingSchema>;

/** Validates parsed YAML; throws ConfigError naming every bad field. */
export function parseManualKeying(data: unknown, source: string): ManualKeyingConfig {
  return validateConfig(ManualKeyingSchema, data, source);
}

/** Reads and validates a manual keying file. */
export function readManualKeying(file: string): ManualKeyingConfig {
  return parseManualKeying(readConfigFile(file), file);
}
