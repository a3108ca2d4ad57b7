import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  GeneralName,
  Name as AsnName,
  NameConstraints,
  SubjectAlternativeName,
  id_ce_nameConstraints,
  id_ce_subjectAltName,
} from '@peculiar/asn1-x509';
import { x509 } from './x509.ts';

/**
 * RFC 5280 4.2.1.10 name constraints, checked the way verifiers of the
 * certificates this CA issues will check them: a name of a type with
 * permitted subtrees must fall in one of them, no name may fall in an
 * excluded subtree, and a type without constraints is unconstrained.
 * Types: iPAddress, dNSName, rfc822Name (also e-mail addresses in the
 * subject), directoryName (the subject) and URI host parts. Any other type
 * met where constraints of that type exist counts as a violation: unknown
 * means not shown to be inside.
 */

export interface Constraints {
  readonly permitted: readonly GeneralName[];
  readonly excluded: readonly GeneralName[];
}

type NameKind = 'ip' | 'dns' | 'email' | 'dn' | 'uri' | 'other';

const EMAIL_ATTRIBUTE = '1.2.840.113549.1.9.1';

const kindOf = (g: GeneralName): NameKind =>
  g.iPAddress !== undefined
    ? 'ip'
    : g.dNSName !== undefined
      ? 'dns'
      : g.rfc822Name !== undefined
        ? 'email'
        : g.directoryName !== undefined
          ? 'dn'
          : g.uniformResourceIdentifier !== undefined
            ? 'uri'
            : 'other';

/** The constraints a CA certificate carries, undefined if none; throws on an unreadable extension. */
export function readNameConstraints(cert: x509.X509Certificate): Constraints | undefined {
  const ext = cert.getExtension(id_ce_nameConstraints);
  if (ext === null) return undefined;
  const nc = AsnConvert.parse(ext.value, NameConstraints);
  return {
    permitted: [...(nc.permittedSubtrees ?? [])].map((s) => s.base),
    excluded: [...(nc.excludedSubtrees ?? [])].map((s) => s.base),
  };
}

/**
 * The addresses a CA certificate names in its own subjectAltName, as
 * permitted iPAddress subtrees of one address each; undefined when it names
 * none. A local CA's iPAddress subjectAltName is its router's shared address,
 * vouched for by the root; since the local CA's nameConstraints carry no
 * iPAddress subtree (docs/pki.md), this is what keeps the addresses it
 * certifies to that one. Throws on an unreadable extension.
 */
export function issuerAddressConstraints(ca: x509.X509Certificate): Constraints | undefined {
  const san = ca.getExtension(id_ce_subjectAltName);
  if (san === null) return undefined;
  const permitted = AsnConvert.parse(san.value, SubjectAlternativeName)
    .map((g) => g.iPAddress)
    .filter((a): a is string => a !== undefined)
    .map((a) => new GeneralName({ iPAddress: `${a}/${isIPv4(a) ? 32 : 128}` }));
  return permitted.length > 0 ? { permitted, excluded: [] } : undefined;
}

/** Every name a certificate asserts: its subject (when not empty), subject e-mail attributes and its subjectAltNames. */
export function namesOf(cert: x509.X509Certificate): GeneralName[] {
  const names: GeneralName[] = [];
  const subject = AsnConvert.parse(cert.subjectName.toArrayBuffer(), AsnName);
  if (subject.length > 0) names.push(new GeneralName({ directoryName: subject }));
  for (const rdn of subject)
    for (const atv of rdn)
      if (atv.type === EMAIL_ATTRIBUTE) names.push(new GeneralName({ rfc822Name: atv.value.toString() }));
  const san = cert.getExtension(id_ce_subjectAltName);
  if (san !== null) names.push(...AsnConvert.parse(san.value, SubjectAlternativeName));
  return names;
}

