import { AsnConvert } from '@peculiar/asn1-schema';
import { CRLNumber, id_ce_cRLNumber } from '@peculiar/asn1-x509';
import { describePublicKey } from './keys.ts';
import { readNameConstraints } from './name-constraints.ts';
import { formatRanges, readPortBinding } from './port-binding.ts';
import { REVOCATION_REASONS } from './registry.ts';
import { x509 } from './x509.ts';

/** Plain-words accounts of certificates, CRLs and requests, for `distnat ca show`. */

const when = (d: Date): string => d.toISOString().replace('.000Z', 'Z');

function span(from: Date, to: Date, now: Date): string {
  const state =
    now > to
      ? 'EXPIRED'
      : now < from
        ? 'not valid yet'
        : `valid for ${humanDuration(to.getTime() - now.getTime())} more`;
  return `${when(from)} to ${when(to)} (${state})`;
}

export function humanDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} days`;
}

function keyText(spki: ArrayBuffer): string {
  try {
    return describePublicKey(spki).text;
  } catch (e) {
    return `outside the profile (${(e as Error).message})`;
  }
}

/** The URLs of a certificate's CRL distribution points (RFC 5280 4.2.1.13). */
export function crlUrls(cert: x509.X509Certificate): string[] {
  const ext = cert.getExtension(x509.CRLDistributionPointsExtension);
  return (ext?.distributionPoints ?? []).flatMap((dp) =>
    (dp.distributionPoint?.fullName ?? []).flatMap((n) =>
      n.uniformResourceIdentifier !== undefined ? [n.uniformResourceIdentifier] : [],
    ),
  );
}

export function describeCertificate(cert: x509.X509Certificate, now = new Date()): string {
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  const selfIssued = cert.subject === cert.issuer;
  const lines: string[] = [];
  const binding = readPortBinding(cert);
  if (bc?.ca === true) {
    const nc = readNameConstraints(cert);
    if (selfIssued) lines.push(`Root CA "${cert.subject}" (self-signed: the higher certificate authority)`);
    else lines.push(`CA "${cert.subject}"`);
    if (nc !== undefined) {
      const names = nc.permitted.map((g) =>
        g.iPAddress !== undefined
          ? `the address ${g.iPAddress}`
          : g.directoryName !== undefined
            ? `names under "${new x509.Name(AsnConvert.serialize(g.directoryName)).toString()}"`
            : g.dNSName !== undefined
              ? `DNS names under "${g.dNSName}"`
              : g.rfc822Name !== undefined
                ? `e-mail addresses at "${g.rfc822Name}"`
                : 'another name type',
      );
      lines.push(`  may certify only: ${names.join('; ')}`);
      if (nc.excluded.length > 0) lines.push(`  and excludes ${nc.excluded.length} subtree(s)`);
    }
    lines.push(
      bc.pathLength === undefined
        ? '  may sign further CAs (no path length limit)'
        : bc.pathLength === 0
          ? '  may sign host certificates but no further CA (pathLen 0)'
          : `  may sign up to ${bc.pathLength} level(s) of CAs below it`,
    );
  } else if (binding.ok) {
    const b = binding.binding;
    const spis = b.spis.length > 0 ? ` and IPsec SPIs ${formatRanges(b.spis)}` : '';
    lines.push(`Host certificate: the key below owns ${b.address} ports ${formatRanges(b.ports)}${spis}`);
  } else {
    lines.push(`End-entity certificate "${cert.subject}" (${binding.detail})`);
  }
  lines.push(`  subject: ${cert.subject}`);
  if (!selfIssued) lines.push(`  issuer:  ${cert.issuer}`);
  lines.push(`  serial:  ${cert.serialNumber.toLowerCase()}`);
  lines.push(`  valid:   ${span(cert.notBefore, cert.notAfter, now)}`);
  const alg = cert.signatureAlgorithm as { name?: string; hash?: { name?: string } };
  lines.push(
    `  key:     ${keyText(cert.publicKey.rawData)}, signed with ${alg.name ?? '?'} ${alg.hash?.name ?? ''}`,
  );
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  if (san !== null) lines.push(`  names:   ${san.names.items.map((n) => `${n.type}:${n.value}`).join(', ')}`);
  for (const url of crlUrls(cert)) lines.push(`  CRL at:  ${url}`);
  return lines.join('\n');
}

export function describeCrl(crl: x509.X509Crl, now = new Date()): string {
  const numberExt = crl.getExtension(id_ce_cRLNumber);
  const number = numberExt === null ? '?' : String(AsnConvert.parse(numberExt.value, CRLNumber).value);
  const lines = [
    `CRL number ${number} from "${crl.issuer}"`,
    `  issued ${when(crl.thisUpdate)}, next by ${crl.nextUpdate === undefined ? '(not set)' : when(crl.nextUpdate)}` +
      (crl.nextUpdate !== undefined && now > crl.nextUpdate ? ' (STALE)' : ''),
    crl.entries.length === 0 ? '  revokes nothing' : `  revokes ${crl.entries.length} certificate(s):`,
  ];
  for (const e of crl.entries) {
    const reason = Object.entries(REVOCATION_REASONS).find(([, v]) => v === e.reason)?.[0] ?? 'unspecified';
    lines.push(`    ${e.serialNumber.toLowerCase()}  at ${when(e.revocationDate)}  ${reason}`);
  }
  return lines.join('\n');
}

export async function describeRequest(csr: x509.Pkcs10CertificateRequest): Promise<string> {
  let signed = false;
  try {
    signed = await csr.verify();
  } catch {
    signed = false;
  }
  return [
    `Certificate request "${csr.subject}"`,
    `  key:       ${keyText(csr.publicKey.rawData)}`,
    `  signature: ${signed ? 'good (the requester holds the private key)' : 'BAD'}`,
  ].join('\n');
}
