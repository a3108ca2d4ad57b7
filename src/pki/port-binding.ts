import { AsnArray, AsnConvert, AsnProp, AsnPropTypes, AsnType, AsnTypeTypes } from '@peculiar/asn1-schema';
import type { Block } from '../util/block.ts';
import { x509 } from './x509.ts';

/**
 * The extension that binds a host certificate's key to its leased blocks: the
 * patent's "security name space" of shared address plus locally unique ports
 * (claims 14, 22, 33), and the SPIs the host may choose for inbound SAs.
 *
 *   id-distnat-portBinding OBJECT IDENTIFIER ::= { 1 3 6 1 4 1 32473 7032 1 }
 *
 *   DistnatPortBinding ::= SEQUENCE {
 *     ports  [0] IMPLICIT SEQUENCE SIZE (1..MAX) OF ValueRange,
 *     spis   [1] IMPLICIT SEQUENCE SIZE (1..MAX) OF ValueRange OPTIONAL }
 *
 *   ValueRange ::= SEQUENCE {
 *     first  INTEGER (0..4294967295),
 *     count  INTEGER (1..4294967296) }
 *
 * The address the ranges belong to is the certificate's one iPAddress
 * subjectAltName, the name the local CA's name constraints police. Ranges are
 * sorted by first and do not overlap; ports cover TCP and UDP ports and ICMP
 * query identifiers alike, as the router's lease does.
 *
 * 32473 is IANA's enterprise number for documentation (RFC 5612), the OID
 * counterpart of the RFC 5737 addresses this project uses: a deployment
 * with its own enterprise number should change this one constant. The
 * 2.25.<UUID> arc was tried and dropped: the ASN.1 encoder under
 * @peculiar/x509 silently truncates a 128-bit arc.
 */
export const PORT_BINDING_OID = '1.3.6.1.4.1.32473.7032.1';

/** What a host certificate certifies: on `address`, these ports and SPIs belong to the key. */
export interface PortBinding {
  readonly address: string;
  readonly ports: readonly Block[];
  readonly spis: readonly Block[];
}

// asn1-schema's classes, with its decorators applied as plain calls (the
// project compiles without legacy decorator support).
class AsnValueRange {
  first: number | string = 0;
  count: number | string = 0;
  constructor(first = 0, count = 0) {
    this.first = first;
    this.count = count;
  }
}
AsnProp({ type: AsnPropTypes.Integer })(AsnValueRange.prototype, 'first');
AsnProp({ type: AsnPropTypes.Integer })(AsnValueRange.prototype, 'count');
AsnType({ type: AsnTypeTypes.Sequence })(AsnValueRange);

class AsnValueRanges extends AsnArray<AsnValueRange> {
  constructor(items?: AsnValueRange[]) {
    super(items);
    Object.setPrototypeOf(this, AsnValueRanges.prototype);
  }
}
AsnType({ type: AsnTypeTypes.Sequence, itemType: AsnValueRange })(AsnValueRanges);

class AsnPortBinding {
  ports = new AsnValueRanges();
  spis?: AsnValueRanges;
}
AsnProp({ type: AsnValueRanges, context: 0, implicit: true })(AsnPortBinding.prototype, 'ports');
AsnProp({ type: AsnValueRanges, context: 1, implicit: true, optional: true })(
  AsnPortBinding.prototype,
  'spis',
);
AsnType({ type: AsnTypeTypes.Sequence })(AsnPortBinding);

const PORT_LIMIT = 0x10000;
const SPI_LIMIT = 0x100000000;

/** Why ranges cannot be encoded or why an extension's ranges were rejected, or undefined when fine. */
export function checkRanges(ranges: readonly Block[], limit: number, what: string): string | undefined {
  let end = -1;
  for (const r of ranges) {
    if (!Number.isSafeInteger(r.lowest) || !Number.isSafeInteger(r.count) || r.lowest < 0 || r.count < 1)
      return `${what} range ${r.lowest}+${r.count} is not a range`;
    if (r.lowest + r.count > limit) return `${what} range ${r.lowest}+${r.count} goes past ${limit - 1}`;
    if (r.lowest < end) return `${what} ranges are not sorted and disjoint at ${r.lowest}`;
    end = r.lowest + r.count;
  }
  return undefined;
}

/** The DER value of the extension. Throws RangeError for ranges that break the rules above. */
export function encodePortBinding(ports: readonly Block[], spis: readonly Block[]): ArrayBuffer {
  if (ports.length === 0) throw new RangeError('a port binding names at least one port range');
  const problem = checkRanges(ports, PORT_LIMIT, 'port') ?? checkRanges(spis, SPI_LIMIT, 'SPI');
  if (problem !== undefined) throw new RangeError(problem);
  const asn = new AsnPortBinding();
  asn.ports = new AsnValueRanges(ports.map((r) => new AsnValueRange(r.lowest, r.count)));
  if (spis.length > 0) asn.spis = new AsnValueRanges(spis.map((r) => new AsnValueRange(r.lowest, r.count)));
  return AsnConvert.serialize(asn);
}