/** Describes the first name outside the constraints, or undefined when all are inside. */
export function nameConstraintViolation(c: Constraints, names: readonly GeneralName[]): string | undefined {
  for (const name of names) {
    const kind = kindOf(name);
    const permitted = c.permitted.filter((p) => kindOf(p) === kind);
    if (permitted.length > 0 && !permitted.some((p) => within(name, p)))
      return `${describe(name)} is outside the permitted ${kind} subtrees (${permitted.map(describe).join(', ')})`;
    const excluded = c.excluded.find((x) => kindOf(x) === kind && (kind === 'other' || within(name, x)));
    if (excluded !== undefined)
      return `${describe(name)} is inside the excluded subtree ${describe(excluded)}`;
  }
  return undefined;
}

function describe(g: GeneralName): string {
  switch (kindOf(g)) {
    case 'ip':
      return `IP ${g.iPAddress}`;
    case 'dns':
      return `DNS ${g.dNSName}`;
    case 'email':
      return `email ${g.rfc822Name}`;
    case 'uri':
      return `URI ${g.uniformResourceIdentifier}`;
    case 'dn':
      return `DN "${new x509.Name(AsnConvert.serialize(g.directoryName!)).toString()}"`;
    default:
      return 'a name of a type not checked here';
  }
}

function within(name: GeneralName, base: GeneralName): boolean {
  switch (kindOf(base)) {
    case 'ip':
      return ipWithin(name.iPAddress!, base.iPAddress!);
    case 'dns':
      return dnsWithin(name.dNSName!, base.dNSName!);
    case 'email':
      return emailWithin(name.rfc822Name!, base.rfc822Name!);
    case 'uri':
      return uriWithin(name.uniformResourceIdentifier!, base.uniformResourceIdentifier!);
    case 'dn':
      return dnWithin(name.directoryName!, base.directoryName!);
    default:
      return false;
  }
}

function ipWithin(address: string, subnet: string): boolean {
  const [base, bits] = subnet.split('/');
  const prefix = Number(bits);
  if (base === undefined || !Number.isInteger(prefix)) return false;
  const family = isIPv4(base) ? 'ipv4' : isIPv6(base) ? 'ipv6' : undefined;
  // An IPv4 name never matches an IPv6 subtree and the other way round (RFC 5280: 4 vs 16 octets).
  if (family === undefined || (family === 'ipv4' ? !isIPv4(address) : !isIPv6(address))) return false;
  const list = new BlockList();
  list.addSubnet(base, prefix, family);
  return list.check(address, family);
}

/** "example.com" holds example.com and its subdomains; "" holds every name. */
function dnsWithin(name: string, base: string): boolean {
  const n = name.toLowerCase().replace(/\.$/, '');
  const b = base.toLowerCase().replace(/^\./, '');
  return b === '' || n === b || n.endsWith(`.${b}`);
}

/** A mailbox, all mailboxes at one host, or (leading dot) all hosts in a domain. */
function emailWithin(mail: string, base: string): boolean {
  const at = mail.lastIndexOf('@');
  if (at < 0) return false;
  const host = mail.slice(at + 1).toLowerCase();
  if (base.includes('@'))
    return (
      mail.slice(0, at) === base.slice(0, base.lastIndexOf('@')) &&
      host === base.slice(base.lastIndexOf('@') + 1).toLowerCase()
    );
  const b = base.toLowerCase();
  return b.startsWith('.') ? host.endsWith(b) : host === b;
}

/** The URI's host: one host, or (leading dot) any host in a domain. */
function uriWithin(uri: string, base: string): boolean {
  let host: string;
  try {
    host = new URL(uri).hostname.toLowerCase();
  } catch {
    return false;
  }
  const b = base.toLowerCase();
  return b.startsWith('.') ? host.endsWith(b) : host === b;
}

/**
 * The base's RDNs begin the name's, compared attribute by attribute with
 * case and runs of spaces folded (a stand-in for RFC 4518 string preparation
 * that is right for the printable names this project issues).
 */
function dnWithin(name: AsnName, base: AsnName): boolean {
  if (base.length > name.length) return false;
  const fold = (s: string): string => s.trim().replace(/\s+/g, ' ').toLowerCase();
  const rdnKey = (rdn: AsnName[number]): string =>
    [...rdn]
      .map((atv) => `${atv.type}=${fold(atv.value.toString())}`)
      .sort()
      .join('+');
  return base.every((rdn, i) => rdnKey(rdn) === rdnKey(name[i]!));
}
