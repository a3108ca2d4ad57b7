import {
  issuerAddressConstraints,
  nameConstraintViolation,
  namesOf,
  readNameConstraints,
} from './name-constraints.ts';
import { readCertificates, readCrl } from './pem.ts';
import { readPortBinding, rangesCover, type PortBinding } from './port-binding.ts';
import { REVOCATION_REASONS } from './registry.ts';
import { x509 } from './x509.ts';

/**
 * What a responder (a "third network device", FIG. 24-25) checks before it
 * believes that the peer behind a shared address owns the ports it uses:
 * the path to a trusted root (signatures, CA flags, pathLen, name
 * constraints, validity), that the leaf's addresses are among those its
 * issuer's own certificate names, the issuer's CRL, and the port binding.
 */

export type HostCertificateProblem =
  | 'malformed' // a certificate, CRL or binding that cannot be read
  | 'bad-chain' // no path to a trusted root, a bad signature, a non-CA issuer, pathLen exceeded, an unknown critical extension
  | 'name-constraints-violated' // a name outside what an issuing CA may certify
  | 'expired' // a certificate on the path is past notAfter
  | 'not-yet-valid' // a certificate on the path is before notBefore
  | 'crl-invalid' // the CRL is not the issuer's, not signed by it, or past nextUpdate
  | 'revoked' // the issuer's CRL lists the certificate
  | 'not-covered'; // the certificate does not give the address, ports or SPIs in question

export type HostCertificateVerdict =
  | { readonly ok: true; readonly binding: PortBinding; readonly path: readonly x509.X509Certificate[] }
  | { readonly ok: false; readonly reason: HostCertificateProblem; readonly detail: string };

export type CertificateInput = x509.X509Certificate | string | Uint8Array;

/** The roots the responder trusts and any CA certificates the peer sent along. */
export interface TrustChain {
  readonly roots: readonly CertificateInput[];
  readonly intermediates?: readonly CertificateInput[];
}

/** What the peer uses: the shared address, and the ports and SPIs seen in its traffic. */
export interface CoverageClaim {
  readonly address: string;
  readonly ports?: Iterable<number>;
  readonly spis?: Iterable<number>;
  /** The moment to judge validity at; default now. */
  readonly at?: Date;
}

/** Extensions this checker processes; any other marked critical fails the path (RFC 5280 4.2). */
const KNOWN = new Set([
  '2.5.29.14', // subjectKeyIdentifier
  '2.5.29.15', // keyUsage
  '2.5.29.17', // subjectAltName
  '2.5.29.19', // basicConstraints
  '2.5.29.30', // nameConstraints
  '2.5.29.31', // cRLDistributionPoints
  '2.5.29.35', // authorityKeyIdentifier
  '2.5.29.37', // extKeyUsage
]);
const KNOWN_CRL = new Set(['2.5.29.20', '2.5.29.35']); // cRLNumber, authorityKeyIdentifier
const MAX_DEPTH = 6;

const fail = (reason: HostCertificateProblem, detail: string): HostCertificateVerdict => ({
  ok: false,
  reason,
  detail,
});
const der = (n: x509.Name): Buffer => Buffer.from(n.toArrayBuffer());
const sameName = (a: x509.Name, b: x509.Name): boolean => der(a).equals(der(b));

function toCertificate(c: CertificateInput): x509.X509Certificate {
  if (c instanceof x509.X509Certificate) return c;
  const [first] = readCertificates(c);
  if (first === undefined) throw new Error('no certificate in the input');
  return first;
}

/**
 * Checks `cert` against the trusted roots, the issuer's CRL (null: revocation
 * not checked, the caller's choice) and the claim. Never throws for bad input.
 */