export type DecodedRanges =
  | { readonly ok: true; readonly ports: Block[]; readonly spis: Block[] }
  | { readonly ok: false; readonly problem: string };

/** Reads the extension's DER value; never throws. */
export function decodePortBinding(der: ArrayBuffer | Uint8Array): DecodedRanges {
  let asn: AsnPortBinding;
  try {
    asn = AsnConvert.parse(der, AsnPortBinding);
  } catch (e) {
    return { ok: false, problem: `port binding is not DER of DistnatPortBinding: ${(e as Error).message}` };
  }
  // Large INTEGERs come back as decimal strings; both forms become numbers here.
  const blocks = (list: AsnValueRanges | undefined): Block[] =>
    [...(list ?? [])].map((r) => ({ lowest: Number(r.first), count: Number(r.count) }));
  const ports = blocks(asn.ports);
  const spis = blocks(asn.spis);
  if (ports.length === 0) return { ok: false, problem: 'port binding names no port range' };
  if (asn.spis !== undefined && spis.length === 0)
    return { ok: false, problem: 'port binding has an empty SPI list' };
  const problem = checkRanges(ports, PORT_LIMIT, 'port') ?? checkRanges(spis, SPI_LIMIT, 'SPI');
  return problem === undefined ? { ok: true, ports, spis } : { ok: false, problem };
}

/** The extension for a host certificate: non-critical, so verifiers that do not know it still accept the certificate. */
export function portBindingExtension(ports: readonly Block[], spis: readonly Block[]): x509.Extension {
  return new x509.Extension(PORT_BINDING_OID, false, encodePortBinding(ports, spis));
}

export type ReadBinding =
  | { readonly ok: true; readonly binding: PortBinding }
  | { readonly ok: false; readonly reason: 'no-binding' | 'malformed'; readonly detail: string };

/** The binding of a certificate: its ranges and its single IPv4 subjectAltName. Never throws. */
export function readPortBinding(cert: x509.X509Certificate): ReadBinding {
  let ext: x509.Extension | null;
  let san: x509.SubjectAlternativeNameExtension | null;
  try {
    const all = cert.getExtensions(PORT_BINDING_OID);
    if (all.length > 1)
      return { ok: false, reason: 'malformed', detail: 'port binding extension appears twice' };
    ext = all[0] ?? null;
    san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  } catch (e) {
    return { ok: false, reason: 'malformed', detail: `unreadable extensions: ${(e as Error).message}` };
  }
  if (ext === null) return { ok: false, reason: 'no-binding', detail: 'no port binding extension' };
  const ranges = decodePortBinding(ext.value);
  if (!ranges.ok) return { ok: false, reason: 'malformed', detail: ranges.problem };
  const ips = (san?.names.items ?? []).filter((n) => n.type === 'ip').map((n) => n.value);
  if (ips.length !== 1 || !/^\d+\.\d+\.\d+\.\d+$/.test(ips[0]!))
    return {
      ok: false,
      reason: 'malformed',
      detail: `a port binding needs exactly one IPv4 subjectAltName, found ${ips.join(', ') || 'none'}`,
    };
  return { ok: true, binding: { address: ips[0]!, ports: ranges.ports, spis: ranges.spis } };
}

/**
 * The shared address, ports and SPIs a host certificate vouches for, or
 * undefined when it carries no well-formed binding. Says nothing about
 * whether the certificate is genuine, current or revoked: verifyHostCertificate does.
 */
export function portsCoveredBy(
  cert: x509.X509Certificate | string | ArrayBuffer | Uint8Array,
): PortBinding | undefined {
  let c: x509.X509Certificate;
  try {
    c = cert instanceof x509.X509Certificate ? cert : new x509.X509Certificate(cert as string | ArrayBuffer);
  } catch {
    return undefined;
  }
  const r = readPortBinding(c);
  return r.ok ? r.binding : undefined;
}

/** True when every value lies inside one of the ranges. */
export function rangesCover(ranges: readonly Block[], values: Iterable<number>): boolean {
  for (const v of values) if (!ranges.some((r) => v >= r.lowest && v < r.lowest + r.count)) return false;
  return true;
}

/** "1026-1057, 2048-2079" */
export function formatRanges(ranges: readonly Block[]): string {
  return ranges
    .map((r) => (r.count === 1 ? `${r.lowest}` : `${r.lowest}-${r.lowest + r.count - 1}`))
    .join(', ');
}