export async function verifyHostCertificate(
  cert: CertificateInput,
  chain: TrustChain,
  crl: x509.X509Crl | string | Uint8Array | null,
  claim: CoverageClaim,
): Promise<HostCertificateVerdict> {
  let leaf: x509.X509Certificate;
  let roots: x509.X509Certificate[];
  let intermediates: x509.X509Certificate[];
  let list: x509.X509Crl | null;
  try {
    leaf = toCertificate(cert);
    roots = chain.roots.map(toCertificate);
    intermediates = (chain.intermediates ?? []).map(toCertificate);
    list = crl === null ? null : crl instanceof x509.X509Crl ? crl : readCrl(crl);
  } catch (e) {
    return fail('malformed', (e as Error).message);
  }
  const at = claim.at ?? new Date();

  const built = await buildPath(leaf, roots, intermediates);
  if (typeof built === 'string') return fail('bad-chain', built);
  const path = built;

  const structure = checkStructure(path);
  if (structure !== undefined) return structure;

  // Each CA's constraints bind every certificate below it, the trust anchor's included (as openssl does).
  for (let i = path.length - 1; i >= 1; i--) {
    let constraints;
    try {
      constraints = readNameConstraints(path[i]!);
    } catch (e) {
      return fail('malformed', `name constraints of "${path[i]!.subject}": ${(e as Error).message}`);
    }
    if (constraints === undefined) continue;
    for (let j = i - 1; j >= 0; j--) {
      let violation;
      try {
        violation = nameConstraintViolation(constraints, namesOf(path[j]!));
      } catch (e) {
        return fail('malformed', `names of "${path[j]!.subject}": ${(e as Error).message}`);
      }
      if (violation !== undefined)
        return fail(
          'name-constraints-violated',
          `"${path[j]!.subject}": ${violation} set by "${path[i]!.subject}"`,
        );
    }
  }

  // The leaf's issuer may certify only the addresses its own certificate names (a local CA: its shared address).
  let addressViolation;
  try {
    const own = issuerAddressConstraints(path[1]!);
    addressViolation = own === undefined ? undefined : nameConstraintViolation(own, namesOf(leaf));
  } catch (e) {
    return fail('malformed', `subjectAltNames on the path: ${(e as Error).message}`);
  }
  if (addressViolation !== undefined)
    return fail(
      'name-constraints-violated',
      `"${leaf.subject}": ${addressViolation} named by its issuer "${path[1]!.subject}"`,
    );

  for (const c of path) {
    if (at > c.notAfter) return fail('expired', `"${c.subject}" expired at ${c.notAfter.toISOString()}`);
    if (at < c.notBefore)
      return fail('not-yet-valid', `"${c.subject}" is valid from ${c.notBefore.toISOString()}`);
  }

  if (list !== null) {
    const issuer = path[1]!;
    const problem = await crlProblem(list, issuer, at);
    if (problem !== undefined) return fail('crl-invalid', problem);
    const entry = list.findRevoked(leaf);
    if (entry !== null) {
      const reason =
        Object.entries(REVOCATION_REASONS).find(([, v]) => v === entry.reason)?.[0] ?? 'unspecified';
      return fail('revoked', `revoked at ${entry.revocationDate.toISOString()} (${reason})`);
    }
  }

  const read = readPortBinding(leaf);
  if (!read.ok) return fail(read.reason === 'malformed' ? 'malformed' : 'not-covered', read.detail);
  const b = read.binding;
  if (b.address !== claim.address)
    return fail('not-covered', `certified for ${b.address}, not ${claim.address}`);
  for (const [what, values, ranges] of [
    ['port', claim.ports, b.ports],
    ['SPI', claim.spis, b.spis],
  ] as const) {
    if (values === undefined) continue;
    for (const v of values)
      if (!rangesCover(ranges, [v])) return fail('not-covered', `${what} ${v} is not among those certified`);
  }
  return { ok: true, binding: b, path };
}

/** Leaf first, trusted root last; or why there is no such path. */
async function buildPath(
  leaf: x509.X509Certificate,
  roots: readonly x509.X509Certificate[],
  intermediates: readonly x509.X509Certificate[],
): Promise<x509.X509Certificate[] | string> {
  const path = [leaf];
  let why = `no trusted root or intermediate issued "${leaf.subject}" (issuer "${leaf.issuer}")`;
  while (path.length <= MAX_DEPTH) {
    const child = path[path.length - 1]!;
    const rootHit = await findIssuer(child, roots);
    if (rootHit !== undefined) {
      path.push(rootHit);
      return path;
    }
    const next = await findIssuer(
      child,
      intermediates.filter((c) => !path.includes(c)),
    );
    if (next === undefined) return why;
    path.push(next);
    why = `no trusted root issued "${next.subject}" (issuer "${next.issuer}")`;
  }
  return `no path to a trusted root within ${MAX_DEPTH} certificates`;
}

async function findIssuer(
  child: x509.X509Certificate,
  candidates: readonly x509.X509Certificate[],
): Promise<x509.X509Certificate | undefined> {
  for (const c of candidates) {
    if (!sameName(c.subjectName, child.issuerName)) continue;
    try {
      if (await child.verify({ publicKey: c.publicKey, signatureOnly: true })) return c;
    } catch {
      // A key the signature cannot be checked with is not the issuer.
    }
  }
  return undefined;
}

/** Issuers must be CAs allowed to sign certificates and within their pathLen; the leaf must not be a CA. */
function checkStructure(path: readonly x509.X509Certificate[]): HostCertificateVerdict | undefined {
  for (let i = 0; i < path.length; i++) {
    const c = path[i]!;
    let bc, ku;
    try {
      for (const e of c.extensions)
        if (e.critical && !KNOWN.has(e.type))
          return fail(
            'bad-chain',
            `"${c.subject}" has a critical extension ${e.type} this check does not know`,
          );
      bc = c.getExtension(x509.BasicConstraintsExtension);
      ku = c.getExtension(x509.KeyUsagesExtension);
    } catch (e) {
      return fail('malformed', `extensions of "${c.subject}": ${(e as Error).message}`);
    }
    if (i === 0) {
      if (bc?.ca === true) return fail('bad-chain', `"${c.subject}" is a CA certificate, not a host's`);
      if (ku !== null && (ku.usages & x509.KeyUsageFlags.digitalSignature) === 0)
        return fail('bad-chain', `"${c.subject}" may not sign (keyUsage lacks digitalSignature)`);
      continue;
    }
    if (bc?.ca !== true)
      return fail('bad-chain', `"${c.subject}" signed "${path[i - 1]!.subject}" but is not a CA`);
    if (ku !== null && (ku.usages & x509.KeyUsageFlags.keyCertSign) === 0)
      return fail('bad-chain', `"${c.subject}" may not sign certificates (keyUsage lacks keyCertSign)`);
    // Intermediate CAs between this one and the leaf (RFC 5280 4.2.1.9).
    const below = i - 1;
    if (bc.pathLength !== undefined && below > bc.pathLength)
      return fail(
        'bad-chain',
        `"${c.subject}" allows ${bc.pathLength} CA(s) below it, the path has ${below}`,
      );
  }
  return undefined;
}

async function crlProblem(
  crl: x509.X509Crl,
  issuer: x509.X509Certificate,
  at: Date,
): Promise<string | undefined> {
  if (!sameName(crl.issuerName, issuer.subjectName))
    return `the CRL is from "${crl.issuer}", not from the issuer "${issuer.subject}"`;
  for (const e of crl.extensions)
    if (e.critical && !KNOWN_CRL.has(e.type))
      return `the CRL has a critical extension ${e.type} this check does not know`;
  let good = false;
  try {
    good = await crl.verify({ publicKey: issuer.publicKey });
  } catch {
    good = false;
  }
  if (!good) return `the CRL is not signed by "${issuer.subject}"`;
  if (at < crl.thisUpdate) return `the CRL is from the future (thisUpdate ${crl.thisUpdate.toISOString()})`;
  if (crl.nextUpdate !== undefined && at > crl.nextUpdate)
    return `the CRL is stale (nextUpdate ${crl.nextUpdate.toISOString()}): fetch a fresh one`;
  return undefined;
}
